"""`rir-keras train`, `rir-keras evaluate` and `rir-keras reproduce`."""
import argparse
import json
import math
import os
import statistics

import keras
import numpy as np

from rir_keras import data as datasets
from rir_keras import preprocessing as preprocessing_lib
from rir_keras import recipes, reporting, runs, training
from rir_keras.applications import paper, registry

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
PREPROCESSING = ("auto", "cifar10", "cifar100", "none")
# Constructor options the command line sets, and the flag of each.
MODEL_OPTIONS = ("width_multiplier", "shortcut", "identity", "transient_ratio", "weight_decay", "kernel_initializer")


def add_data_arguments(parser):
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", default="cifar10",
                       help="a folder or .tar.gz of <split>/<class>/*.jpg, a tensorflow-datasets name "
                            "(cifar10, cifar100, tfds:NAME), or a bare name looked up under $RIR_KERAS_DATA "
                            "first (cifar10 -> cifar10-jpeg.tar.gz). Default: cifar10")
    group.add_argument("--data-dir", help="tensorflow-datasets data folder")
    group.add_argument("--train-split", default="train")
    group.add_argument("--test-split", default="test")
    group.add_argument("--train-limit", type=int, help="use a random subset of this many training images")
    group.add_argument("--test-limit", type=int, help="use a random subset of this many test images")
    group.add_argument("--preprocessing", default="auto", choices=PREPROCESSING,
                       help="the input normalization built into the model (its first layer, saved with it; "
                            "the model takes raw images in [0, 255]): cifar10 or cifar100 channel statistics, "
                            "none (no normalization), or auto: cifar100 if the --dataset name (its base name) "
                            "starts with cifar100, cifar10 if it starts with cifar10, else the per-channel mean "
                            "and std of the training images")


def add_model_arguments(parser):
    group = parser.add_argument_group("model (defaults: the constructor's)")
    group.add_argument("--width-multiplier", type=float)
    group.add_argument("--shortcut", choices=("identity", "projection"))
    group.add_argument("--identity", choices=("init", "constant", "shortcut"))
    group.add_argument("--transient-ratio", type=float)
    group.add_argument("--weight-decay", type=float,
                       help="weight decay of every kernel as He et al., Torch and Caffe mean it: adds "
                            "WEIGHT_DECAY * w to the gradient, i.e. Keras L2(WEIGHT_DECAY / 2). "
                            "Default: the recipe's (paper: 1e-4, He et al.'s; fast: 5e-4)")
    group.add_argument("--kernel-initializer", help="e.g. he_normal (paper), glorot_uniform")


def add_fit_arguments(parser):
    group = parser.add_argument_group("training (defaults: the recipe's; a flag overrides its setting)")
    group.add_argument("--recipe", default="paper", choices=sorted(recipes.RECIPES),
                       help="; ".join(f"{r.name}: {r.summary}" for r in recipes.RECIPES.values()))
    group.add_argument("--epochs", type=int)
    group.add_argument("--batch-size", type=int)
    group.add_argument("--steps-per-epoch", type=int, help="cap the steps of each epoch (short budgets)")
    group.add_argument("--optimizer", choices=training.OPTIMIZERS)
    group.add_argument("--learning-rate", type=float)
    group.add_argument("--momentum", type=float)
    group.add_argument("--nesterov", action=argparse.BooleanOptionalAction, help="Nesterov momentum (SGD)")
    group.add_argument("--schedule", choices=training.SCHEDULES,
                       help="step: x DECAY_FACTOR after each of DECAY_EPOCHS; cosine: warm-up, then cosine to 0")
    group.add_argument("--warmup-epochs", type=int, help="linear warm-up epochs (cosine schedule)")
    group.add_argument("--label-smoothing", type=float)
    group.add_argument("--decay-epochs", type=int, nargs="*",
                       help="epochs after which the learning rate drops; paper: 42 and 62 scaled to --epochs")
    group.add_argument("--decay-factor", type=float)
    group.add_argument("--no-augment", action="store_true", help="no random crops and flips")
    group.add_argument("--seed", type=int, default=0)
    group.add_argument("--precision", default="float32", choices=PRECISIONS,
                       help="mixed_float16 on GPUs, mixed_bfloat16 on TPUs and recent CPUs")
    group.add_argument("--no-jit", action="store_true", help="do not compile with XLA")


def subset(data, limit, seed, argument):
    if limit is None:
        return data
    if limit < 1:
        raise ValueError(f"{argument} must be a positive integer. Received: {argument}={limit}")
    if limit >= len(data):
        return data
    return data.subset(np.sort(np.random.default_rng(seed).permutation(len(data))[:limit]))


