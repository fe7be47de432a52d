"""Grid search with KerasTuner: resumable, distributable, with a results table and the best model.

The project folder (``directory/project_name``) holds KerasTuner's state (``oracle.json``, one
``trial_*`` folder per trial, with the best epoch's weights and ``runs.jsonl``: which tuner ran it)
and what `write_results` adds:

    results.md, results.csv   every trial: hyperparameters, best validation accuracy, epochs
    best.weights.h5           the best trial's weights (its best epoch)
    best.json                 how to rebuild that model (``spec``: registry name, constructor options,
                              input shape, classes, preprocessing), its hyperparameters,
                              training configuration and metrics

and ``run.json``, the settings the search was started with (`prepare_project`). KerasTuner's private
API is used only through `rir_keras.tuning.keras_tuner_internals`.
"""
import csv
import dataclasses
import glob
import io
import itertools
import json
import os
import shutil
import socket
import threading
import time

import keras
import keras_tuner
import psutil
from keras_tuner.engine.trial import TrialStatus

from rir_keras import atomic, markdown, runs, training
from rir_keras.applications import registry
from rir_keras.tuning import keras_tuner_internals as internals
from rir_keras.tuning.keras_tuner_internals import ChiefLost  # noqa: F401  (what a worker raises)

OBJECTIVE = "val_accuracy"
IDLE_WAIT_SECONDS = 0.5
# Distributed search: the chief gives the trial of a worker it has not heard from for this long to
# another worker; a worker waits this long for a chief that does not answer, then ends.
HEARTBEAT_TIMEOUT = 120.0
HEARTBEATS_PER_TIMEOUT = 10
CHIEF_TIMEOUT = 3600.0
TRIAL_LOG = "runs.jsonl"  # in each trial folder: one line per time a tuner began or ended the trial
METRIC_COLUMNS = ("val_accuracy", "val_loss", "accuracy", "loss", "best_epoch", "epochs")
# What a search writes into its project folder: what a restart deletes (nothing else there).
PROJECT_ENTRIES = ("*.json", "trial_*", "tensorboard", "results.md", "results.csv", "best.weights.h5")


