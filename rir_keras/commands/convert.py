"""`rir-keras convert`: a pytorchcv RiR weights file (.pth) as a Keras model file of ours."""
from rir_keras.applications import pytorchcv_rir
from rir_keras.commands import flags


def run_convert(args):
    model = pytorchcv_rir.convert(args.source, args.output, identity=args.identity, overwrite=args.overwrite)
    classes = model.output_shape[-1]
    print(f"converted {args.source} ({classes} classes) to {args.output}")
    if args.output.endswith(".weights.h5"):
        print(f"load it with: rir_keras.applications.pytorchcv_rir.build(classes={classes}, "
              f"identity={args.identity!r}, weights={args.output!r})")
    return 0


def add_convert(subparsers):
    parser = subparsers.add_parser(
        "convert", help="convert pytorchcv's rir_cifar10/rir_cifar100/rir_svhn weights (.pth) to Keras",
        formatter_class=flags.HelpFormatter,
        description="Read the weights file of a pytorchcv RiR model (rir_cifar10, rir_cifar100, rir_svhn: the "
                    "state dict pytorchcv downloads, e.g. ~/.torch/models/rir_cifar10-0328-414c3e60.pth) and write "
                    "them as our model computing the same function (rir_keras.applications.pytorchcv_rir.build: "
                    "ResNet Init, 18-layer wide, conv_bn head, projection shortcuts, imgclsmob's input "
                    "normalization inside the model, which takes raw images in [0, 255]). Needs PyTorch.")
    parser.add_argument("source", help="the pytorchcv weights file (.pth)")
    parser.add_argument("--output", required=True, help="a .keras file (the model) or a .weights.h5 file (its weights)")
    parser.add_argument("--identity", default="constant", choices=pytorchcv_rir.IDENTITIES,
                        help="where our generalized layers keep the identity: 'constant' has pytorchcv's parameters, "
                             "'init' folds identity and projections into the kernels (the same function)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.set_defaults(func=run_convert)
