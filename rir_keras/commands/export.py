"""`rir-keras export`: write a trained model as a SavedModel, an ONNX file or a .keras file taking raw images."""
import os

from rir_keras import export
from rir_keras.applications import registry
from rir_keras.commands import flags

PREPROCESSING = ("cifar10", "cifar100")
# The flags that say how a --model was built (a .keras file knows); the model flags of training only.
BUILD_FLAGS = ("classes", "image_size", "preprocessing", *flags.MODEL_OPTIONS)
TRAINING_ONLY = ("weight_decay", "kernel_initializer")


def load_model(args):
    """The model to export: a .keras file, or a registry model built with the given options and weights."""
    if (args.model_file is None) == (args.model is None):
        raise ValueError("give either a MODEL.keras file or --model NAME --weights FILE. "
                         f"Received: model_file={args.model_file!r}, --model={args.model!r}")
    if args.model_file is not None:
        flags.refuse_flags(args, ("weights", *BUILD_FLAGS), "a .keras model file carries how it was built "
                                  "(its options, classes, image size and preprocessing), so flags that say it go "
                                  "with --model NAME --weights FILE only")
        return flags.load_model_file(args.model_file)
    record = registry.record(args.model)  # unknown names raise ValueError listing the known ones
    if args.weights is None:
        raise ValueError(f"--model needs --weights FILE.weights.h5 (the trained weights). Received: --model={args.model!r}")
    if not os.path.isfile(args.weights):
        raise FileNotFoundError(f"weights file not found: {args.weights!r}")
    options = flags.model_options(args)
    options.pop("weight_decay", None)  # the recipe's default: a training setting, no flag here (refused above)
    return record.build(input_shape=(args.image_size or 32,) * 2 + (3,), classes=args.classes or 10,
                        weights=args.weights, preprocessing=args.preprocessing or record.preprocessing, **options)


def describe(preprocessing):
    if isinstance(preprocessing, str):
        return preprocessing
    mean, std = preprocessing
    return "mean " + ", ".join(f"{m:.4g}" for m in mean) + "; std " + ", ".join(f"{s:.4g}" for s in std)


def run_export(args):
    flags.refuse_flags(args, TRAINING_ONLY, "a training setting changes no weight and no prediction of a "
                                                   "trained model")
    if args.format == "keras":
        flags.refuse_flags(args, ("top_k", "class_names"), "the .keras format outputs the model's own "
                                  "probabilities: top-k outputs are for the saved_model and onnx formats")
    elif args.top_k is None:
        flags.refuse_flags(args, ("class_names",), "class names are those of the top_k_names output: give "
                                                          "--top-k too")
    if os.path.lexists(args.output) and not args.overwrite:
        raise ValueError(f"output already exists; pass --overwrite to replace it. Received: --output={args.output!r}")
    model = load_model(args)
    preprocessing = export.require_preprocessing(model)
    options = {"overwrite": args.overwrite}
    if args.format != "keras":
        options.update(top_k=args.top_k, class_names=args.class_names)
    export.export(model, args.output, format=args.format, **options)
    print(f"exported {model.name} ({args.format}, preprocessing: {describe(preprocessing)}) to {args.output}")
    return 0


def add_export(subparsers):
    parser = subparsers.add_parser(
        "export", help="export a trained model for serving (SavedModel, ONNX, .keras)",
        formatter_class=flags.HelpFormatter,
        description="Export a trained model so that it takes raw images (uint8 pixels 0..255): the model's "
                    "own input normalization (its preprocessing layer) is inside the exported graph, and batch "
                    "norm runs in inference mode; a model built without one (include_preprocessing=False) "
                    "is refused. "
                    "The SavedModel (signatures serving_default: uint8 images, serving_float32: float32 "
                    "images in [0, 255]) and the ONNX file load without Keras or rir_keras. "
                    "For TensorFlow Serving, export to <base>/<name>/<version>, e.g. models/rir32/1.")
    parser.add_argument("model_file", nargs="?", help="a .keras model file (or use --model and --weights)")
    parser.add_argument("--model", help=f"a registry name, with --weights: one of {', '.join(registry.names())}")
    parser.add_argument("--weights", help="a .weights.h5 (or .keras) file of the --model")
    parser.add_argument("--output", required=True,
                        help="where to write: a folder (saved_model), a .onnx file or a .keras file")
    parser.add_argument("--format", default="saved_model", choices=export.FORMATS,
                        help="saved_model (TensorFlow Serving), onnx, or keras (a .keras file taking raw images)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output (atomically)")
    parser.add_argument("--top-k", type=int, help="also output the K best class ids, scores and names")
    parser.add_argument("--class-names", choices=("cifar10", "cifar100"),
                        help="names for top_k_names; default: those of the dataset whose statistics the "
                             "model's preprocessing layer holds, if the class count matches")
    group = parser.add_argument_group("with --model: how the model was built")
    group.add_argument("--classes", type=int, help="default: 10")
    group.add_argument("--image-size", type=int, help="default: 32")
    group.add_argument("--preprocessing", choices=PREPROCESSING,
                       help="the statistics its preprocessing layer normalizes by (default: cifar10); a model "
                            "trained with other statistics: export its .keras file, which carries them")
    flags.add_model_arguments(parser)
    parser.set_defaults(func=flags.checked(run_export))

