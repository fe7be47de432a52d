"""A training run's folder: what it was started with, how far it got, how fast it goes.

``training.train`` writes, into its output folder, ``run.json`` (the settings the run was started
with, written before its first epoch), ``log.csv`` (one row per finished epoch, with the epoch's
wall time in ``seconds``), ``backup/`` (the last finished epoch: `rir_keras.backup` writes and
restores it) and, once finished, ``results.json``. These functions read them, so a folder copied to
another machine or checked out of git tells where it stands.

This module needs no Keras (it imports Keras only inside the functions that ask the backend:
`accelerators`, `log_session`), and neither does `rir_keras.atomic`, which it writes with: a
Python without Keras imports both (``rir_keras/__init__.py`` registers the layers only where Keras is
installed). tools/gpu/ reads and carries run folders with them under a bare ``python3``.
"""
import contextlib
import dataclasses
import datetime
import json
import math
import os
import statistics

from rir_keras.atomic import write_json, write_text

SETTINGS_FILE = "run.json"
SESSIONS_FILE = "sessions.jsonl"
LOG_FILE = "log.csv"
RESULTS_FILE = "results.json"
BACKUP_FOLDER = "backup"
BACKUP_POINTER = "training_metadata.json"  # in backup/: the epochs done and the weights file holding them
RECENT_EPOCHS = 3  # the epochs whose median time is a run's current speed
# Settings that belong to the machine a session runs on, not to the run (sessions.jsonl records them
# per session): a continuation elsewhere may differ in them. docs/design.md, "Precision".
MACHINE_SETTINGS = ("precision",)
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")  # what decides the CPU's number formats


class TrainingStopped(Exception):
    """Training stopped before its last epoch (Ctrl-C, a kill signal turned exception, a loss that
    became NaN). The one-line message says why and what the run folder keeps; ``rir-keras`` prints
    it as its error."""


def _plain(value):
    """``value`` as JSON gives it back (tuples become lists), so stored and new settings compare."""
    return json.loads(json.dumps(value, default=str))


def _flat(settings, prefix=""):
    """Nested dicts as one dict with dotted keys, so a difference names the setting itself."""
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


_REQUIRED = object()


def read_json(path, default=_REQUIRED):
    """The JSON value in the file ``path``. With ``default``: that where the file is missing or holds no
    JSON (a torn write by another program); without, those raise."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        if default is _REQUIRED:
            raise
        return default


def check_settings(folder, settings, restart=False):
    """Record ``settings`` in ``folder``'s run.json, or check them against those recorded.

    A run continued with settings that change its result would silently mix two runs, so it is
    refused with one line naming each differing setting, unless ``restart`` (the caller then
    starts the folder over). `MACHINE_SETTINGS` are never compared: runs started before precision
    became a property of the session recorded it here. Returns True if settings were recorded before
    (a continuation).
    """
    path = os.path.join(folder, SETTINGS_FILE)
    settings = _plain(settings)
    if os.path.isfile(path) and not restart:
        stored, new = (_flat({k: v for k, v in s.items() if k not in MACHINE_SETTINGS}) for s in (read_json(path), settings))
        differing = [f"{key}={stored.get(key)!r} (now {new.get(key)!r})"
                     for key in sorted(set(stored) | set(new)) if stored.get(key) != new.get(key)]
        if differing:
            raise ValueError(f"{folder} holds a run started with other settings: {', '.join(differing)}; "
                             f"rerun with them, or start over with restart=True. Received: output={folder!r}")
        return True
    os.makedirs(folder, exist_ok=True)
    write_json(settings, path)
    return False


def cpu():
    """This machine's CPU: ``{"model", "cores", "flags"}``, flags being those of `CPU_FLAGS` it has
    (from /proc/cpuinfo; none where that is missing)."""
    import platform

    fields = {}
    if os.path.isfile("/proc/cpuinfo"):
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    return {"model": fields.get("model name") or platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "flags": [flag for flag in CPU_FLAGS if flag in flags]}


def accelerators():
    """The backend's accelerators: ``[{"name", "platform", "compute_capability"}]`` (capability a float
    such as 9.0 for CUDA GPUs, else None); empty on a CPU-only machine."""
    import keras

    found = []
    if keras.backend.backend() == "jax":
        import jax

        for device in jax.devices():
            if device.platform != "cpu":
                capability = getattr(device, "compute_capability", None)
                found.append({"name": device.device_kind, "platform": device.platform,
                              "compute_capability": float(capability) if capability else None})
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        for device in tf.config.list_physical_devices("GPU"):
            details = tf.config.experimental.get_device_details(device)
            capability = details.get("compute_capability")
            found.append({"name": details.get("device_name", device.name), "platform": "gpu",
                          "compute_capability": float("{}.{}".format(*capability)) if capability else None})
    elif keras.backend.backend() == "torch":
        import torch

        for index in range(torch.cuda.device_count()):
            found.append({"name": torch.cuda.get_device_name(index), "platform": "gpu",
                          "compute_capability": float("{}.{}".format(*torch.cuda.get_device_capability(index)))})
    return found


def machine():
    """This machine in words: the accelerator where the backend has one, else the CPU's model and cores."""
    devices = accelerators()
    if devices:
        return f"{len(devices)} x {devices[0]['name']}"
    described = cpu()
    return f"{described['model']} ({described['cores']} cores)"


