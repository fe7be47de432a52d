"""The `rir-keras` command line.

Each subcommand is contributed by the layer that owns it through the ``rir_keras.commands``
entry-point group (see setup.py): an entry point names a function ``add(subparsers)`` that adds
one subparser and sets ``func`` on it. So this module, in the core, imports nothing above it.
"""
import argparse
import contextlib
import signal
import sys
from importlib.metadata import entry_points

from rir_keras.dependencies import MissingDependency
from rir_keras.runs import TrainingStopped

COMMAND_GROUP = "rir_keras.commands"


def build_parser():
    parser = argparse.ArgumentParser(
        prog="rir-keras",
        description="Resnet in Resnet for Keras 3: train, evaluate, reproduce, tune, export, analyze.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for entry in sorted(entry_points(group=COMMAND_GROUP), key=lambda e: e.name):
        try:
            add = entry.load()
        except ImportError as error:  # one broken plugin must not take the other commands down
            add = _unavailable(entry.name, error)
        add(subparsers)
    return parser


def _unavailable(name, error):
    def fail(args):
        raise RuntimeError(f"the {name!r} command could not be loaded: {error}")

    def add(subparsers):
        parser = subparsers.add_parser(name, help=f"(unavailable: {error})")
        parser.set_defaults(func=fail)

    return add


@contextlib.contextmanager
def terminate_as_interrupt():
    """Within the block, SIGTERM (what a scheduler, ``kill`` or ``docker stop`` sends) raises
    KeyboardInterrupt as Ctrl-C does, so a command stops the same way: saying what it keeps."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with terminate_as_interrupt():
            return args.func(args) or 0
    except (ValueError, OSError, MissingDependency, TrainingStopped) as error:
        # Bad input, a file or disk problem (missing, read-only, full), a missing package, training
        # interrupted or diverged: one line, exit status 2.
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"rir-keras {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rir-keras {args.command}: error: interrupted", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