class ResumableGridSearchOracle(internals.AtomicOracleFiles, keras_tuner.oracles.GridSearchOracle):
    """`GridSearchOracle` that resumes after a reload, keeps every worker busy and outlives lost workers.

    KerasTuner 1.4's grid oracle walks the grid from the trials that have *ended*, and keeps that
    walk (``_ordered_ids``, ``_populate_next``) out of ``oracle.json``: a reloaded search stops at
    once or fails with a KeyError (keras-team/keras-tuner#1055), and a second worker waits for the
    first one's trial to end before it gets the next point. Here the next trial is simply the first
    point of the grid, in KerasTuner's order (the first hyperparameter varies slowest, each one's
    default first), that no trial has taken: nothing to rebuild after a reload, and as many trials
    at once as workers. A trial that was running when a single search died runs again (KerasTuner's
    retry queue); its state files are written atomically (`keras_tuner_internals.AtomicOracleFiles`).

    As the chief of a distributed search, it notes when it last heard from each worker (each call:
    asking for a trial, a worker's heartbeat, its results); `requeue_silent` sends the trial of a
    worker silent for ``heartbeat_timeout`` seconds to the next worker that asks. A restarted chief
    leaves the trials that were running with their workers (they may still train them) and requeues
    them only if their workers stay silent. Every worker call may come twice (a worker sends again
    a call its chief's death cut off): results for a trial that has ended already are dropped.
    """

    def __init__(self, *args, heartbeat_timeout=HEARTBEAT_TIMEOUT, **kwargs):
        super().__init__(*args, **kwargs)
        self.heartbeat_timeout = heartbeat_timeout
        self.last_heard = {}  # tuner id: time.monotonic() of its last call
        self.runners = {}  # trial id: the tuner it was last given to
        self.reloaded_ongoing = {}

    def set_state(self, state):
        super().set_state(state)
        # KerasTuner writes a trial's file, then oracle.json. A kill between the two leaves either
        # a finished trial still listed as running (reload would run it again: drop it) or a new
        # RUNNING trial that no tuner owns, which oracle.json may not even list as started (its grid
        # point would count as done: run it again). Every trial file counts, not only start_order.
        for tuner_id, trial in list(self.ongoing_trials.items()):
            if trial.status in (TrialStatus.COMPLETED, TrialStatus.FAILED):
                del self.ongoing_trials[tuner_id]
                if trial.trial_id not in self.end_order:
                    self.end_order.append(trial.trial_id)
        queue = internals.retry_queue(self)
        owned = {trial.trial_id for trial in self.ongoing_trials.values()} | set(queue)
        for trial_id in sorted(self.trials):
            if self.trials[trial_id].status == TrialStatus.RUNNING and trial_id not in owned:
                queue.append(trial_id)
                if trial_id not in self.start_order:
                    self.start_order.append(trial_id)
        self.reloaded_ongoing = dict(self.ongoing_trials)

    def reload(self):
        super().reload()
        if role() != "chief":
            return
        internals.keep_running_trials(self, self.reloaded_ongoing)
        for tuner_id, trial in self.ongoing_trials.items():  # their workers have a timeout to call
            self.tuner_ids.add(tuner_id)
            self.runners[trial.trial_id] = tuner_id
            self.last_heard[tuner_id] = time.monotonic()

    def grid_points(self):
        """Every point of the grid, in search order, as ``{name: value}``."""
        space = self.get_space().space
        choices = [[hp.default, *(v for v in hp.values if v != hp.default)] for hp in space]
        return [dict(zip((hp.name for hp in space), point)) for point in itertools.product(*choices)]

    def populate_space(self, trial_id):
        taken = {_point_key(trial.hyperparameters.values) for trial in self.trials.values()}
        for point in self.grid_points():
            if _point_key(point) not in taken:
                return {"status": TrialStatus.RUNNING, "values": point}
        if self.ongoing_trials:  # the grid is taken, not finished: a worker waits for the others
            return {"status": TrialStatus.IDLE, "values": None}
        return {"status": TrialStatus.STOPPED, "values": None}

    def heard_about(self, trial_id):
        if trial_id in self.runners:
            self.last_heard[self.runners[trial_id]] = time.monotonic()

    @keras_tuner.synchronized
    def create_trial(self, tuner_id):
        self.last_heard[tuner_id] = time.monotonic()
        trial = super().create_trial(tuner_id)
        if trial.status == TrialStatus.RUNNING:
            self.runners[trial.trial_id] = tuner_id
        return trial

    @keras_tuner.synchronized
    def get_trial(self, trial_id):  # also a worker's heartbeat
        self.heard_about(trial_id)
        return super().get_trial(trial_id)

    @keras_tuner.synchronized
    def update_trial(self, trial_id, metrics, step=0):
        self.heard_about(trial_id)
        if trial_id in self.end_order:  # sent again, or by a worker given up for lost
            return self.trials[trial_id]
        return super().update_trial(trial_id, metrics, step=step)

    @keras_tuner.synchronized
    def end_trial(self, trial):
        self.heard_about(trial.trial_id)
        if trial.trial_id in self.end_order:
            print(f"rir-keras tune: trial {trial.trial_id} has ended already; a second result for it is dropped",
                  flush=True)
            return
        super().end_trial(trial)

    @keras_tuner.synchronized
    def requeue_silent(self):
        """Forget every worker not heard from for ``heartbeat_timeout`` seconds (its heartbeat stopped:
        killed, or cut off) and send its trial, if it has one, to the next worker that asks."""
        now = time.monotonic()
        for tuner_id in sorted(set(self.tuner_ids) | set(self.ongoing_trials)):
            silent = now - self.last_heard.get(tuner_id, now)
            if silent <= self.heartbeat_timeout:
                continue
            self.tuner_ids.discard(tuner_id)
            trial = self.ongoing_trials.pop(tuner_id, None)
            if trial is not None:
                internals.retry_queue(self).append(trial.trial_id)
                self.save()
                print(f"rir-keras tune: no word from {tuner_id} for {silent:.0f} s (heartbeat timeout "
                      f"{self.heartbeat_timeout:g} s): its trial {trial.trial_id} goes to the next worker", flush=True)


def _point_key(values):
    return tuple(sorted(values.items()))


