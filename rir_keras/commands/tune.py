"""`rir-keras tune`: a KerasTuner grid search over a registry model, on one machine or several."""
import os
import sys

import keras

from rir_keras import data as datasets
from rir_keras import distribute, precision, training
from rir_keras.applications import registry
from rir_keras.commands import flags
from rir_keras.interrupts import caused_by_interrupt
from rir_keras.runs import TrainingStopped
from rir_keras.tuning import grid as grids
from rir_keras.tuning.hypermodel import RiRHyperModel
from rir_keras.tuning.search import (ChiefLost, GridSearch, describe_devices, prepare_project, role, search_settings,
                                     write_results)


def model_options(args, grid):
    """The constructor options held fixed: `rir-keras train`'s model flags for the axes the grid
    leaves out, then ``--model-option NAME=VALUE`` pairs (values read as YAML)."""
    options = {k: v for k, v in flags.model_options(args).items() if k not in grid}
    for pair in args.model_option:
        name, equals, text = pair.partition("=")
        if not equals or not name:
            raise ValueError(f"--model-option must be NAME=VALUE. Received: --model-option={pair!r}")
        if name in grid:
            raise ValueError(f"--model-option {name} is an axis of the grid; drop one of them. Received: --model-option={pair!r}")
        options[name] = grids.read_yaml(text)
    return options


def validation_data(args, train, test):
    """``(train, validation, description)``: the test split, as the paper did, or a share of train."""
    if args.validation_split is None:
        return train, test, f"the {args.test_split!r} split ({len(test)} images)"
    train, validation = datasets.split_validation(train, args.validation_split, seed=args.seed)
    return train, validation, f"{args.validation_split:g} of the {args.train_split!r} split ({len(validation)} images)"


def refuse_overridden_flags(args, grid, defaults):
    """The grid's values win, so a flag of a hyperparameter it sets would be ignored: refused instead."""
    given = [name for name in grid if getattr(args, name) != defaults[name]]
    flags.refuse_flags(args, given, f"the grid {args.grid!r} sets these hyperparameters")


def trial_distribution(args):
    """Each trial data-parallel over this host's devices (``--distribute``); trials go to other
    machines through KerasTuner's own distributed mode, so ``multi-worker`` is not for ``tune``."""
    if args.distribute == "multi-worker":
        raise ValueError("tune spreads trials over machines with KerasTuner's distributed mode (KERASTUNER_* "
                         "variables, docs/tuning.md); --distribute data-parallel spreads each trial over this "
                         "host's devices. Received: --distribute=multi-worker")
    environ = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "KERAS_DISTRIBUTION_JOB_ADDRESSES")}
    return distribute.setup(args.distribute, args.distribute_timeout, program="rir-keras tune", environ=environ)


