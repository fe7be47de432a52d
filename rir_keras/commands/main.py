"""The `rir-keras` program (``python -m rir_keras.commands.main`` runs it too).

Each subcommand lives in a module of this folder, which adds its parser with a function
``add(subparsers)`` that sets ``func`` on it (`SUBCOMMANDS`). Errors come out as one line with exit
status 2; the library names its parameters (``batch_size=128``, ``restart=True``), and `in_flags`
says the flags that set them instead (``--batch-size=128``, ``--restart``).
"""
import argparse
import importlib
import re
import sys

import rir_keras
from rir_keras.commands import flags
from rir_keras.dependencies import MissingDependency
from rir_keras.interrupts import stop_signals_as_interrupt
from rir_keras.runs import TrainingStopped

# name: (module of rir_keras.commands, its function that adds the subparser)
SUBCOMMANDS = {
    "train": ("train", "add_train"),
    "evaluate": ("train", "add_evaluate"),
    "reproduce": ("reproduce", "add_reproduce"),
    "export": ("export", "add_export"),
    "convert": ("convert", "add_convert"),
    "analyze": ("analyze", "add_analyze"),
    "tune": ("tune", "add_tune"),
}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="rir-keras",
        description="Resnet in Resnet for Keras 3: train, evaluate, reproduce, tune, export, analyze.",
    )
    parser.add_argument("--version", action="version", version=f"rir-keras {rir_keras.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in sorted(SUBCOMMANDS):
        module, function = SUBCOMMANDS[name]
        try:
            add = getattr(importlib.import_module(f"rir_keras.commands.{module}"), function)
        except ImportError as error:  # one command missing a package must not take the others down
            add = _unavailable(name, error)
        add(subparsers)
    return parser


def _unavailable(name, error):
    def fail(args):
        raise RuntimeError(f"the {name!r} command could not be loaded: {error}")

    def add(subparsers):
        parser = subparsers.add_parser(name, help=f"(unavailable: {error})")
        parser.set_defaults(func=fail)

    return add


def in_flags(message, parser, aliases=None):
    """``message``, from the library, in the words of ``parser``'s flags: each ``parameter=value``
    where ``parser`` has a flag of that destination becomes ``--flag=value`` (a switch set to True the
    bare flag: ``restart=True`` -> ``--restart``), and each bare parameter name with an underscore
    the flag (``batch_size`` -> ``--batch-size``). ``aliases`` maps the library's names of parameters
    that a flag of another name sets (``{"mode": "distribute"}``): only their ``name=value`` form
    is translated."""
    aliases = aliases or {}
    by_dest = {action.dest: action for action in parser._actions if action.option_strings}

    def flag(action):
        return max(action.option_strings, key=len)  # --batch-size, not a short form

    def assignment(match):
        action = by_dest.get(aliases.get(match.group(1), match.group(1)))
        if action is None:
            return match.group(0)
        return flag(action) if action.nargs == 0 and match.group(2) == "True" else f"{flag(action)}={match.group(2)}"

    def bare(match):
        action = by_dest.get(match.group(1))
        return match.group(0) if action is None else flag(action)

    message = re.sub(r"(?<![\w.-])([a-z][a-z0-9_]*)=('[^']*'|\"[^\"]*\"|\[[^\]]*\]|[^\s,;)]*)", assignment, message)
    return re.sub(r"(?<![\w.=-])([a-z][a-z0-9]*(?:_[a-z0-9]+)+)(?![\w=-])", bare, message)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with stop_signals_as_interrupt():
            return args.func(args) or 0
    except (ValueError, OSError, MissingDependency, TrainingStopped) as error:
        # Bad input, a file or disk problem (missing, read-only, full), a missing package, training
        # interrupted or diverged: one line, exit status 2.
        message = " ".join(str(error).split()) or type(error).__name__
        subparser = parser._subparsers._group_actions[0].choices[args.command]
        message = in_flags(message, subparser, flags.LIBRARY_NAMES)
        print(f"rir-keras {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rir-keras {args.command}: error: interrupted", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
