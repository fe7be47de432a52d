"""Data-parallel training on the engines the backends ship: several devices, several hosts.

``setup(mode)`` picks the engine that fits Keras' backend and returns a `Distribution`:

    mode            JAX backend                                  TensorFlow backend
    data-parallel   keras.distribution.DataParallel over this    tf.distribute.MirroredStrategy over this
                    host's devices (jax.local_devices())         host's GPUs (its CPUs where it has none)
    multi-worker    keras.distribution.initialize (from the      tf.distribute.MultiWorkerMirroredStrategy
                    KERAS_DISTRIBUTION_* variables), then         (from TF_CONFIG)
                    DataParallel over every host's devices
    auto            multi-worker where TF_CONFIG (TensorFlow) or KERAS_DISTRIBUTION_JOB_ADDRESSES (JAX)
                    is set, else data-parallel where this host has several devices, else none
    none            nothing: training runs exactly as it did before this module existed

The model must be built, compiled and trained inside ``Distribution.scope()`` (variables are created
on every device); ``training.train(..., distribution=...)`` does the rest:

- **The recipe is unchanged.** ``batch_size`` is the *global* batch, split evenly over all devices of
  all workers (128 on 4 GPUs: 32 each), and the learning rate is the recipe's: one step sees the same
  images as on one device, so a distributed run follows the one-device trajectory to float
  precision (tests/test_distributed.py checks it). To train with a larger global batch, set
  ``batch_size`` and ``learning_rate`` yourself (Goyal et al.'s linear rule: both x k).
- **Every batch splits evenly.** The global batch, and the last, short batch of each split where one
  is left over, must divide by the number of devices (`check_batches`): a one-line ValueError says
  which setting to change (``steps_per_epoch`` drops a training remainder). Nothing is dropped or
  padded silently, so the run means the same thing on any number of devices.
- **Batch norm sees the global batch.** Under JAX's DataParallel the step is one program over the
  global batch, so its statistics are the global batch's already; under TensorFlow each replica
  would normalize by its own share, so `prepare` makes every BatchNormalization layer
  ``synchronized`` for training (and `finish` sets it back before the model is saved: a saved
  ``synchronized=True`` layer would not load under JAX).
- **Workers.** Each worker process runs the same command with its own output folder (its own disk,
  or another folder on a shared one) and writes a complete run folder; their weights are the same.
  On a continuation the workers agree on the last epoch all of them backed up (`agree_on_epochs`):
  each keeps its last two epochs' backups, since a kill can land between two workers' backups.
- **Nothing hangs.** Waiting for the other workers at start ends after ``timeout`` seconds with a
  one-line error (a watchdog process: TensorFlow's wait blocks in C++ and has no timeout of its own,
  JAX's is 300 s); under TensorFlow every
  collective gets the same timeout, and a worker that dies makes the others stop with a one-line
  `TrainingStopped` within seconds (TensorFlow's coordination service notices the missing
  heartbeats).
"""
import contextlib
import dataclasses
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import zlib

import keras

from rir_keras.runs import TrainingStopped

MODES = ("none", "auto", "data-parallel", "multi-worker")
DEFAULT_TIMEOUT = 600.0
JAX_VARIABLES = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
                 "KERAS_DISTRIBUTION_PROCESS_ID")