def log_session(folder, first_epoch, **extra):
    """Append to ``folder``'s sessions.jsonl that training (re)starts at ``first_epoch``, here and now,
    with the machine and its CPU (and ``extra``: the session's precision, the devices of a distributed
    run)."""
    import keras

    line = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "first_epoch": first_epoch, "backend": keras.backend.backend(), "machine": machine(), "cpu": cpu(),
            **extra}
    with open(os.path.join(folder, SESSIONS_FILE), "a", encoding="utf-8") as handle:
        handle.write(json.dumps(line) + "\n")


def sessions(folder):
    """The lines of ``folder``'s sessions.jsonl (a torn last line, from a kill, is skipped)."""
    path = os.path.join(folder, SESSIONS_FILE)
    if not os.path.isfile(path):
        return []
    lines = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            with contextlib.suppress(json.JSONDecodeError):
                lines.append(json.loads(line))
    return lines


def session_precisions(folder):
    """The precisions ``folder``'s sessions computed in, in order, each once. Sessions from before
    sessions.jsonl recorded it computed in run.json's ``precision`` (float32 where that is missing)."""
    path = os.path.join(folder, SETTINGS_FILE)
    before = (read_json(path) if os.path.isfile(path) else {}).get("precision", "float32")
    return list(dict.fromkeys(session.get("precision", before) for session in sessions(folder)))


@contextlib.contextmanager
def exclusive(folder, argument="output"):
    """Hold ``folder`` for this process alone while the block runs: two processes training into one
    folder would corrupt it. Another holder makes this raise a ValueError naming it, and ``argument``
    (the parameter or flag that gave ``folder``)."""
    import fcntl

    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, ".lock"), "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise ValueError(f"another process (pid {holder}) is training in {folder}; wait for it or stop it. "
                             f"Received: {argument}={folder!r}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclasses.dataclass
class Progress:
    """How far the run in ``folder`` got."""

    folder: str
    epochs_done: int
    epochs_total: int  # None where the run has not started
    finished: bool
    last_accuracy: float  # the last logged epoch's test (validation) accuracy, or None
    test_accuracy: float  # the finished run's final test accuracy, or None
    seconds_per_epoch: float  # median wall time of its last three logged epochs (the speed now), or None

    @property
    def epochs_left(self):
        return None if self.epochs_total is None else max(0, self.epochs_total - self.epochs_done)

    def seconds_left(self, seconds_per_epoch=None):
        speed = self.seconds_per_epoch or seconds_per_epoch
        if self.finished:
            return 0.0
        if speed is None or self.epochs_left is None:
            return None
        return self.epochs_left * speed


