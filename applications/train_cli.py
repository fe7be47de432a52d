"""`rir-keras train`, `rir-keras evaluate` and `rir-keras reproduce`."""
import argparse
import json
import os

import keras
import numpy as np

from rir_keras import data as datasets
from rir_keras import reporting, training
from rir_keras.applications import paper, registry

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
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
    group.add_argument("--normalization", default="auto", choices=("auto", "cifar10", "cifar100"),
                       help="channel statistics for the inputs; auto: cifar100 for 100 classes, else cifar10")


def add_model_arguments(parser):
    group = parser.add_argument_group("model (defaults: the constructor's)")
    group.add_argument("--width-multiplier", type=float)
    group.add_argument("--shortcut", choices=("identity", "projection"))
    group.add_argument("--identity", choices=("init", "constant", "shortcut"))
    group.add_argument("--transient-ratio", type=float)
    group.add_argument("--weight-decay", type=float, default=1e-4, help="L2 penalty on kernels (paper: 1e-4)")
    group.add_argument("--kernel-initializer", help="e.g. he_normal (paper), glorot_uniform")


def add_fit_arguments(parser):
    group = parser.add_argument_group("training (defaults: the paper's recipe)")
    group.add_argument("--epochs", type=int, default=training.PAPER_EPOCHS)
    group.add_argument("--batch-size", type=int, default=128)
    group.add_argument("--steps-per-epoch", type=int, help="cap the steps of each epoch (short budgets)")
    group.add_argument("--optimizer", default="sgd", choices=training.OPTIMIZERS)
    group.add_argument("--learning-rate", type=float, default=0.1)
    group.add_argument("--momentum", type=float, default=0.9)
    group.add_argument("--decay-epochs", type=int, nargs="*",
                       help="epochs after which the learning rate drops; default: 42 and 62 scaled to --epochs")
    group.add_argument("--decay-factor", type=float, default=0.1)
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


def normalization(args, data):
    if args.normalization != "auto":
        return args.normalization
    return "cifar100" if data.num_classes == 100 else "cifar10"


def model_options(args):
    return {name: getattr(args, name) for name in MODEL_OPTIONS if getattr(args, name, None) is not None}


def build_model(name, data, options):
    """Build registry model ``name`` for ``data``'s image shape and classes."""
    constructor = registry.get(name)
    try:
        return constructor(input_shape=data.image_shape, classes=data.num_classes, **options)
    except TypeError as error:
        raise ValueError(f"model {name!r} does not take one of these options: {sorted(options)} ({error})") from error


def train_config(args, data):
    return training.TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, learning_rate=args.learning_rate,
        momentum=args.momentum, decay_epochs=args.decay_epochs, decay_factor=args.decay_factor,
        steps_per_epoch=args.steps_per_epoch, augment=not args.no_augment, seed=args.seed,
        normalization=normalization(args, data), jit_compile=False if args.no_jit else "auto",
    )


def train_one(name, args, train_data, test_data, output_dir, overwrite=False):
    keras.mixed_precision.set_global_policy(args.precision)
    keras.utils.set_random_seed(args.seed)  # the initial weights are part of what --seed fixes
    model = build_model(name, train_data, model_options(args))
    config = train_config(args, train_data)
    results = training.train(model, train_data, test_data, config, output_dir, overwrite=overwrite)
    results.update(registry_name=name, dataset=str(args.dataset), precision=args.precision,
                   model_options=model_options(args))
    reporting.write_json(results, os.path.join(output_dir, "results.json"))
    return results


def run_train(args):
    train_data, test_data = load_data(args)
    results = train_one(args.model, args, train_data, test_data, args.output, overwrite=args.overwrite)
    print(f"{args.model}: test accuracy {results['test_accuracy']:.4f} after {args.epochs} epochs; "
          f"results in {os.path.join(args.output, 'results.json')}")


def run_evaluate(args):
    if not os.path.isfile(args.model_file):
        raise FileNotFoundError(f"model file not found: {args.model_file!r}")
    import rir_keras  # noqa: F401  (registers our layers for loading)

    model = keras.saving.load_model(args.model_file, compile=False)
    test = subset(datasets.load_split(args.dataset, args.split, data_dir=args.data_dir), args.limit, 0, "--limit")
    norm = args.normalization if args.normalization != "auto" else ("cifar100" if test.num_classes == 100 else "cifar10")
    config = training.TrainConfig(epochs=1, batch_size=args.batch_size, normalization=norm)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    result = training.evaluate(model, test, config)
    report = {"model_file": args.model_file, "dataset": str(args.dataset), "split": args.split,
              "images": len(test), **{k: float(v) for k, v in result.items()}}
    print(json.dumps(report, indent=2))
    return 0


def reproduce_table(results, dataset_key):
    header = ["model", "parameters", "epochs", "test accuracy (measured)", "paper (reported, full training)"]
    rows = []
    for name, result in results.items():
        reported = paper.reported(dataset_key, name)
        rows.append([name, f"{result['parameters']:,}", len(result["history"].get("epoch", [])),
                     f"{100 * result['test_accuracy']:.2f}", "" if reported is None else f"{reported:.2f}"])
    return reporting.markdown_table(header, rows, align=["---"] + ["---:"] * 4) + "\n"


def run_reproduce(args):
    names = registry.TABLES[args.table]
    train_data, test_data = load_data(args)
    results = {}
    for name in names:
        folder = os.path.join(args.output, name)
        finished = os.path.join(folder, "results.json")
        if os.path.isfile(finished) and not os.path.isdir(os.path.join(folder, "backup")):
            with open(finished, encoding="utf-8") as handle:
                results[name] = json.load(handle)  # finished earlier: a rerun resumes the table
            continue
        results[name] = train_one(name, args, train_data, test_data, folder)
    key = "cifar100" if train_data.num_classes == 100 else "cifar10"
    table = reproduce_table(results, key)
    reporting.write_text(table, os.path.join(args.output, "results.md"))
    print(table)
    return 0


def add_train(subparsers):
    parser = subparsers.add_parser("train", help="train a model of the registry",
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                   description="Train a registry model; run the same command again to resume.")
    parser.add_argument("--model", required=True, help=f"one of: {', '.join(registry.names())}")
    parser.add_argument("--output", default="runs/train", help="folder for logs, model, results")
    parser.add_argument("--overwrite", action="store_true", help="train again into a folder with a finished run")
    add_data_arguments(parser)
    add_model_arguments(parser)
    add_fit_arguments(parser)
    parser.set_defaults(func=run_train)


def add_evaluate(subparsers):
    parser = subparsers.add_parser("evaluate", help="evaluate a saved .keras model",
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("model_file", help="a .keras file, e.g. runs/train/model.keras")
    parser.add_argument("--dataset", default="cifar10", help="as for train")
    parser.add_argument("--data-dir")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, help="evaluate a random subset of this many images")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--normalization", default="auto", choices=("auto", "cifar10", "cifar100"))
    parser.set_defaults(func=run_evaluate)


def add_reproduce(subparsers):
    parser = subparsers.add_parser("reproduce", help="train every model of a paper table, write a markdown table",
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                   description="Train each model of a paper table with one recipe and write "
                                               "OUTPUT/results.md: measured accuracy beside the paper's figure. "
                                               "Rerunning resumes: finished models are not trained again.")
    parser.add_argument("--table", default="32", choices=sorted(registry.TABLES))
    parser.add_argument("--output", default="runs/reproduce")
    add_data_arguments(parser)
    add_model_arguments(parser)
    add_fit_arguments(parser)
    parser.set_defaults(func=run_reproduce)