class GridSearch(keras_tuner.GridSearch):
    """`keras_tuner.GridSearch` on `ResumableGridSearchOracle`, maximizing ``val_accuracy``.

    Always resumes (``overwrite=False``): finished trials of an earlier run in the same project
    folder are kept, an interrupted one runs again. Prints one line as each trial begins and ends
    (with this process's resident memory), and keeps ``memory``: ``[(trial_id, RSS bytes)]``.

    In a distributed search, ``heartbeat_timeout`` (seconds) is how long the chief waits for word
    from a worker before it gives the worker's trial to another; a worker sends a heartbeat
    ``HEARTBEATS_PER_TIMEOUT`` times per timeout while it trains. ``chief_timeout`` is how long a
    worker waits for a chief that does not answer (a restarted chief takes it back) before it raises
    `ChiefLost`. ``distribution_strategy`` is KerasTuner's: each trial's model is built in its scope.
    """

    def __init__(self, hypermodel, max_trials=None, directory=None, project_name=None, seed=None,
                 heartbeat_timeout=HEARTBEAT_TIMEOUT, chief_timeout=CHIEF_TIMEOUT, distribution_strategy=None):
        for name, seconds in (("heartbeat_timeout", heartbeat_timeout), ("chief_timeout", chief_timeout)):
            if not isinstance(seconds, (int, float)) or not seconds > 0:
                raise ValueError(f"{name} must be a number of seconds > 0. Received: {name}={seconds!r}")
        oracle = ResumableGridSearchOracle(objective=keras_tuner.Objective(OBJECTIVE, "max"),
                                           max_trials=max_trials, seed=seed, heartbeat_timeout=heartbeat_timeout)
        self.seed = seed
        self.heartbeat_seconds = heartbeat_timeout / HEARTBEATS_PER_TIMEOUT
        self.heartbeat = None
        try:
            keras_tuner.Tuner.__init__(self, oracle, hypermodel, directory=directory, project_name=project_name,
                                       overwrite=False, distribution_strategy=distribution_strategy)
        except (ValueError, KeyError, TypeError, AttributeError, RuntimeError) as error:  # a damaged state file
            raise damaged_state(os.path.join(str(directory), str(project_name)), error.__cause__ or error) from None
        self.memory = []
        if role() == "worker":
            internals.wait_for_chief(self.oracle, chief_timeout)
            self.oracle.create_trial = _waiting_when_idle(self.oracle.create_trial)

    def save(self):
        internals.save_tuner(self)

    def search(self, *fit_args, **fit_kwargs):
        if role() == "chief":
            self.oracle.verbose = fit_kwargs.get("verbose", self.oracle.verbose)
        # The tuner's file from the start: KerasTuner reloads a search only where it exists, and writes it
        # after a trial's own file, so a kill between the two would otherwise run that trial again.
        self.save()
        if role() != "chief":
            return super().search(*fit_args, **fit_kwargs)
        serve_oracle(self.oracle)
        return None

    def on_trial_begin(self, trial):
        print(f"[{self.tuner_id}] trial {trial.trial_id} begins: {trial.hyperparameters.values}", flush=True)
        log_trial_event(self.project_dir, trial.trial_id, event="begin", tuner=self.tuner_id)
        if role() == "worker":
            self.heartbeat = Heartbeat(self.oracle, trial.trial_id, self.heartbeat_seconds)
        super().on_trial_begin(trial)

    def on_trial_end(self, trial):
        try:
            super().on_trial_end(trial)
        finally:
            if self.heartbeat is not None:
                self.heartbeat.stop()
                self.heartbeat = None
        rss = psutil.Process().memory_info().rss
        self.memory.append((trial.trial_id, rss))
        log_trial_event(self.project_dir, trial.trial_id, event="end", tuner=self.tuner_id, status=trial.status, rss=rss)
        print(f"[{self.tuner_id}] trial {trial.trial_id} ends: {trial.status}; resident memory "
              f"{rss / 2**20:.0f} MiB", flush=True)


class Heartbeat:
    """While a worker trains a trial, a thread tells the chief every ``seconds`` that the worker
    lives, by asking for the trial (``get_trial``): training itself calls the chief only at the end."""

    def __init__(self, oracle, trial_id, seconds):
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.beat, args=(oracle, trial_id, seconds), daemon=True,
                                       name=f"heartbeat of trial {trial_id}")
        self.thread.start()

    def beat(self, oracle, trial_id, seconds):
        while not self.stopped.wait(seconds):
            try:
                oracle.get_trial(trial_id)
            except ChiefLost:
                return  # the training thread finds out at its own next call

    def stop(self):
        self.stopped.set()


