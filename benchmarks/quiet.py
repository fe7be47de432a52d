"""A quiet machine for every benchmark section: the training campaign paused, the load checked and recorded.

Timings taken beside other work are worthless on a 2-core machine (docs/benchmarks.md once gave
ratios that spread from 0.55 to 5.32 within one row, measured at load 4-5). So each
section runs inside `quiet_machine`: it pauses the background campaign (``kill -STOP`` on the PID
in its pid file, to its whole process group when it leads one, as `make campaign` starts it;
``kill -CONT`` afterwards, whatever happens), then waits until the CPUs are idle
(busy share of all cores, from /proc/stat over a few seconds, at most ``max_busy`` per core) and
refuses with a one-line error if they do not become so in time. What it saw is returned, for the
section's header: the load averages before and after, the busy share, what was paused.
"""
import contextlib
import dataclasses
import os
import signal
import time

DEFAULT_PID_FILE = os.path.join("results", "campaign.pid")


class BusyMachine(RuntimeError):
    """The machine did not become quiet in time: nothing was measured."""


def busy_cores(seconds=3.0):
    """How many cores were busy, on average, over the next ``seconds`` (from /proc/stat)."""
    def totals():
        with open("/proc/stat", encoding="utf-8") as handle:
            values = [int(v) for v in handle.readline().split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return sum(values), idle

    total, idle = totals()
    time.sleep(seconds)
    total2, idle2 = totals()
    elapsed = total2 - total
    return 0.0 if elapsed <= 0 else os.cpu_count() * (1 - (idle2 - idle) / elapsed)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def signal_campaign(pid, signum):
    """Send ``signum`` to the campaign: its process group when ``pid`` leads one (`make campaign`
    runs its stages under a shell that does), else the process alone."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signum)
            return
    except ProcessLookupError:
        return
    os.kill(pid, signum)


def campaign_pid(pid_file):
    """The PID in ``pid_file`` if that process runs, else None."""
    try:
        with open(pid_file, encoding="utf-8") as handle:
            pid = int(handle.read().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


@dataclasses.dataclass
class Conditions:
    load_before: tuple
    busy_before: float  # cores busy when the section began
    paused: int = None  # the campaign's PID, paused for the section
    load_after: tuple = None
    forced: bool = False  # the section ran although the machine was busy (--allow-busy)

    def describe(self):
        load = lambda values: ", ".join(f"{v:.2f}" for v in values)  # noqa: E731
        parts = [f"load average (1, 5, 15 min) before {load(self.load_before)}, after {load(self.load_after)}",
                 f"{self.busy_before:.2f} of {os.cpu_count()} cores busy when it began"]
        parts.append(f"the training campaign (PID {self.paused}) paused meanwhile" if self.paused else
                     "no training campaign running")
        if self.forced:
            parts.append("**taken on a busy machine (--allow-busy): its absolute times are not trustworthy**")
        return "; ".join(parts)


@contextlib.contextmanager
def quiet_machine(pid_file=DEFAULT_PID_FILE, max_busy=0.5, wait_seconds=300.0, allow_busy=False, say=print):
    """Pause the campaign, wait for idle CPUs (``max_busy`` cores busy per core at most), yield the
    `Conditions` (``load_after`` filled in on exit), resume the campaign."""
    pid = campaign_pid(pid_file)
    terminate = signal.getsignal(signal.SIGTERM)
    if pid is not None:
        # A `kill` of the benchmark must resume the campaign too: SIGTERM unwinds through `finally`.
        signal.signal(signal.SIGTERM, _exit_on_term)
        say(f"pausing the training campaign (PID {pid}) for this section")
        signal_campaign(pid, signal.SIGSTOP)
    try:
        limit = max_busy * os.cpu_count()
        deadline = time.monotonic() + wait_seconds
        busy = busy_cores()
        while busy > limit and not allow_busy:
            if time.monotonic() > deadline:
                raise BusyMachine(f"the machine stayed busy ({busy:.2f} of {os.cpu_count()} cores) for "
                                  f"{wait_seconds:.0f} s: nothing measured; stop the other work or pass --allow-busy. "
                                  f"Received: --max-busy={max_busy}")
            say(f"waiting for a quiet machine: {busy:.2f} cores busy (at most {limit:.2f})")
            busy = busy_cores()
        conditions = Conditions(load_before=os.getloadavg(), busy_before=busy, paused=pid,
                                forced=busy > limit)
        yield conditions
        conditions.load_after = os.getloadavg()
    finally:
        if pid is not None:
            signal_campaign(pid, signal.SIGCONT)
            signal.signal(signal.SIGTERM, terminate)
            say(f"resumed the training campaign (PID {pid})")


def _exit_on_term(signum, frame):
    raise SystemExit(128 + signum)