def load_data(args):
    train = datasets.load_split(args.dataset, args.train_split, data_dir=args.data_dir)
    test = datasets.load_split(args.dataset, args.test_split, data_dir=args.data_dir)
    return (subset(train, args.train_limit, args.seed, "--train-limit"),
            subset(test, args.test_limit, args.seed, "--test-limit"))


def dataset_family(dataset):
    """"cifar100" or "cifar10" when the base name of the ``--dataset`` argument starts with it
    (``cifar10-mini``, ``data/cifar100.tar.gz``, ``tfds:cifar10``), else ``None``."""
    name = os.fspath(dataset)
    if name.startswith(datasets.TFDS_PREFIX):
        name = name[len(datasets.TFDS_PREFIX):]
    name = os.path.basename(name.rstrip("/" + os.sep)).lower()
    return next((family for family in ("cifar100", "cifar10") if name.startswith(family)), None)


def preprocessing(args, train_data):
    """The constructors' ``preprocessing`` for ``--preprocessing``; ``auto`` reads the dataset's name,
    or, for a dataset that is not CIFAR, measures ``train_data``'s per-channel mean and std."""
    if args.preprocessing == "none":
        return None
    if args.preprocessing != "auto":
        return args.preprocessing
    return dataset_family(args.dataset) or preprocessing_lib.dataset_statistics(train_data.images)


def model_options(args):
    """The constructor options the flags set; weight decay defaults to the recipe's."""
    options = {name: getattr(args, name) for name in MODEL_OPTIONS if getattr(args, name, None) is not None}
    if "weight_decay" not in options and getattr(args, "recipe", None):
        options["weight_decay"] = recipes.get(args.recipe).weight_decay
    return options


def build_model(name, data, options):
    """Build registry model ``name`` for ``data``'s image shape and classes."""
    constructor = registry.get(name)
    try:
        return constructor(input_shape=data.image_shape, classes=data.num_classes, **options)
    except TypeError as error:
        raise ValueError(f"model {name!r} does not take one of these options: {sorted(options)} ({error})") from error


# TrainConfig fields a recipe sets, each overridden by the flag of the same name where given.
RECIPE_FIELDS = ("epochs", "batch_size", "optimizer", "learning_rate", "momentum", "nesterov", "schedule",
                 "warmup_epochs", "label_smoothing", "decay_epochs", "decay_factor")


def train_config(args, data=None):
    """The recipe's TrainConfig with the flags' overrides."""
    fields = {**recipes.get(args.recipe).training,
              **{name: getattr(args, name) for name in RECIPE_FIELDS if getattr(args, name) is not None}}
    recipe = recipes.get(args.recipe).training
    if args.epochs is not None and args.warmup_epochs is None:  # the warm-up keeps its share of the epochs
        fields["warmup_epochs"] = round(recipe["warmup_epochs"] * args.epochs / recipe["epochs"])
    if args.no_augment:
        fields["augment"] = False
    return training.TrainConfig(**fields, steps_per_epoch=args.steps_per_epoch, seed=args.seed,
                                jit_compile=False if args.no_jit else "auto")


def train_one(name, args, train_data, test_data, output_dir, restart=False):
    keras.mixed_precision.set_global_policy(args.precision)
    keras.utils.set_random_seed(args.seed)  # the initial weights are part of what --seed fixes
    options = {**model_options(args), "preprocessing": preprocessing(args, train_data)}
    model = build_model(name, train_data, options)
    config = train_config(args, train_data)
    settings = {"registry_name": name, "model_options": options, "recipe": args.recipe, "dataset": str(args.dataset),
                "train_split": args.train_split, "test_split": args.test_split, "precision": args.precision}
    return training.train(model, train_data, test_data, config, output_dir, verbose=args.verbose, restart=restart,
                          settings=settings)


def run_train(args):
    train_data, test_data = load_data(args)
    with runs.exclusive(args.output):
        results = train_one(args.model, args, train_data, test_data, args.output, restart=args.restart)
    print(f"{args.model}: test accuracy {results['test_accuracy']:.4f} after {len(results['history']['epoch'])} "
          f"epochs; results in {os.path.join(args.output, 'results.json')}")