def damaged_state(folder, error):
    """The one-line ValueError for a search state in ``folder`` that KerasTuner failed to reload with
    ``error``: it names the first state file that is not JSON (else oracle.json, whose fields KerasTuner
    found missing or wrong) and the way out."""
    files = [os.path.join(folder, "oracle.json"), *sorted(glob.glob(os.path.join(glob.escape(folder), "*.json"))),
             *sorted(glob.glob(os.path.join(glob.escape(folder), "trial_*", "trial.json")))]
    path, reason = files[0], f"incomplete: KerasTuner's {type(error).__name__} {error}"
    for candidate in files:
        try:
            with open(candidate, encoding="utf-8") as handle:
                json.load(handle)
        except (OSError, ValueError) as broken:
            path, reason = candidate, f"not JSON: {broken}"
            break
    return ValueError(f"the search state {path} is damaged ({reason}), so the search cannot resume; start it over "
                      f"with --restart, which deletes the trials and results in {folder}. Received: {path}")


def log_trial_event(project_dir, trial_id, **fields):
    """Append one line to ``trial_<id>/runs.jsonl``: which tuner (``KERASTUNER_TUNER_ID``), host and
    process began or ended the trial, and when. A trial run twice (resumed) has two ``begin`` lines."""
    fields.update(host=socket.gethostname(), pid=os.getpid(), time=time.time())
    folder = os.path.join(str(project_dir), f"trial_{trial_id}")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, TRIAL_LOG), "a", encoding="utf-8") as handle:
        handle.write(json.dumps(fields, sort_keys=True) + "\n")  # one write: appends do not interleave


def trial_runs(project_dir, trial_id):
    """The lines `log_trial_event` wrote for a trial, oldest first (``[]`` if none reached this folder)."""
    path = os.path.join(str(project_dir), f"trial_{trial_id}", TRIAL_LOG)
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.endswith("\n")]  # a killed write leaves no newline


def _waiting_when_idle(create_trial):
    """A worker whose chief has no trial for it yet asks again at once, in a loop; pause instead."""

    def create(tuner_id):
        trial = create_trial(tuner_id)
        if trial.status == TrialStatus.IDLE:
            time.sleep(IDLE_WAIT_SECONDS)
        return trial

    return create


def serve_oracle(oracle, poll_seconds=IDLE_WAIT_SECONDS):
    """Serve ``oracle`` to the workers (KERASTUNER_ORACLE_IP:KERASTUNER_ORACLE_PORT) until the
    search is over: no trial left, none running, and every worker told to stop or given up for lost
    (``oracle.requeue_silent``, every ``poll_seconds``)."""
    address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
    server, servicer = internals.start_chief(oracle, address)
    try:
        while not internals.search_over(servicer, oracle):
            time.sleep(poll_seconds)
            oracle.requeue_silent()
    finally:
        server.stop(grace=1)


def role():
    """``"chief"``, ``"worker"`` or ``"single"``: this process's part in a KerasTuner search."""
    if not internals.distributed():
        return "single"
    return "chief" if internals.is_chief() else "worker"