@dataclasses.dataclass
class Distribution:
    """How training is spread over devices; `NONE` where it is not.

    ``engine`` names the engine (``"MirroredStrategy"``, ``"MultiWorkerMirroredStrategy"``,
    ``"DataParallel"``; ``"none"``), ``replicas`` the devices that each take a share of every batch
    (all workers'), ``workers`` the processes, ``worker`` this one's index (0: the chief) and
    ``devices`` this process's devices. ``strategy`` is the engine's object (a ``tf.distribute``
    strategy or a ``keras.distribution.DataParallel``).
    """

    engine: str = "none"
    backend: str = ""
    replicas: int = 1
    workers: int = 1
    worker: int = 0
    devices: tuple = ()
    strategy: object = None
    timeout: float = DEFAULT_TIMEOUT
    program: str = "rir-keras"

    @property
    def active(self):
        return self.engine != "none"

    @property
    def multi_worker(self):
        return self.workers > 1

    @property
    def backups_kept(self):
        """Epoch backups each worker keeps: two where workers must agree on one after a kill."""
        return 2 if self.multi_worker else 1

    def describe(self, batch_size=None):
        """What results.json and sessions.jsonl record of this distribution."""
        described = {"engine": self.engine, "backend": self.backend, "replicas": self.replicas,
                     "workers": self.workers, "worker": self.worker, "devices": list(self.devices)}
        if batch_size is not None:
            described["batch_per_device"] = batch_size // self.replicas
        return described

    @contextlib.contextmanager
    def scope(self):
        """Build, compile and train inside this: the engine's scope. Under multi-worker TensorFlow,
        a worker lost mid-run becomes a one-line `TrainingStopped`. Under multi-process JAX, an error
        is printed as one line and the process ends at once (status 2): JAX's exit handler would
        wait for a lost process (its heartbeat timeout), then abort with a stack trace."""
        if not self.active:
            yield
            return
        with self.strategy.scope():
            if self.multi_worker and self.backend == "jax":
                try:
                    yield
                except Exception as error:  # noqa: BLE001  (whatever it is, the process must not linger)
                    import jax

                    text = " ".join(str(error).split())
                    if isinstance(error, jax.errors.JaxRuntimeError) or any(
                            sign in text for sign in ("Gloo", "UNAVAILABLE", "heartbeat", "Connection closed")):
                        text = _lost_worker_message(error, self)
                    print(f"{self.program}: error: {text}", file=sys.stderr, flush=True)
                    os._exit(2)
                return
            if not (self.multi_worker and self.backend == "tensorflow"):
                yield
                return
            import tensorflow as tf

            lost = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
                    tf.errors.CancelledError, tf.errors.FailedPreconditionError)
            try:
                yield
            except lost as error:
                raise TrainingStopped(_lost_worker_message(error, self)) from None

    @property
    def tuner_strategy(self):
        """KerasTuner's ``distribution_strategy`` (a ``tf.distribute`` strategy, whose scope it enters
        to build and load each trial's model), or None."""
        return self.strategy if self.backend == "tensorflow" else None

    def activate(self):
        """Make a JAX distribution Keras' global one again, e.g. after ``keras.backend.clear_session()``
        (which forgets it) at the start of a tuner trial; TensorFlow's is entered by KerasTuner."""
        if self.backend == "jax":
            keras.distribution.set_distribution(self.strategy)

    def check_batches(self, batch_size, train_images, test_images, steps_per_epoch=None):
        """Raise a one-line ValueError unless every batch of both splits divides over the replicas."""
        if not self.active or self.replicas == 1:
            return
        if batch_size % self.replicas:
            raise ValueError(f"distributed training: the global batch of {batch_size} images does not split evenly "
                             f"over {self.replicas} devices: choose a batch_size divisible by {self.replicas}. "
                             f"Received: batch_size={batch_size}")
        full, rest = divmod(train_images, batch_size)
        if rest % self.replicas and (steps_per_epoch is None or steps_per_epoch > full):
            raise ValueError(f"distributed training: the last batch of the {train_images} training images holds "
                             f"{rest}, which do not split evenly over {self.replicas} devices: change batch_size or "
                             f"the number of training images, or drop it with steps_per_epoch={full}. "
                             f"Received: batch_size={batch_size}")
        rest = test_images % batch_size
        if rest % self.replicas:
            raise ValueError(f"distributed training: the last batch of the {test_images} test images holds {rest}, "
                             f"which do not split evenly over {self.replicas} devices: change batch_size or the "
                             f"number of test images. Received: batch_size={batch_size}")

    def prepare(self, model):
        """Before compiling: TensorFlow's replicas normalize by the global batch's statistics."""
        if self.backend == "tensorflow" and self.replicas > 1:
            _set_synchronized(model, True)

    def finish(self, model):
        """After training, before saving: the layers as they were built."""
        if self.backend == "tensorflow" and self.replicas > 1:
            _set_synchronized(model, False)

    def agree_on_epochs(self, epochs, settings):
        """The epochs every worker holds a backup of (the least of ``epochs`` over the workers), or
        None where there is one worker. A worker started with other ``settings`` is a ValueError."""
        if not self.multi_worker:
            return None
        text = json.dumps({k: v for k, v in settings.items() if k != "dataset"}, sort_keys=True, default=str)
        fingerprint = zlib.crc32(text.encode()) % 2**31  # fits JAX's default int32
        rows = self._gather([int(epochs), fingerprint])
        if len({row[1] for row in rows}) > 1:
            raise ValueError("multi-worker training: the workers were started with different settings (model, "
                             "options, recipe, data sizes): start every worker with the same command. "
                             f"Received: worker {self.worker}'s settings, fingerprint {fingerprint}")
        return min(row[0] for row in rows)

    def _gather(self, numbers):
        """``numbers`` (ints) of every worker, one row each."""
        import numpy as np

        if self.backend == "jax":
            from jax.experimental import multihost_utils

            return [[int(v) for v in row] for row in
                    np.asarray(multihost_utils.process_allgather(np.asarray(numbers, np.int64)))]
        import tensorflow as tf

        local = tf.constant([numbers], tf.int64)
        values = self.strategy.experimental_distribute_values_from_function(lambda context: local)
        return [[int(v) for v in row] for row in self.strategy.gather(values, axis=0).numpy()]

    def local_batches(self, dataset):
        """The part of each global batch this process feeds: all of it, except under JAX with several
        processes, where Keras takes each process's rows (``jax.make_array_from_process_local_data``)."""
        if self.backend == "jax" and self.multi_worker:
            return ProcessShard(dataset, self.worker, self.workers)
        return dataset


