"""What the subcommands share: their data, model and training flags, and how they read them.

Only the subcommands (the modules of ``rir_keras.commands``) import this module; the library itself
(the registry, training, the tuner's hypermodel) never does.
"""
import argparse
import functools
import math
import os
import sys
import zipfile

import keras
import numpy as np

from rir_keras import data as datasets
from rir_keras import preprocessing as preprocessing_lib
from rir_keras import distribute, precision, recipes, training
from rir_keras.applications import pretrained, registry

PRECISIONS = precision.CHOICES
PREPROCESSING = ("auto", "cifar10", "cifar100", "none")
# The library's parameters that flags of other names set (the flags' destinations): how
# `rir_keras.commands.main.in_flags` reads the library's errors.
LIBRARY_NAMES = {"mode": "distribute", "timeout": "distribute_timeout", "source": "dataset"}
# Constructor options the command line sets, and the flag of each.
MODEL_OPTIONS = ("width_multiplier", "shortcut", "identity", "transient_ratio", "weight_decay", "kernel_initializer")


# Every numeric flag of the subcommands, by its destination: (check, what a value must be). A
# command checks them all (`check_numbers`) before it loads data or builds anything; NaN and
# infinities are refused everywhere.
NUMBERS = {
    "width_multiplier": (lambda v: v > 0, "a number > 0"),
    "transient_ratio": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "weight_decay": (lambda v: v >= 0, "a number >= 0"),
    "epochs": (lambda v: v >= 1, "an integer >= 1"),
    "batch_size": (lambda v: v >= 1, "an integer >= 1"),
    "steps_per_epoch": (lambda v: v >= 1, "an integer >= 1"),
    "learning_rate": (lambda v: v > 0, "a number > 0"),
    "momentum": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "warmup_epochs": (lambda v: v >= 0, "an integer >= 0"),
    "label_smoothing": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "decay_epochs": (lambda v: v >= 1, "integers >= 1"),
    "decay_factor": (lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "seed": (lambda v: v >= 0, "an integer >= 0"),
    "seeds": (lambda v: v >= 0, "integers >= 0"),
    "train_limit": (lambda v: v >= 1, "an integer >= 1"),
    "test_limit": (lambda v: v >= 1, "an integer >= 1"),
    "limit": (lambda v: v >= 1, "an integer >= 1"),
    "classes": (lambda v: v >= 2, "an integer >= 2"),
    "image_size": (lambda v: v >= 1, "an integer >= 1"),
    "top_k": (lambda v: v >= 1, "an integer >= 1"),
    "validation_split": (lambda v: 0 < v < 1, "a number in (0, 1)"),
    "max_trials": (lambda v: v >= 1, "an integer >= 1"),
    "heartbeat_timeout": (lambda v: v > 0, "a number of seconds > 0"),
    "chief_timeout": (lambda v: v > 0, "a number of seconds > 0"),
    "distribute_timeout": (lambda v: v > 0, "a number of seconds > 0"),
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every subcommand's ``--help``: each flag's default where it has one, and nothing where it has
    none (a default of None means "not set": the recipe's, the model's, or what the help says; an
    off switch is off), never the "(default: None)" that would contradict such a help text."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def check_numbers(args):
    """Raise a one-line ValueError naming the first numeric flag of ``args`` out of its range."""
    for name, value in vars(args).items():
        if name not in NUMBERS or value is None or isinstance(value, bool):
            continue
        check, requirement = NUMBERS[name]
        for number in value if isinstance(value, (list, tuple)) else [value]:
            if not (math.isfinite(number) and check(number)):
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{flag} must be {requirement}. Received: {flag}={number!r}")


def refuse_flags(args, names, reason):
    """Raise a one-line ValueError naming each flag of ``names`` (destinations) given in ``args``:
    flags that cannot apply to this form of the command, which ``reason`` says."""
    given = [f"--{name.replace('_', '-')}={getattr(args, name)}" for name in names
             if getattr(args, name, None) is not None and getattr(args, name) is not False and getattr(args, name) != []]
    if given:
        raise ValueError(f"{reason}: drop {', '.join(flag.split('=')[0] for flag in given)}. "
                         f"Received: {', '.join(given)}")


def checked(run):
    """``run(args)``, once `check_numbers` has passed: what a subcommand sets as its ``func``."""
    @functools.wraps(run)
    def run_checked(args):
        check_numbers(args)
        return run(args)

    return run_checked


def add_data_arguments(parser):
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", default="cifar10",
                       help="a folder or .tar.gz of <split>/<class>/<image> (JPEG, PNG or WebP), a "
                            "tensorflow-datasets name (cifar10, cifar100, tfds:NAME), or a bare name looked up "
                            "under $RIR_KERAS_DATA first (cifar10 -> cifar10-webp.tar.gz, the official data)")
    group.add_argument("--data-dir", help="tensorflow-datasets data folder")
    group.add_argument("--train-split", default="train", help="the split to train on")
    group.add_argument("--test-split", default="test", help="the split measured after each epoch")
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
    group.add_argument("--seed", type=int, default=0,
                       help="the run's random seed (initial weights, data order, augmentation)")
    group.add_argument("--precision", default="auto", choices=PRECISIONS,
                       help="the number format (Keras dtype policy). auto: mixed_bfloat16 on GPUs with bfloat16 "
                            "tensor cores, TPUs and CPUs with native bfloat16 (AVX512_BF16, AMX), mixed_float16 on "
                            "older tensor cores, float32 elsewhere; $RIR_KERAS_PRECISION, where set, is what auto "
                            "means. A property of the machine: a run may continue in "
                            "another; sessions.jsonl records each session's")
    group.add_argument("--no-jit", action="store_true", help="do not compile with XLA")


def add_distribute_arguments(parser):
    group = parser.add_argument_group("several devices or hosts (see docs/distributed.md)")
    group.add_argument("--distribute", default="none", choices=distribute.MODES,
                       help="data-parallel: every batch split over this host's GPUs (JAX: DataParallel; "
                            "TensorFlow: MirroredStrategy); multi-worker: over several hosts (JAX: "
                            "KERAS_DISTRIBUTION_* variables; TensorFlow: TF_CONFIG, MultiWorkerMirroredStrategy); "
                            "auto: multi-worker if those are set, else data-parallel if there are several "
                            "devices; none: one device. --batch-size is the global batch, the learning rate "
                            "the recipe's")
    group.add_argument("--distribute-timeout", type=float, default=distribute.DEFAULT_TIMEOUT,
                       help="seconds to wait for the other workers at start, and for each collective step")


def distribution(args, command):
    """The `rir_keras.distribute.Distribution` the ``--distribute`` flags ask for."""
    return distribute.setup(args.distribute, args.distribute_timeout, program=f"rir-keras {command}")


def sample(data, limit, seed, flag):
    """``data.sample(limit, seed)`` (`rir_keras.data.ImageData.sample`), warning on stderr where
    ``limit`` asks for more images than there are."""
    if limit is not None and limit > len(data):
        print(f"rir-keras: warning: {flag}={limit} is more than the {len(data)} images there are: "
              f"using all of them", file=sys.stderr)
    return data.sample(limit, seed, argument=flag)


def load_data(args):
    """``(train, test)`` as the data flags say; a class without training images is an error."""
    train = datasets.load_split(args.dataset, args.train_split, data_dir=args.data_dir)
    test = datasets.load_split(args.dataset, args.test_split, data_dir=args.data_dir)
    unseen = [name for label, name in enumerate(train.class_names) if not np.any(train.labels == label)]
    if unseen:  # classes come from every split: one only the test split has would never be trained
        raise ValueError(f"the {args.train_split!r} split of {args.dataset} has no images of class "
                         f"{', '.join(unseen)}, which another split has. Received: --train-split={args.train_split!r}")
    return (sample(train, args.train_limit, args.seed, "--train-limit"),
            sample(test, args.test_limit, args.seed, "--test-limit"))


def preprocessing(args, train_data):
    """The constructors' ``preprocessing`` for ``--preprocessing``; ``auto`` reads the dataset's name,
    or, for a dataset that is not CIFAR, measures ``train_data``'s per-channel mean and std."""
    if args.preprocessing == "none":
        return None
    if args.preprocessing != "auto":
        return args.preprocessing
    return datasets.dataset_family(args.dataset) or preprocessing_lib.dataset_statistics(train_data.images)


def model_options(args):
    """The constructor options the flags set; weight decay defaults to the recipe's."""
    options = {name: getattr(args, name) for name in MODEL_OPTIONS if getattr(args, name, None) is not None}
    if "weight_decay" not in options and getattr(args, "recipe", None):
        options["weight_decay"] = recipes.get(args.recipe).weight_decay
    return options


def model_spec(name, args, train_data):
    """The `registry.ModelSpec` of registry model ``name`` built as the flags say, for ``train_data``."""
    options = {**model_options(args), "preprocessing": preprocessing(args, train_data)}
    return registry.ModelSpec.of(name, options, train_data.image_shape, train_data.num_classes)


# TrainConfig fields a recipe sets, each overridden by the flag of the same name where given.
RECIPE_FIELDS = ("epochs", "batch_size", "optimizer", "learning_rate", "momentum", "nesterov", "schedule",
                 "warmup_epochs", "label_smoothing", "decay_epochs", "decay_factor")


def train_config(args):
    """The recipe's TrainConfig (`rir_keras.recipes.Recipe.config`) with the flags' overrides."""
    return recipes.get(args.recipe).config(
        **{name: getattr(args, name) for name in RECIPE_FIELDS}, augment=False if args.no_augment else None,
        steps_per_epoch=args.steps_per_epoch, seed=args.seed, jit_compile=False if args.no_jit else "auto")


def add_verbose_argument(parser):
    parser.add_argument("--verbose", default="auto", type=lambda v: v if v == "auto" else int(v),
                        help="Keras fit's verbosity: auto, 0 (silent), 1 (progress bar), 2 (a line per epoch)")


def add_model_source_arguments(parser):
    """The model a command reads: a saved ``.keras`` file, or a registry model with its shipped weights
    (`load_model_source`)."""
    parser.add_argument("model_file", nargs="?", help="a .keras file, e.g. runs/train/model.keras")
    parser.add_argument("--model", help="instead of a file: a registry model with shipped weights, e.g. rir32")
    parser.add_argument("--weights", choices=sorted(pretrained.WEIGHTS_NAMES),
                        help="the shipped weights of --model (default: cifar10; docs/models.md has their cards)")


def load_model_source(args, command):
    """``(model, source)``: the model that `add_model_source_arguments`' flags name, and a dict saying
    which (``model_file``, or ``model`` and ``weights``) for the command's report."""
    if (args.model_file is None) == (args.model is None):
        raise ValueError(f"{command} takes a model file or --model NAME --weights DATASET, one of the two. "
                         f"Received: model_file={args.model_file!r}, --model={args.model!r}")
    if args.model is not None:
        weights = args.weights or "cifar10"
        return pretrained.build(args.model, weights), {"model": args.model, "weights": weights}
    refuse_flags(args, ("weights",), "a .keras model file holds its weights: --weights names the shipped weights "
                                     "of a --model")
    return load_model_file(args.model_file), {"model_file": args.model_file}


def load_model_file(path):
    """The model saved in the ``.keras`` file ``path``, uncompiled; our layers registered for loading."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file not found: {path!r}")
    try:
        return keras.saving.load_model(path, compile=False)
    except (ValueError, OSError, zipfile.BadZipFile) as error:  # a file that is not a .keras model
        reason = " ".join(str(error).split())[:200]
        raise ValueError(f"{path!r} is not a .keras model this package can load ({reason}). "
                         f"Received: model_file={path!r}") from error