def describe_devices():
    """The backend and the accelerators it will train on, e.g. ``tensorflow on GPU:0``."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = [d.name.replace("/physical_device:", "") for d in tf.config.list_physical_devices("GPU")]
    elif backend == "jax":
        import jax

        gpus = [str(d) for d in jax.devices() if d.platform != "cpu"]
    elif backend == "torch":
        import torch

        gpus = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    else:
        gpus = []
    return f"{backend} on {', '.join(gpus) if gpus else 'CPU'}"


def search_settings(hypermodel, **data):
    """What decides a search's results, for its run.json: the model, its fixed options, the grid, the
    training configuration (less the fields the grid sets and XLA compilation, which do not), the
    number, shape and classes of the training images, and ``data`` (the caller's dataset, splits,
    precision, ...). How much of the grid is run (``max_trials``) and how much is printed are free."""
    config = {k: v for k, v in training._settings_of(hypermodel.config).items() if k not in hypermodel.grid}
    data_shape = hypermodel.train_data.image_shape, hypermodel.train_data.num_classes
    spec = registry.ModelSpec.of(hypermodel.model_name, hypermodel.model_options, *data_shape)
    return {"spec": spec.to_dict(), "grid": hypermodel.grid, "train_config": config,
            "train_images": len(hypermodel.train_data), **data}


def prepare_project(folder, settings, restart=False):
    """Record ``settings`` in the project folder's run.json, or check them against those recorded there
    (`rir_keras.runs.check_settings`): a search resumed with settings that would change its results is
    refused, with a ValueError naming each one that differs. ``restart`` first deletes what a search
    wrote there (``PROJECT_ENTRIES``). A worker of a distributed search leaves both to its chief: it
    only checks its settings against the chief's where it sees them (a shared folder), unless it is
    told to restart."""
    folder = os.fspath(folder)
    if role() == "worker":
        if not restart and os.path.isfile(os.path.join(folder, runs.SETTINGS_FILE)):
            runs.check_settings(folder, settings)
        return
    if restart:
        for pattern in PROJECT_ENTRIES:
            for path in glob.glob(os.path.join(glob.escape(folder), pattern)):
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    runs.check_settings(folder, settings)


def trial_rows(oracle, axes, project_dir):
    """One dict per trial, best validation accuracy first (unfinished and failed trials last);
    ``tuner`` is the tuner that last ran it, from its trial log (`TRIAL_LOG`)."""
    rows = []
    for trial_id, trial in oracle.trials.items():
        runs = trial_runs(project_dir, trial_id)
        row = {"trial": trial_id, "status": trial.status, "tuner": runs[-1]["tuner"] if runs else None}
        row.update({name: trial.hyperparameters.values.get(name) for name in axes})
        for metric in METRIC_COLUMNS:
            row[metric] = trial.metrics.get_last_value(metric) if trial.metrics.exists(metric) else None
        for count in ("best_epoch", "epochs"):  # KerasTuner keeps every metric as a float
            row[count] = None if row[count] is None else int(row[count])
        rows.append(row)
    return sorted(rows, key=lambda r: (r[OBJECTIVE] is None, -(r[OBJECTIVE] or 0.0), r["trial"]))


def csv_table(rows, columns):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({c: "" if row[c] is None else row[c] for c in columns} for row in rows)
    return buffer.getvalue()


def write_results(tuner, hypermodel, header=""):
    """Write results.md, results.csv, best.weights.h5 and best.json into the project folder.

    Returns the rows of the table (best first). Needs every trial's folder, so in a search over
    several machines the chief runs it on the folder the workers share.
    """
    folder = str(tuner.project_dir)
    axes = list(hypermodel.grid)
    columns = ["trial", "status", *axes, *METRIC_COLUMNS, "tuner"]
    rows = trial_rows(tuner.oracle, axes, folder)
    finished = [r for r in rows if r[OBJECTIVE] is not None]
    summary = (f"{header}{len(finished)} of {len(rows)} trials finished; objective: best {OBJECTIVE} "
               f"over each trial's epochs.\n\n")
    table = markdown.table(columns, [[markdown.cell(row[c]) for c in columns] for row in rows])
    atomic.write_text(summary + table + "\n", os.path.join(folder, "results.md"))
    atomic.write_text(csv_table(rows, columns), os.path.join(folder, "results.csv"))
    if finished:
        trial = tuner.oracle.get_trial(finished[0]["trial"])
        best = {
            "trial": trial.trial_id,
            "spec": hypermodel.spec(trial.hyperparameters).to_dict(),
            "hyperparameters": trial.hyperparameters.values,
            "train_config": dataclasses.asdict(hypermodel.trial_config(trial.hyperparameters)),
            **{metric: finished[0][metric] for metric in METRIC_COLUMNS},
        }
        checkpoint = internals.checkpoint_file(tuner, trial.trial_id)
        if os.path.isfile(checkpoint):
            model = build_recorded(best)  # uncompiled: the weights file gets no optimizer state
            model.load_weights(checkpoint)
            model.save_weights(os.path.join(folder, "best.weights.h5"))
        else:  # workers on other machines, without a shared folder, keep their checkpoints
            print(f"rir-keras tune: no {checkpoint} here (the worker that ran trial {trial.trial_id} kept it); "
                  f"best.json written, best.weights.h5 not", flush=True)
        atomic.write_json(best, os.path.join(folder, "best.json"))
    return rows


def build_recorded(best):
    """The (untrained, uncompiled) model a ``best.json`` describes (its ``spec``)."""
    return registry.ModelSpec.from_dict(best.get("spec"), source="best.json's spec").build()


def load_best(folder):
    """The best model of a finished search in ``folder`` (the project folder), with its weights."""
    path = os.path.join(folder, "best.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no best.json in the search folder (has a trial finished?). Received: folder={folder!r}")
    with open(path, encoding="utf-8") as handle:
        model = build_recorded(json.load(handle))
    model.load_weights(os.path.join(folder, "best.weights.h5"))
    return model