NONE = Distribution()


def setup(mode="none", timeout=DEFAULT_TIMEOUT, program="rir-keras", environ=None):
    """The `Distribution` for ``mode`` (one of `MODES`) on Keras' backend; `NONE` for ``"none"``.

    Call it before building anything (JAX's distributed runtime must start before any computation).
    Bad set-ups are one-line ValueErrors; where the other workers do not answer within ``timeout``
    seconds, ``program: error: ...`` is printed and the process is killed (`_watchdog`).
    """
    environ = os.environ if environ is None else environ
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}. Received: mode={mode!r}")
    if mode == "none":
        return NONE
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a number of seconds > 0. Received: timeout={timeout!r}")
    backend = keras.backend.backend()
    if backend not in ("jax", "tensorflow"):
        raise ValueError(f"distributed training needs the JAX or the TensorFlow backend (keras.distribution.DataParallel, "
                         f"tf.distribute); Keras runs on {backend!r}: set KERAS_BACKEND=jax or tensorflow. "
                         f"Received: mode={mode!r}")
    own, other = ("TF_CONFIG", "KERAS_DISTRIBUTION_JOB_ADDRESSES")
    if backend == "jax":
        own, other = other, own
    if mode == "auto":
        if environ.get(own):
            mode = "multi-worker"
        elif _local_device_count(backend) > 1:
            mode = "data-parallel"
        else:
            return NONE
    if mode == "multi-worker" and not environ.get(own):
        hint = ("TF_CONFIG (JSON: cluster and task)" if backend == "tensorflow" else
                "KERAS_DISTRIBUTION_JOB_ADDRESSES, KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID")
        found = f"; {other} is set, which is for the {'JAX' if backend == 'tensorflow' else 'TensorFlow'} backend" \
            if environ.get(other) else ""
        raise ValueError(f"multi-worker training under the {backend} backend reads {hint}, which is not set"
                         f"{found}. Received: mode='multi-worker'")
    if mode == "data-parallel" and environ.get(own):
        raise ValueError(f"{own} is set, which describes several workers: use mode='multi-worker' (or unset "
                         f"{own} to train on this host's devices). Received: mode='data-parallel'")
    if backend == "tensorflow":
        return _tensorflow(mode, timeout, program, environ)
    return _jax(mode, timeout, program, environ)


# -- TensorFlow --------------------------------------------------------------------------------------

def _local_device_count(backend):
    if backend == "jax":
        import jax

        return jax.local_device_count()
    import tensorflow as tf

    return len(tf.config.list_logical_devices("GPU")) or len(tf.config.list_logical_devices("CPU"))


