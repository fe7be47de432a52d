"""Stop signals as KeyboardInterrupt, remembered.

Within `stop_signals_as_interrupt()`, SIGTERM (what a scheduler, ``kill`` or ``docker stop``
sends) raises KeyboardInterrupt as Ctrl-C does, so a command stops the same way, saying what it
keeps. An interrupt raised while a C extension runs does not always come back as itself: Python
turns it into ``SystemError: ... returned a result with an exception set``, and the extension may
catch that and raise its own error, sometimes with the interrupt lost from the error's chain
(TensorFlow's tf.data structure checks do; seen once in CI, as a ValueError about nested
structures). `caused_by_interrupt(error)` therefore also asks whether a stop signal arrived within
the block, not only whether the error's chain holds a KeyboardInterrupt.
"""
import contextlib
import signal

_signals_received = []  # the stop signals received within the innermost active block


def _interrupt(signum, frame):
    _signals_received.append(signum)
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def stop_signals_as_interrupt():
    """Within the block, SIGTERM, and SIGINT where Python's own handler has it, raise KeyboardInterrupt
    and are remembered (`signal_received`). Only in the main thread, where Python runs signal handlers."""
    handled = [signal.SIGTERM] + ([signal.SIGINT] if signal.getsignal(signal.SIGINT) is signal.default_int_handler
                                  else [])
    previous = {signum: signal.signal(signum, _interrupt) for signum in handled}
    received_before = list(_signals_received)
    _signals_received.clear()
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _signals_received[:] = received_before


def signal_received():
    """Whether a stop signal arrived within the active `stop_signals_as_interrupt` block."""
    return bool(_signals_received)


def caused_by_interrupt(error):
    """Whether ``error`` comes from an interrupt: a KeyboardInterrupt among its causes and contexts, or
    a stop signal received within the active `stop_signals_as_interrupt` block (whose interrupt a C
    extension may have turned into its own error, with the chain lost)."""
    if signal_received():
        return True
    pending, seen = [error], set()
    while pending:
        error = pending.pop()
        if error is None or id(error) in seen:
            continue
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        pending += [error.__cause__, error.__context__]
    return False