def read_log(path):
    """The rows of a CSVLogger file as ``{column: [float, ...]}``, one row per epoch (the last
    one written wins, and the header a resumed run repeats is skipped)."""
    import csv

    if not os.path.isfile(path):
        return {}
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("epoch") not in (None, "epoch")]
    by_epoch = {int(float(row["epoch"])): row for row in rows}
    columns = list(rows[0]) if rows else []
    ordered = [by_epoch[e] for e in sorted(by_epoch)]
    return {key: [float(row[key]) if row.get(key) not in (None, "") else math.nan for row in ordered]
            for key in columns}


def trim_log(path, epochs):
    """Keep in the CSV log at ``path`` the rows of its first ``epochs`` epochs only (remove the file
    for 0): a run resumed from a backup of ``epochs`` epochs logs the later ones again."""
    if not os.path.isfile(path):
        return
    if not epochs:
        os.remove(path)
        return
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines(keepends=True)
    # A row cut short (a kill or a full disk mid-write) has no line end: it goes too.
    kept = lines[:1] + [line for line in lines[1:]
                        if line.endswith("\n") and line.strip() and float(line.split(",", 1)[0]) < epochs]
    if kept != lines:
        write_text("".join(kept), path)


def backed_up_epochs(folder):
    """The epochs the backup of the run in ``folder`` holds (its ``backup/`` + `BACKUP_POINTER`,
    written by `rir_keras.backup.EpochBackup`): 0 where there is none yet."""
    pointer = os.path.join(folder, BACKUP_FOLDER, BACKUP_POINTER)
    return int(read_json(pointer)["epoch"]) if os.path.isfile(pointer) else 0


def backup_files(folder):
    """The files that restore the run in ``folder``, relative to it: the backup's `BACKUP_POINTER` and
    the weights file it names; none where either is missing (no backup yet, or a copy that lost its
    weights). They belong together: a copy of the run takes both or neither."""
    pointer = os.path.join(BACKUP_FOLDER, BACKUP_POINTER)
    weights = read_json(os.path.join(folder, pointer), {}).get("weights")
    if not weights or not os.path.isfile(os.path.join(folder, BACKUP_FOLDER, weights)):
        return []
    return [pointer, os.path.join(BACKUP_FOLDER, weights)]


def finished(folder):
    """Whether the run in ``folder`` has finished: its results are written and its backup is gone (the
    last thing ``training.train`` does; a run killed in between finishes when continued)."""
    return (os.path.isfile(os.path.join(folder, RESULTS_FILE))
            and not os.path.isdir(os.path.join(folder, BACKUP_FOLDER)))


def progress(folder):
    """The ``Progress`` of the run in ``folder`` (an empty or missing folder has done nothing)."""
    settings_path = os.path.join(folder, SETTINGS_FILE)
    results_path = os.path.join(folder, RESULTS_FILE)
    settings = read_json(settings_path) if os.path.isfile(settings_path) else {}
    results = read_json(results_path) if os.path.isfile(results_path) else None
    log = read_log(os.path.join(folder, LOG_FILE))
    total = settings.get("config", {}).get("epochs")
    accuracies = [a for a in log.get("val_accuracy", []) if not math.isnan(a)]
    seconds = [s for s in log.get("seconds", []) if not math.isnan(s)]
    logged = len(log.get("epoch", []))
    return Progress(
        folder=folder, epochs_done=logged if results else min(logged, backed_up_epochs(folder)),
        epochs_total=total, finished=results is not None,
        last_accuracy=accuracies[-1] if accuracies else None,
        test_accuracy=results["test_accuracy"] if results else None,
        seconds_per_epoch=statistics.median(seconds[-RECENT_EPOCHS:]) if seconds else None,
    )


def format_duration(seconds):
    if seconds is None:
        return "unknown"
    minutes = int(round(seconds / 60))
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"