def _tensorflow(mode, timeout, program, environ):
    import tensorflow as tf

    if mode == "data-parallel":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or \
                  [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(devices)
        return Distribution("MirroredStrategy", "tensorflow", strategy.num_replicas_in_sync, 1, 0,
                            tuple(strategy.extended.worker_devices), strategy, timeout, program)
    cluster, task_type, task_index, peers = parse_tf_config(environ.get("TF_CONFIG"))
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout)
    with _watchdog(timeout, program, f"multi-worker training: the workers of TF_CONFIG ({', '.join(peers)}) did "
                                     f"not all start within {timeout:g} s: start every worker with the same cluster, "
                                     f"check the addresses, or allow more time (timeout={timeout:g})"):
        strategy = _multi_worker_strategy_class()(communication_options=options)
    # TensorFlow's preemption notifier swallows SIGTERM (it only notes it); `kill` should stop a worker.
    with contextlib.suppress(ValueError, OSError):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    workers = sum(len(cluster.get(job, [])) for job in ("chief", "worker"))
    worker = 0 if task_type == "chief" else task_index + (1 if cluster.get("chief") else 0)
    return Distribution("MultiWorkerMirroredStrategy", "tensorflow", strategy.num_replicas_in_sync, workers, worker,
                        tuple(strategy.extended.worker_devices), strategy, timeout, program)


def parse_tf_config(text):
    """``(cluster, task type, task index, the other tasks' addresses)`` of TF_CONFIG ``text``, or a
    one-line ValueError saying what is wrong with it."""
    def bad(reason):
        shown = text if len(text) <= 200 else text[:200] + "..."
        return ValueError(f"TF_CONFIG {reason}. Received: TF_CONFIG={shown!r}")

    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise bad(f"does not parse as JSON ({error.msg}, character {error.pos})") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict) or \
            not isinstance(config.get("task"), dict):
        raise bad('must be a JSON object with "cluster" ({"worker": ["host:port", ...]}) and "task" '
                  '({"type": "worker", "index": i})')
    cluster, task = config["cluster"], config["task"]
    jobs = set(cluster) - {"chief", "worker"}
    if jobs or not cluster.get("worker") and not cluster.get("chief"):
        raise bad(f'needs a "worker" job (and at most a "chief"): MultiWorkerMirroredStrategy has no '
                  f'{", ".join(sorted(jobs)) or "tasks"}')
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
            raise bad(f'names its {job!r} tasks as a list of "host:port" strings')
        for address in addresses:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise bad(f'has an address that is not "host:port": {address!r}')
            try:
                socket.getaddrinfo(host.strip("[]"), int(port))
            except (socket.gaierror, UnicodeError):
                raise bad(f"names a host that does not resolve: {host!r}") from None
    task_type, task_index = task.get("type"), task.get("index")
    if task_type not in cluster or not isinstance(task_index, int) or not 0 <= task_index < len(cluster[task_type]):
        raise bad(f'has a "task" that is not in its cluster: type {task_type!r}, index {task_index!r}')
    peers = [address for job, addresses in cluster.items() for i, address in enumerate(addresses)
             if (job, i) != (task_type, task_index)]
    return cluster, task_type, task_index, peers


def _multi_worker_strategy_class():
    import tensorflow as tf

    class MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        """TensorFlow's strategy, with a ``reduce`` that takes what Keras 3's trainer hands it
        (keras-team/keras#20585): a nest of per-replica values (the first batch, to build the model)
        and scalars with ``axis=0`` (the step's metrics). Each value is reduced on its own."""

        def reduce(self, reduce_op, value, axis):
            def one(item):
                rank = getattr(getattr(self.experimental_local_results(item)[0], "shape", None), "rank", None)
                return super(MultiWorkerMirroredStrategy, self).reduce(reduce_op, item, None if rank == 0 else axis)

            return tf.nest.map_structure(one, value)

    return MultiWorkerMirroredStrategy


def _lost_worker_message(error, distribution):
    text = " ".join(str(getattr(error, "message", error)).split())
    tasks = sorted({int(i) for i in re.findall(r"/job:\w+/(?:replica:\d+/)?task:(\d+)", text)} - {distribution.worker})
    who = f"worker {tasks[0]}" if tasks else "another worker"
    reason = "a collective timed out" if "DeadlineExceeded" in type(error).__name__ else "it stopped answering"
    return (f"multi-worker training: {who} of the cluster is lost ({reason}: {text[:160]}); this worker stops "
            f"too. Its output folder keeps the last finished epoch: run every worker's command again to continue")


# -- JAX ---------------------------------------------------------------------------------------------