def run_evaluate(args):
    if (args.model_file is None) == (args.model is None):
        raise ValueError("evaluate takes a model file or --model NAME --weights DATASET, one of the two. "
                         f"Received: model_file={args.model_file!r}, --model={args.model!r}")
    import rir_keras  # noqa: F401  (registers our layers for loading)
    from rir_keras.applications import pretrained

    if args.model is not None:
        model = pretrained.build(args.model, args.weights or "cifar10")
        source = {"model": args.model, "weights": args.weights or "cifar10"}
    elif not os.path.isfile(args.model_file):
        raise FileNotFoundError(f"model file not found: {args.model_file!r}")
    else:
        model = keras.saving.load_model(args.model_file, compile=False)
        source = {"model_file": args.model_file}
    test = subset(datasets.load_split(args.dataset, args.split, data_dir=args.data_dir), args.limit, 0, "--limit")
    training.compile_for_evaluation(model)  # the model normalizes the raw images itself
    result = training.evaluate(model, test, training.TrainConfig(epochs=1, batch_size=args.batch_size))
    report = {**source, "dataset": str(args.dataset), "split": args.split, "images": len(test),
              "correct": int(round(float(result["accuracy"]) * len(test))),
              "preprocessing": preprocessing_lib.model_preprocessing(model),
              **{k: float(v) for k, v in result.items()}}
    print(json.dumps(report, indent=2))
    return 0


def campaign_runs(folder, plan):
    """``(model, seed, run folder)`` of every run a campaign plans, in training order."""
    return [(name, seed, os.path.join(folder, name, f"seed{seed}")) for seed in plan["seeds"] for name in plan["models"]]


def mean_and_spread(values):
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


def reproduce_table(folder, plan):
    """The campaign's finished models beside the paper's figures, as a markdown table."""
    header = ["model", "recipe", "epochs", "seeds", "test accuracy (%)", "paper (%)", "difference",
              "wall time per run", "machines"]
    rows = []
    ordered = [name for name in registry.TABLES[plan["table"]] if name in plan["models"]]
    for name in ordered + [name for name in plan["models"] if name not in ordered]:
        finished = [runs.read_json(os.path.join(run, "results.json")) for model, _, run in campaign_runs(folder, plan)
                    if model == name and runs.progress(run).finished]
        if not finished:
            continue
        accuracies = [100 * result["test_accuracy"] for result in finished]
        mean, spread = mean_and_spread(accuracies)
        measured = f"{mean:.2f}" if spread is None else f"{mean:.2f} ± {spread:.2f}"
        reported = paper.reported(plan["family"], name)
        difference = f"{mean - reported[0][1]:+.2f}" if reported else ""
        wall = statistics.fmean(result.get("wall_seconds", math.nan) for result in finished)
        machines = sorted({m for result in finished for m in result.get("machines", [])})
        rows.append([name, finished[0].get("recipe", ""), len(finished[0]["history"]["epoch"]), len(finished),
                     measured, paper.cite(plan["family"], name), difference, runs.format_duration(wall),
                     "; ".join(machines)])
    note = ("Test accuracy: the final epoch's, on the full test split, mean ± standard deviation over seeds. "
            "Paper: as reported (original data, the authors' training).\n\n")
    return note + reporting.markdown_table(header, rows, align=["---"] + ["---:"] * 7 + ["---"]) + "\n"


def read_plan(folder):
    path = os.path.join(folder, "campaign.json")
    if not os.path.isfile(path):
        raise ValueError(f"{folder} holds no campaign (no campaign.json; `rir-keras reproduce --output {folder}` "
                         f"starts one). Received: --status={folder!r}")
    return runs.read_json(path)


def campaign_status(folder):
    """Each planned run's epochs done and left, last test accuracy and ETA, as text."""
    plan = read_plan(folder)
    progress = [(name, seed, runs.progress(run)) for name, seed, run in campaign_runs(folder, plan)]
    measured = [p.seconds_per_epoch for _, _, p in progress if p.seconds_per_epoch]
    by_model = {name: [p.seconds_per_epoch for n, _, p in progress if n == name and p.seconds_per_epoch]
                for name in plan["models"]}
    rows, total = [], 0.0
    for name, seed, p in progress:
        planned = p.epochs_total or plan["epochs"]
        speed = p.seconds_per_epoch or (statistics.median(by_model[name]) if by_model[name] else
                                        statistics.median(measured) if measured else None)
        left = 0 if p.finished else planned - p.epochs_done
        eta = 0.0 if p.finished else (left * speed if speed else None)
        total = None if total is None or eta is None else total + eta
        accuracy = p.test_accuracy if p.finished else p.last_accuracy
        rows.append([name, seed, f"{p.epochs_done}/{planned}", left,
                     "" if accuracy is None else f"{100 * accuracy:.2f}" + (" (final)" if p.finished else ""),
                     "" if speed is None else f"{speed:.0f}" + ("" if p.seconds_per_epoch else " (est.)"),
                     "finished" if p.finished else runs.format_duration(eta)])
    header = ["model", "seed", "epochs", "left", "test accuracy (%)", "s/epoch", "ETA"]
    left = sum(row[3] for row in rows)
    return (f"{folder}: table {plan['table']}, recipe {plan['recipe']}, dataset {plan['dataset']}\n\n"
            + reporting.markdown_table(header, rows, align=["---", "---:", "---:", "---:", "---:", "---:", "---:"])
            + f"\n\n{left} epochs left; ETA {runs.format_duration(total)} at the measured speeds "
              "(s/epoch marked est. borrows another run's).\n")


