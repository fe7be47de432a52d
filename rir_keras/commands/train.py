"""`rir-keras train` and `rir-keras evaluate`."""
import json
import os

import keras

from rir_keras import data as datasets
from rir_keras import preprocessing as preprocessing_lib
from rir_keras import precision, runs, test_time, training
from rir_keras.distribute import NONE as ONE_DEVICE
from rir_keras.applications import registry
from rir_keras.commands import flags


def train_one(name, args, train_data, test_data, output_dir, restart=False, distribution=ONE_DEVICE):
    """Train registry model ``name`` as the flags in ``args`` say, into ``output_dir`` (resumable),
    building and training it in ``distribution``'s scope."""
    precision.use(args.precision, argument="--precision")  # a property of the session, not in run.json
    with distribution.scope():
        keras.utils.set_random_seed(args.seed)  # the initial weights are part of what --seed fixes
        spec = flags.model_spec(name, args, train_data)
        model = spec.build()
        settings = {"spec": spec.to_dict(), "recipe": args.recipe, "dataset": str(args.dataset),
                    "data": datasets.data_identity(args.dataset),
                    "train_split": args.train_split, "test_split": args.test_split}
        return training.train(model, train_data, test_data, flags.train_config(args), output_dir,
                              verbose=args.verbose, restart=restart, settings=settings, distribution=distribution)


def run_train(args):
    distribution = flags.distribution(args, "train")
    train_data, test_data = flags.load_data(args)
    with runs.exclusive(args.output):
        results = train_one(args.model, args, train_data, test_data, args.output, restart=args.restart,
                            distribution=distribution)
    print(f"{args.model}: test accuracy {results['test_accuracy']:.4f} after {len(results['history']['epoch'])} "
          f"epochs; results in {os.path.join(args.output, 'results.json')}")


def run_evaluate(args):
    model, source = flags.load_model_source(args, "evaluate")
    test = flags.sample(datasets.load_split(args.dataset, args.split, data_dir=args.data_dir), args.limit, 0, "--limit")
    report = {**source, "dataset": str(args.dataset), "data": datasets.data_identity(args.dataset), "split": args.split,
              "images": len(test), "preprocessing": preprocessing_lib.model_preprocessing(model),
              **training.score(model, test, args.batch_size)}  # the model normalizes the raw images itself
    if args.tta != "none":  # beside the single-view figure, never instead of it
        report["tta"] = {"mode": args.tta, **training.score(test_time.with_tta(model, args.tta), test, args.batch_size)}
    print(json.dumps(report, indent=2))
    return 0


def add_train(subparsers):
    parser = subparsers.add_parser("train", help="train a model of the registry",
                                   formatter_class=flags.HelpFormatter,
                                   description="Train a registry model; run the same command again to resume.")
    parser.add_argument("--model", required=True, help=f"one of: {', '.join(registry.names())}")
    parser.add_argument("--output", default="runs/train", help="folder for logs, model, results")
    parser.add_argument("--restart", action="store_true",
                        help="start over: delete what OUTPUT holds (a run, finished or not) and train anew")
    flags.add_verbose_argument(parser)
    flags.add_data_arguments(parser)
    flags.add_model_arguments(parser)
    flags.add_fit_arguments(parser)
    flags.add_distribute_arguments(parser)
    parser.set_defaults(func=flags.checked(run_train))


def add_evaluate(subparsers):
    parser = subparsers.add_parser("evaluate", help="evaluate a saved .keras model or shipped weights",
                                   formatter_class=flags.HelpFormatter,
                                   description="Evaluate a saved model on raw images: the model carries its "
                                               "own input normalization (its preprocessing layer), and a model "
                                               "that outputs logits is scored with from_logits=True.")
    flags.add_model_source_arguments(parser)
    parser.add_argument("--dataset", default="cifar10", help="as for train")
    parser.add_argument("--data-dir", help="tensorflow-datasets data folder")
    parser.add_argument("--split", default="test", help="the split to measure")
    parser.add_argument("--limit", type=int, help="evaluate a random subset of this many images")
    parser.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
    parser.add_argument("--tta", default="none", choices=test_time.TTA_MODES,
                        help="test-time augmentation, reported beside the single-view figure: flip averages "
                             "the predictions of each image and its mirror image")
    parser.set_defaults(func=flags.checked(run_evaluate))