def _jax(mode, timeout, program, environ):
    import jax

    if mode == "multi-worker":
        addresses, processes, process = _jax_variables(environ)
        # On CPUs JAX's collectives across processes need an implementation (GPUs use NCCL).
        with contextlib.suppress(AttributeError, ValueError):
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        message = (f"multi-worker training: the {processes} processes of KERAS_DISTRIBUTION_JOB_ADDRESSES "
                   f"({addresses}) did not all start within {timeout:g} s: start every process, check the "
                   f"coordinator's address (the first), or allow more time (timeout={timeout:g})")
        with _watchdog(timeout, program, message):
            try:
                keras.distribution.initialize()  # waits for every process (JAX gives up after 300 s)
            except Exception as error:  # noqa: BLE001  (JAX's runtime errors have no common public class)
                raise ValueError(f"{message} ({' '.join(str(error).split())[:200]})") from None
        devices = jax.devices()  # every process's
    else:
        devices = jax.local_devices()
    # Several processes: each feeds its own share of every batch (`ProcessShard`), so Keras must not
    # shard again (it can only shard a tf.data.Dataset).
    strategy = keras.distribution.DataParallel(devices=devices, auto_shard_dataset=mode != "multi-worker")
    local = [d for d in devices if d.process_index == jax.process_index()]
    return Distribution("DataParallel", "jax", len(devices), jax.process_count(), jax.process_index(),
                        tuple(f"{d.platform}:{d.id} ({d.device_kind})" for d in local), strategy, timeout, program)


def _jax_variables(environ):
    addresses = environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES", "")
    values = {}
    for name in JAX_VARIABLES[1:]:
        text = environ.get(name, "")
        if not text.strip().isdigit():
            raise ValueError(f"multi-worker training under JAX needs {name}, a non-negative integer. "
                             f"Received: {name}={text!r}")
        values[name] = int(text)
    processes, process = values["KERAS_DISTRIBUTION_NUM_PROCESSES"], values["KERAS_DISTRIBUTION_PROCESS_ID"]
    listed = [a for a in addresses.split(",") if a.strip()]
    if processes < 1 or process >= processes or (len(listed) > 1 and len(listed) != processes):
        raise ValueError(f"multi-worker training: KERAS_DISTRIBUTION_PROCESS_ID must be below "
                         f"KERAS_DISTRIBUTION_NUM_PROCESSES, and KERAS_DISTRIBUTION_JOB_ADDRESSES list one address "
                         f"(the coordinator's) or one per process. Received: {addresses!r}, {processes}, {process}")
    for address in listed:
        host, _, port = address.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f'KERAS_DISTRIBUTION_JOB_ADDRESSES must list "host:port" addresses. '
                             f"Received: {address!r}")
    return addresses, processes, process


class ProcessShard(keras.utils.PyDataset):
    """The rows of ``dataset``'s batches that process ``index`` of ``count`` feeds: the ``index``-th
    equal part of each global batch (the batch is made, and augmented, whole first, so the images
    are those of one process)."""

    def __init__(self, dataset, index, count):
        super().__init__()
        self.dataset, self.index, self.count = dataset, index, count

    @property
    def epoch(self):
        return self.dataset.epoch

    @epoch.setter
    def epoch(self, value):
        self.dataset.epoch = value

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        images, labels = self.dataset[i]
        share = len(labels) // self.count
        rows = slice(self.index * share, (self.index + 1) * share)
        return images[rows], labels[rows]

    def on_epoch_end(self):
        self.dataset.on_epoch_end()


# -- both --------------------------------------------------------------------------------------------

def _set_synchronized(model, value):
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = value


_WATCHDOG = """
import os, signal, sys, time
parent, seconds, line = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
try:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.2)
        if os.getppid() != parent:
            sys.exit(0)
    sys.stderr.write(line + "\\n")
    sys.stderr.flush()
    os.kill(parent, signal.SIGKILL)
except KeyboardInterrupt:
    pass
"""


@contextlib.contextmanager
def _watchdog(timeout, program, message):
    """Run the block; if it has not finished after ``timeout`` seconds, print ``program: error:
    message`` and kill this process (exit status 137 in a shell). The engines' waits for their peers
    block in C++ holding Python's lock, so neither an exception nor a thread of this process gets to
    run: the watchdog is a small process of its own, stopped when the block ends."""
    watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(timeout),
                                 f"{program}: error: {message}"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        yield
    finally:
        watchdog.kill()
        watchdog.wait()