def run_tune(args, flag_defaults):
    grid = grids.load_grid(args.grid)
    refuse_overridden_flags(args, grid, flag_defaults)
    options = model_options(args, grid)
    distribution = trial_distribution(args)
    train, test = flags.load_data(args)
    train, validation, validation_source = validation_data(args, train, test)
    config = flags.train_config(args)
    for batch_size in grid.get("batch_size", [config.batch_size]):
        distribution.check_batches(batch_size, len(train), len(validation), config.steps_per_epoch)
    if "preprocessing" not in options:  # a --model-option preprocessing=... wins over --preprocessing
        options["preprocessing"] = flags.preprocessing(args, train)
    chosen = precision.use(args.precision, argument="--precision")  # of this machine: not in run.json
    hypermodel = RiRHyperModel(args.model, grid, train, config, options, distribution=distribution)
    project = args.project_name or args.model
    prepare_project(os.path.join(args.directory, project),
                    search_settings(hypermodel, dataset=str(args.dataset), data=datasets.data_identity(args.dataset),
                                    train_split=args.train_split,
                                    test_split=args.test_split, validation_split=args.validation_split,
                                    validation_images=len(validation)),
                    restart=args.restart)
    spread = (f"; each trial {distribution.engine} over {distribution.replicas} devices"
              if distribution.active else "")
    print(f"rir-keras tune: {describe_devices()}{spread}; {chosen.policy} ({chosen.reason}); {role()} process; grid {args.grid!r} of {grids.grid_size(grid)} "
          f"points, max trials {args.max_trials or 'all'}; folder {os.path.join(args.directory, project)}", flush=True)
    tuner = GridSearch(hypermodel, max_trials=args.max_trials, directory=args.directory, project_name=project,
                       seed=args.seed, heartbeat_timeout=args.heartbeat_timeout, chief_timeout=args.chief_timeout,
                       distribution_strategy=distribution.tuner_strategy)
    callbacks = []
    if training.tensorboard_available():  # KerasTuner adds the HParams plugin and a folder per trial
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(str(tuner.project_dir), "tensorboard")))
    try:
        tuner.search(train, validation, callbacks=callbacks, verbose=args.verbose)
    except ChiefLost as error:  # a worker whose chief is gone
        print(f"rir-keras tune: error: worker {tuner.tuner_id}: {error}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Exception) as error:  # Ctrl-C, SIGTERM, or the error an interrupt became
        if not caused_by_interrupt(error):
            raise
        done = sum(trial.status == "COMPLETED" for trial in tuner.oracle.trials.values())
        raise TrainingStopped(f"interrupted: {tuner.project_dir} keeps {done} finished trials; run the same command "
                              f"again to continue (a trial in progress starts over)") from None
    if role() == "worker":
        print(f"rir-keras tune: worker {tuner.tuner_id} done", flush=True)
        return 0
    header = (f"Model {args.model} ({options}), dataset {args.dataset}, {len(train)} training images, "
              f"validation on {validation_source}, {args.epochs} epochs per trial.\n")
    rows = write_results(tuner, hypermodel, header=header)
    folder = str(tuner.project_dir)
    best = next((row for row in rows if row["val_accuracy"] is not None), None)
    if best is not None:
        print(f"rir-keras tune: best trial {best['trial']}: val_accuracy {best['val_accuracy']:.4f} with "
              f"{ {name: best[name] for name in grid} }", flush=True)
    print(f"rir-keras tune: {len(rows)} trials in {os.path.join(folder, 'results.md')} and results.csv; "
          f"best model: best.weights.h5, best.json", flush=True)
    return 0


def add_tune(subparsers):
    parser = subparsers.add_parser(
        "tune", help="grid-search hyperparameters with KerasTuner",
        formatter_class=flags.HelpFormatter,
        description="Grid-search a registry model's hyperparameters with KerasTuner's GridSearch, maximizing "
                    "val_accuracy. Run the same command again to resume: finished trials are kept. Several "
                    "machines: start this same command with KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP and "
                    "KERASTUNER_ORACLE_PORT set (see docs/tuning.md). Flags set the hyperparameters the grid "
                    "leaves out; the grid's values win.")
    parser.add_argument("--model", required=True, help=f"one of: {', '.join(registry.names())}")
    parser.add_argument("--grid", default="paper",
                        help=f"a preset ({', '.join(grids.preset_names())}) or a .yaml/.yml/.json file mapping "
                             f"hyperparameters ({', '.join(grids.HYPERPARAMETERS)}) to lists of values")
    parser.add_argument("--max-trials", type=int, help="stop after this many trials in all (earlier runs count)")
    parser.add_argument("--directory", default="runs/tune", help="KerasTuner's folder")
    parser.add_argument("--project-name", help="subfolder holding the search and its results; default: the model")
    parser.add_argument("--validation-split", type=float,
                        help="validate on this share of the training images; default: on the test split, as the paper did")
    parser.add_argument("--model-option", action="append", default=[], metavar="NAME=VALUE",
                        help="a constructor argument without a flag, held fixed, VALUE read as YAML: "
                             "widths=[8,8,8], layers_per_block=2")
    parser.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2), help="model.fit's verbosity")
    parser.add_argument("--restart", action="store_true",
                        help="start over: delete what the search folder holds (trials, results) and search anew; "
                             "without it, a rerun resumes and must keep the settings that change results")
    parser.add_argument("--heartbeat-timeout", type=float, default=120, metavar="SECONDS",
                        help="several machines: the chief gives the trial of a worker silent this long to another "
                             "worker (workers send a heartbeat ten times per timeout: give every process the same)")
    parser.add_argument("--chief-timeout", type=float, default=3600, metavar="SECONDS",
                        help="several machines: a worker waits this long for a chief that does not answer "
                             "(a restarted chief takes it back), then ends with an error")
    flags.add_data_arguments(parser)
    flags.add_model_arguments(parser)
    flags.add_fit_arguments(parser)
    flags.add_distribute_arguments(parser)
    defaults = {name: parser.get_default(name) for name in grids.HYPERPARAMETERS}
    parser.set_defaults(func=flags.checked(lambda args: run_tune(args, defaults)))
