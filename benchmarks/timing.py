"""Interleaved timing across worker processes, and the statistics the tables report.

Variants compared with each other are timed in turns within one run (A B C, B C A, C A B, ...),
so that load from other processes on a shared machine falls on all of them alike, and ratios are
taken repeat by repeat before their median.
"""
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


class Worker:
    """A ``worker.py`` process holding one framework (``"tensorflow"``, ``"jax"`` or ``"torch"``), with
    ``env`` added to its environment (e.g. ``{"TF_ENABLE_ONEDNN_OPTS": "0"}``)."""

    def __init__(self, framework, log, env=None):
        self.framework = framework
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {}), "PYTHONPATH": os.pathsep.join(
            p for p in (HERE, os.environ.get("PYTHONPATH")) if p)}
        self.process = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "worker.py"), framework], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=log, text=True, env=env,
        )

    def _ask(self, **request):
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.framework} worker died; see its log")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"{self.framework} worker failed on {request}:\n{reply['error']}")
        return reply

    def setup(self, name, factory, **kwargs):
        return self._ask(op="setup", name=name, factory=factory, kwargs=kwargs)

    def run(self, name, steps):
        """``(wall seconds, CPU seconds of the worker process)`` of ``steps`` steps."""
        reply = self._ask(op="run", name=name, steps=steps)
        return reply["seconds"], reply["cpu_seconds"]

    def turns(self, names, steps):
        return self._ask(op="turns", names=names, steps=steps)["seconds"]

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=60)


class Job:
    """One variant to time: ``steps`` calls of ``name`` on ``worker`` per repeat."""

    def __init__(self, label, worker, name, steps, factory, **kwargs):
        self.label, self.worker, self.name, self.steps = label, worker, name, steps
        self.info = worker.setup(name, factory, **kwargs)
        self.seconds = []  # wall time per step, one entry per repeat
        self.cpu_seconds = []  # CPU time of the worker process per step (burst timing only)

    def time(self):
        seconds, cpu_seconds = self.worker.run(self.name, self.steps)
        self.seconds.append(seconds / self.steps)
        self.cpu_seconds.append(cpu_seconds / self.steps)


def interleave(jobs, repeats, warmup_steps=1, progress=None):
    """Time every job ``repeats`` times, rotating the order each repeat.

    Jobs that all live in one worker and take the same number of steps are interleaved call by
    call (``Worker.turns``); otherwise each job's steps run as one burst, bursts in turns.
    """
    for job in jobs:
        job.worker.run(job.name, warmup_steps)
    same_worker = len({id(job.worker) for job in jobs}) == 1 and len({job.steps for job in jobs}) == 1
    for repeat in range(repeats):
        if same_worker:
            totals = jobs[0].worker.turns([job.name for job in jobs], jobs[0].steps)
            for job, seconds in zip(jobs, totals):
                job.seconds.append(seconds / job.steps)
        else:
            shift = repeat % len(jobs)
            for job in jobs[shift:] + jobs[:shift]:
                job.time()
        if progress:
            progress(f"repeat {repeat + 1}/{repeats}")
    return jobs


def median(values):
    return statistics.median(values)


def ratios(job, baseline):
    """Per-repeat time ratios ``job / baseline``."""
    return [a / b for a, b in zip(job.seconds, baseline.seconds)]


def ratio_text(values):
    """``median [min-max]`` of ratios, e.g. ``1.02 [0.98-1.05]``."""
    return f"{median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"
