"""`rir-keras reproduce`: train every model of a paper table, one seed after another, resumably."""
import argparse
import os

from rir_keras import data as datasets
from rir_keras import atomic, runs
from rir_keras.applications import registry
from rir_keras.commands import campaign, flags
from rir_keras.commands.train import train_one


def run_reproduce(args):
    if args.status:
        print(campaign.status(args.status), end="")
        return 0
    if args.compare:
        print(campaign.comparison_table(args.compare), end="")
        return 0
    members = registry.group_members(args.table)
    names = args.models or list(members)
    for name in names:
        if name not in members:
            raise ValueError(f"--models must name models of table {args.table} ({', '.join(members)}). "
                             f"Received: --models={name}")
    seeds = args.seeds if args.seeds is not None else [args.seed]
    distribution = flags.distribution(args, "reproduce")
    train_data, test_data = flags.load_data(args)
    with runs.exclusive(args.output):
        plan = {"table": args.table, "models": names, "seeds": seeds, "recipe": args.recipe,
                "dataset": str(args.dataset), "family": datasets.dataset_family(args.dataset) or "",
                "epochs": flags.train_config(args).epochs}
        atomic.write_json(plan, os.path.join(args.output, "campaign.json"))
        for name, seed, folder in campaign.runs_of(args.output, plan):
            train_one(name, argparse.Namespace(**{**vars(args), "seed": seed}), train_data, test_data, folder,
                      restart=args.restart, distribution=distribution)
            table = campaign.results_table(args.output, plan)
            atomic.write_text(table, os.path.join(args.output, "results.md"))
    print(table)
    return 0


def add_reproduce(subparsers):
    parser = subparsers.add_parser("reproduce", help="train every model of a paper table, write a markdown table",
                                   formatter_class=flags.HelpFormatter,
                                   description="Train each model of a paper table with one recipe, for one seed "
                                               "after another, into OUTPUT/MODEL/seedN, and write "
                                               "OUTPUT/results.md: measured accuracy beside the paper's figure. "
                                               "Rerunning continues where it stopped (also from a copy of OUTPUT "
                                               "on another machine); finished runs are not trained again.")
    parser.add_argument("--table", default="32", choices=sorted(registry.GROUPS),
                        help="32: Tables 1 and 6; 18-wide: Tables 2 and 3; sweep: Table 4; all-cnn: Table 5; "
                             "forget: Table 6")
    parser.add_argument("--models", nargs="+", help="train these models of the table, in this order (default: all)")
    parser.add_argument("--seeds", type=int, nargs="+", help="one run per seed, all models of a seed first "
                                                             "(default: --seed)")
    parser.add_argument("--output", default="runs/reproduce",
                        help="the campaign's folder: a run folder per model and seed, and the table")
    parser.add_argument("--status", metavar="DIR",
                        help="print each run's epochs done and left, last accuracy and ETA of the campaign in DIR; "
                             "train nothing")
    parser.add_argument("--compare", metavar="DIR", nargs="+",
                        help="print the finished models of the campaigns in these folders side by side (data, "
                             "precision, recipe, mean ± standard deviation over seeds, the paper's figure, wall "
                             "time, machines); train nothing")
    parser.add_argument("--restart", action="store_true", help="start every run of the table over")
    flags.add_verbose_argument(parser)
    flags.add_data_arguments(parser)
    flags.add_model_arguments(parser)
    flags.add_fit_arguments(parser)
    flags.add_distribute_arguments(parser)
    parser.set_defaults(func=flags.checked(run_reproduce))