def run_reproduce(args):
    if args.status:
        print(campaign_status(args.status), end="")
        return 0
    members = registry.TABLES[args.table]
    names = args.models or list(members)
    for name in names:
        if name not in members:
            raise ValueError(f"--models must name models of table {args.table} ({', '.join(members)}). "
                             f"Received: --models={name}")
    seeds = args.seeds if args.seeds is not None else [args.seed]
    train_data, test_data = load_data(args)
    with runs.exclusive(args.output):
        plan = {"table": args.table, "models": names, "seeds": seeds, "recipe": args.recipe,
                "dataset": str(args.dataset), "family": dataset_family(args.dataset) or "",
                "epochs": train_config(args).epochs}
        reporting.write_json(plan, os.path.join(args.output, "campaign.json"))
        for name, seed, folder in campaign_runs(args.output, plan):
            train_one(name, argparse.Namespace(**{**vars(args), "seed": seed}), train_data, test_data, folder,
                      restart=args.restart)
            table = reproduce_table(args.output, plan)
            reporting.write_text(table, os.path.join(args.output, "results.md"))
    print(table)
    return 0


def add_verbose_argument(parser):
    parser.add_argument("--verbose", default="auto", type=lambda v: v if v == "auto" else int(v),
                        help="Keras fit's verbosity: auto, 0 (silent), 1 (progress bar), 2 (a line per epoch)")


def add_train(subparsers):
    parser = subparsers.add_parser("train", help="train a model of the registry",
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                   description="Train a registry model; run the same command again to resume.")
    parser.add_argument("--model", required=True, help=f"one of: {', '.join(registry.names())}")
    parser.add_argument("--output", default="runs/train", help="folder for logs, model, results")
    parser.add_argument("--restart", action="store_true",
                        help="start over: delete what OUTPUT holds (a run, finished or not) and train anew")
    add_verbose_argument(parser)
    add_data_arguments(parser)
    add_model_arguments(parser)
    add_fit_arguments(parser)
    parser.set_defaults(func=run_train)


def add_evaluate(subparsers):
    parser = subparsers.add_parser("evaluate", help="evaluate a saved .keras model or shipped weights",
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                   description="Evaluate a saved model on raw images: the model carries its "
                                               "own input normalization (its preprocessing layer), and a model "
                                               "that outputs logits is scored with from_logits=True.")
    parser.add_argument("model_file", nargs="?", help="a .keras file, e.g. runs/train/model.keras")
    parser.add_argument("--model", help="instead of a file: a registry model with shipped weights, e.g. rir32")
    parser.add_argument("--weights", choices=("cifar10",), help="the shipped weights of --model (default cifar10)")
    parser.add_argument("--dataset", default="cifar10", help="as for train")
    parser.add_argument("--data-dir")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, help="evaluate a random subset of this many images")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.set_defaults(func=run_evaluate)


def add_reproduce(subparsers):
    parser = subparsers.add_parser("reproduce", help="train every model of a paper table, write a markdown table",
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                   description="Train each model of a paper table with one recipe, for one seed "
                                               "after another, into OUTPUT/MODEL/seedN, and write "
                                               "OUTPUT/results.md: measured accuracy beside the paper's figure. "
                                               "Rerunning continues where it stopped (also from a copy of OUTPUT "
                                               "on another machine); finished runs are not trained again.")
    parser.add_argument("--table", default="32", choices=sorted(registry.TABLES),
                        help="32: Tables 1 and 6; 18-wide: Tables 2 and 3; sweep: Table 4; all-cnn: Table 5; "
                             "forget: Table 6")
    parser.add_argument("--models", nargs="+", help="train these models of the table, in this order (default: all)")
    parser.add_argument("--seeds", type=int, nargs="+", help="one run per seed, all models of a seed first "
                                                             "(default: --seed)")
    parser.add_argument("--output", default="runs/reproduce")
    parser.add_argument("--status", metavar="DIR",
                        help="print each run's epochs done and left, last accuracy and ETA of the campaign in DIR; "
                             "train nothing")
    parser.add_argument("--restart", action="store_true", help="start every run of the table over")
    add_verbose_argument(parser)
    add_data_arguments(parser)
    add_model_arguments(parser)
    add_fit_arguments(parser)
    parser.set_defaults(func=run_reproduce)
