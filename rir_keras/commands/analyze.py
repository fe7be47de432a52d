"""`rir-keras analyze`: how a trained network uses its residual and transient streams."""
from rir_keras import analysis
from rir_keras import data as datasets
from rir_keras.commands import flags


def run_analyze(args):
    model, source = flags.load_model_source(args, "analyze")
    analysis.generalized_layers(model)  # fail before loading data when the model has no streams
    data = None
    if not args.norms_only:
        split = datasets.load_split(args.dataset, args.split, data_dir=args.data_dir)
        data = flags.sample(split, args.limit, args.seed, "--limit")
    report = analysis.analyze(model, data, batch_size=args.batch_size)  # the model normalizes its inputs itself
    report.update(source if "model_file" in source else {"shipped_weights": source})  # "model" is the network's name
    if data is not None:
        report.update(dataset=str(args.dataset), split=args.split)
    paths = analysis.write_report(report, args.output)
    print(analysis.report_markdown(report))
    print("wrote " + ", ".join(paths.values()))
    return 0


def add_analyze(subparsers):
    parser = subparsers.add_parser(
        "analyze", help="kernel quadrant norms and stream ablation of a trained model",
        formatter_class=flags.HelpFormatter,
        description="For each generalized residual layer of a saved model (or a registry model with its "
                    "shipped weights): the norms of its four kernel "
                    "quadrants, and the test accuracy with the residual or the transient stream zeroed at "
                    "that layer's output (and at every layer at once). Writes analysis.json, analysis.md, "
                    "norms.png and ablation.png into --output.",
    )
    flags.add_model_source_arguments(parser)
    parser.add_argument("--output", default="runs/analysis", help="folder for the report")
    parser.add_argument("--dataset", default="cifar10", help="as for train")
    parser.add_argument("--data-dir", help="tensorflow-datasets data folder")
    parser.add_argument("--split", default="test", help="the split to measure")
    parser.add_argument("--limit", type=int, help="use a random subset of this many images")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --limit subset")
    parser.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
    parser.add_argument("--norms-only", action="store_true", help="quadrant norms only: no data, no ablation")
    parser.set_defaults(func=flags.checked(run_analyze))
