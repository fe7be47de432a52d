"""Data-parallel training (rir_keras.distribute): on CPUs, as each engine allows without GPUs.

- JAX, two host devices (XLA_FLAGS=--xla_force_host_platform_device_count=2), DataParallel: killed
  after a backup and resumed, it ends with the weights of one device with the same global batch.
- TensorFlow, two logical CPUs, MirroredStrategy (synchronized batch norm): the same check.
- TensorFlow, two worker processes on 127.0.0.1, MultiWorkerMirroredStrategy: when one worker is
  killed the other stops within seconds with one line; both continue (after agreeing on the epoch
  each of them holds) to the one-worker weights.
- Bad set-ups are one-line errors, a cluster that never comes together included.

Each distributed run is a process of its own: the devices must be set before the engine starts.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from rir_keras import distribute, runs, training
from rir_keras.backup import EpochBackup, restore_backup
from rir_keras.applications import RiRNet
from rir_keras.commands.main import main
from rir_keras.data import load_split

from conftest import REPO

EPOCHS, BATCH, LEARNING_RATE = 3, 32, 0.01  # 64 images: 2 steps an epoch, 16 images a device
# A small learning rate keeps the float drift between engines (summation order, E[x^2] - E[x]^2 in
# synchronized batch norm) at ~1e-6 on AVX2 CPUs and ~3e-5 on AVX512 ones (other kernels, other
# rounding); at 0.1 this tiny network is chaotic and amplifies it. A wrong state is off by ~1e-1.
TOLERANCE = dict(rtol=1e-4, atol=1e-4)

# One training run, as `rir-keras train` does it (build and train in the distribution's scope),
# on the brief's tiny network. argv: mode, output folder, seconds to sleep after each epoch's backup.
RUN = """
import os, sys, time
mode, output, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])
if os.environ.get("LOGICAL_CPUS"):
    import tensorflow as tf
    cpus = [tf.config.LogicalDeviceConfiguration()] * int(os.environ["LOGICAL_CPUS"])
    tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0], cpus)
import keras
from rir_keras import distribute, training
from rir_keras.applications import RiRNet
from rir_keras.data import load_split
from rir_keras.runs import TrainingStopped

class Pause(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        time.sleep(pause)  # after the backup: a kill lands between two epochs

archive = os.path.join(os.environ["RIR_KERAS_DATA"], "cifar10-png-mini.tar.gz")
train, test = load_split(archive, "train").subset(slice(0, 64)), load_split(archive, "test").subset(slice(0, 32))
try:
    distribution = distribute.setup(mode, timeout=float(os.environ.get("TIMEOUT", "120")))
    with distribution.scope():
        keras.utils.set_random_seed(0)
        model = RiRNet(blocks_per_stage=(1, 1, 1), widths=(8, 8, 8))
        config = training.TrainConfig(epochs=%d, batch_size=%d, learning_rate=%r,
                                      jit_compile=keras.backend.backend() == "jax")  # the faster start of each
        training.train(model, train, test, config, output, verbose=0, callbacks=[Pause()] if pause else [],
                       distribution=distribution)
except (TrainingStopped, ValueError) as error:
    print("error:", " ".join(str(error).split()), file=sys.stderr, flush=True)
    sys.exit(2)
""" % (EPOCHS, BATCH, LEARNING_RATE)


@pytest.fixture(scope="module")
def env(data_dir, tmp_path_factory):
    return {**os.environ, "RIR_KERAS_DATA": str(data_dir), "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1",
            "KERAS_HOME": str(tmp_path_factory.mktemp("keras-home"))}


@pytest.fixture(scope="module")
def mini(data_dir):
    archive = data_dir / "cifar10-png-mini.tar.gz"
    return load_split(archive, "train").subset(slice(0, 64)), load_split(archive, "test").subset(slice(0, 32))


@pytest.fixture(scope="module")
def one_device_tensorflow(mini, tmp_path_factory):
    """The weights of the run on one device (TensorFlow, no distribution), trained here."""
    output = tmp_path_factory.mktemp("one-device")
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(0)
    model = RiRNet(blocks_per_stage=(1, 1, 1), widths=(8, 8, 8))
    config = training.TrainConfig(epochs=EPOCHS, batch_size=BATCH, learning_rate=LEARNING_RATE, jit_compile=False)
    training.train(model, *mini, config, output, verbose=0)
    assert "distribution" not in json.loads((output / "results.json").read_text())  # the default path records none
    return weights(output)


def start(mode, output, env, pause=0.0):
    """A training process; its output goes to ``output``.log."""
    log = open(f"{output}.log", "w")
    process = subprocess.Popen([sys.executable, "-c", RUN, mode, str(output), str(pause)], env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    log.close()
    return process


def output_of(output):
    return open(f"{output}.log").read()


def weights(output):
    return keras.saving.load_model(output / "model.keras", compile=False).get_weights()


def assert_same_weights(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, **TOLERANCE)


def wait_for_backup(output, epochs, processes, seconds=240):
    deadline = time.monotonic() + seconds
    while runs.backed_up_epochs(output) < epochs and time.monotonic() < deadline:
        assert all(p.poll() is None for p in processes), "a run ended before the kill"
        time.sleep(0.05)
    assert runs.backed_up_epochs(output) >= epochs


def kill_after_first_epoch_and_resume(mode, output, env):
    """Kill a run after its first epoch's backup, run it again; the continuation's results."""
    process = start(mode, output, env, pause=1.0)
    wait_for_backup(output, 1, [process])
    process.send_signal(signal.SIGKILL)  # while it pauses after epoch 1
    process.wait()
    assert runs.backed_up_epochs(output) == 1 and not (output / "results.json").exists()
    done = subprocess.run([sys.executable, "-c", RUN, mode, str(output), "0"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((output / "results.json").read_text())
    assert results["resumed"] and results["epochs_this_run"] == EPOCHS - 1
    assert results["history"]["epoch"] == [float(e) for e in range(EPOCHS)]
    return results


def test_jax_two_devices_train_as_one_and_resume_after_a_kill(env, tmp_path):
    # As on the lent GPU machines, without TensorFlow (so without TensorBoard logs); the processes
    # share their compiled XLA programs.
    jax_env = {**env, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "tools" / "gpu" / "no_tensorflow"),
                                                           env.get("PYTHONPATH")])),
               "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax-cache"),
               "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
    one = tmp_path / "one"
    reference = start("none", one, jax_env)  # meanwhile: the one-device run
    two_env = {**jax_env, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    results = kill_after_first_epoch_and_resume("data-parallel", tmp_path / "two", two_env)
    assert reference.wait(timeout=300) == 0, output_of(one)[-3000:]

    assert results["backend"] == "jax"
    assert results["distribution"] == {"engine": "DataParallel", "backend": "jax", "replicas": 2, "workers": 1,
                                       "worker": 0, "devices": ["cpu:0 (cpu)", "cpu:1 (cpu)"], "batch_per_device": 16}
    sessions = runs.sessions(tmp_path / "two")
    assert [(s["first_epoch"], s["distribution"]["replicas"]) for s in sessions] == [(0, 2), (1, 2)]
    assert len(runs.read_log(tmp_path / "two" / "log.csv")["epoch"]) == EPOCHS
    assert_same_weights(weights(tmp_path / "two"), weights(one))


def test_tensorflow_mirrored_on_two_cpus_trains_as_one_and_resumes_after_a_kill(env, tmp_path,
                                                                              one_device_tensorflow):
    two_env = {**env, "KERAS_BACKEND": "tensorflow", "LOGICAL_CPUS": "2"}
    results = kill_after_first_epoch_and_resume("data-parallel", tmp_path / "two", two_env)
    described = results["distribution"]
    assert described["engine"] == "MirroredStrategy" and described["replicas"] == 2
    assert [d.rsplit("/", 1)[-1] for d in described["devices"]] == ["device:CPU:0", "device:CPU:1"]
    assert (tmp_path / "two" / "tensorboard").is_dir()
    # Saved as built: synchronized batch norm was for training only (a saved one would not load under JAX).
    config = (tmp_path / "two" / "model.keras").read_bytes()
    assert b'"synchronized": true' not in config
    assert_same_weights(weights(tmp_path / "two"), one_device_tensorflow)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def cluster_env(env, ports, index, timeout=60):
    config = {"cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
              "task": {"type": "worker", "index": index}}
    return {**env, "KERAS_BACKEND": "tensorflow", "TF_CONFIG": json.dumps(config), "TIMEOUT": str(timeout)}


def test_two_workers_stop_together_when_one_is_killed_and_continue_to_the_one_worker_weights(
        env, tmp_path, one_device_tensorflow):
    ports = free_ports(2)
    folders = [tmp_path / "worker0", tmp_path / "worker1"]
    workers = [start("multi-worker", folders[i], cluster_env(env, ports, i), pause=1.0) for i in range(2)]
    wait_for_backup(folders[0], 2, workers)
    # Worker 0 (the chief, which also runs TensorFlow's coordination service) dies while the pair
    # pauses after epoch 2: worker 1's next collective fails at once. (Losing another worker is
    # noticed by its missing heartbeats, in 10 to 20 s here: docs/distributed.md.)
    workers[0].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    assert workers[1].wait(timeout=120) == 2
    seconds = time.monotonic() - killed
    error = [line for line in output_of(folders[1]).splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "worker 0 of the cluster is lost" in error[0], error
    assert "run every worker's command again" in error[0]
    workers[0].wait()
    assert seconds < 60
    assert [runs.backed_up_epochs(folder) for folder in folders] == [2, 2]

    # As if worker 1 had died before its second backup: it holds epoch 1 only (its kept, older file).
    pointer = folders[1] / "backup" / runs.BACKUP_POINTER
    pointer.write_text(json.dumps({"epoch": 1, "weights": "weights-1.weights.h5"}))
    (folders[1] / "backup" / "weights-2.weights.h5").unlink()
    ports = free_ports(2)
    workers = [start("multi-worker", folders[i], cluster_env(env, ports, i)) for i in range(2)]
    for worker, folder in zip(workers, folders):
        assert worker.wait(timeout=300) == 0, output_of(folder)[-3000:]
    for folder in folders:
        results = json.loads((folder / "results.json").read_text())
        assert results["distribution"]["engine"] == "MultiWorkerMirroredStrategy"
        assert (results["distribution"]["replicas"], results["distribution"]["workers"]) == (2, 2)
        # Both went on from epoch 1, the last one both held; worker 0 dropped its log row of epoch 2.
        assert [s["first_epoch"] for s in runs.sessions(folder)] == [0, 1]
        assert results["history"]["epoch"] == [0.0, 1.0, 2.0]
        assert_same_weights(weights(folder), one_device_tensorflow)


def test_a_cluster_that_never_comes_together_times_out_with_one_line(env, tmp_path):
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "rir_keras.commands.main", "train", "--model", "rir32", "--distribute",
                           "multi-worker", "--distribute-timeout", "3", "--output", str(tmp_path)],
                          env=cluster_env(env, free_ports(2), 0), capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL and time.monotonic() - started < 60  # by the watchdog
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert errors[0].startswith("rir-keras train: error: multi-worker training: the workers of TF_CONFIG")
    assert "did not all start within 3 s" in errors[0]


# -- bad set-ups: one line each ------------------------------------------------------------------

@pytest.mark.parametrize("tf_config, expected", [
    (None, "reads TF_CONFIG (JSON: cluster and task), which is not set"),
    ("{'cluster': ", "TF_CONFIG does not parse as JSON"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}}', 'must be a JSON object with "cluster"'),
    ('{"cluster": {"ps": ["127.0.0.1:1"]}, "task": {"type": "ps", "index": 0}}', 'needs a "worker" job'),
    ('{"cluster": {"worker": ["127.0.0.1"]}, "task": {"type": "worker", "index": 0}}', 'not "host:port"'),
    ('{"cluster": {"worker": ["no-such-host.invalid:2222"]}, "task": {"type": "worker", "index": 0}}',
     "names a host that does not resolve"),
    ('{"cluster": {"worker": ["127.0.0.1:2222"]}, "task": {"type": "worker", "index": 1}}', "not in its cluster"),
])
def test_a_bad_tf_config_is_one_line(tf_config, expected, monkeypatch, capsys):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("KERAS_DISTRIBUTION_JOB_ADDRESSES", raising=False)
    if tf_config is not None:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    assert main(["train", "--model", "rir32", "--distribute", "multi-worker", "--output", "unused"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("rir-keras train: error:") and expected in error[0], error


def test_an_engine_the_backend_does_not_have_is_one_line(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    with pytest.raises(ValueError, match="needs the JAX or the TensorFlow backend.*'torch'"):
        distribute.setup("data-parallel")
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(ValueError, match="reads KERAS_DISTRIBUTION_JOB_ADDRESSES.*TF_CONFIG is set, which is for "
                                         "the TensorFlow backend"):
        distribute.setup("multi-worker", environ={"TF_CONFIG": "{}"})
    with pytest.raises(ValueError, match="KERAS_DISTRIBUTION_PROCESS_ID must be below"):
        distribute.setup("multi-worker", environ={"KERAS_DISTRIBUTION_JOB_ADDRESSES": "10.0.0.1:1234,10.0.0.2:1234",
                                                  "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
                                                  "KERAS_DISTRIBUTION_PROCESS_ID": "2"})
    with pytest.raises(ValueError, match="KERAS_DISTRIBUTION_JOB_ADDRESSES is set, which describes several"):
        distribute.setup("data-parallel", environ={"KERAS_DISTRIBUTION_JOB_ADDRESSES": "10.0.0.1:1234"})
    with pytest.raises(ValueError, match="mode must be one of"):
        distribute.setup("mirrored")
    assert distribute.setup("none") is distribute.NONE


def test_every_batch_must_split_evenly_over_the_devices():
    two = distribute.Distribution("MirroredStrategy", "tensorflow", replicas=2)
    two.check_batches(128, 50_000, 10_000)  # CIFAR-10: the last batches hold 80 and 16 images
    with pytest.raises(ValueError, match="global batch of 15 images does not split evenly over 2 devices"):
        two.check_batches(15, 60, 30)
    with pytest.raises(ValueError, match="last batch of the 70 training images holds 6, .* steps_per_epoch=2"):
        distribute.Distribution("DataParallel", "jax", replicas=4).check_batches(32, 70, 64)
    two.check_batches(16, 63, 32, steps_per_epoch=3)  # the short batch is never reached
    with pytest.raises(ValueError, match="last batch of the 33 test images holds 1"):
        two.check_batches(16, 64, 33)
    distribute.NONE.check_batches(15, 61, 33)  # one device takes any batch


def test_a_worker_keeps_two_backups_and_can_restore_the_older(mini, tmp_path):
    train, test = mini
    config = training.TrainConfig(epochs=2, batch_size=32, jit_compile=False)
    model = RiRNet(blocks_per_stage=(1, 1, 1), widths=(8, 8, 8))
    training.compile_model(model, config, 2)
    model.optimizer.build(model.trainable_variables)
    backup = EpochBackup(tmp_path, keep=2)
    backup.set_model(model)
    for epoch in range(3):
        model.layers[-2].kernel.assign(np.full(model.layers[-2].kernel.shape, float(epoch), "float32"))
        backup.on_epoch_end(epoch, {"loss": 1.0})
    assert sorted(p.name for p in tmp_path.glob("weights-*")) == ["weights-2.weights.h5", "weights-3.weights.h5"]
    assert restore_backup(model, tmp_path, epochs=2) == 2
    assert float(keras.ops.convert_to_numpy(model.layers[-2].kernel)[0, 0]) == 1.0
    assert restore_backup(model, tmp_path) == 3
    with pytest.raises(ValueError, match="holds no backup of epoch 1"):
        restore_backup(model, tmp_path, epochs=1)


# -- KerasTuner: each trial data-parallel ------------------------------------------------------------

def tune_args(data_dir, directory, *extra):
    return ["tune", "--model", "rir_3x10", "--grid", "tiny", "--model-option", "layers_per_block=2",
            "--model-option", "widths=[8,8,8]", "--dataset", str(data_dir / "cifar10-png-mini.tar.gz"),
            "--train-limit", "32", "--test-limit", "32", "--batch-size", "16", "--steps-per-epoch", "1",
            "--epochs", "1", "--no-jit", "--verbose", "0", "--directory", str(directory), "--max-trials", "1",
            *extra]


@pytest.mark.filterwarnings("ignore:(currentThread|getName):DeprecationWarning")  # KerasTuner's
def test_tune_trials_run_in_the_tensorflow_strategy(data_dir, tmp_path, capsys):
    assert main(tune_args(data_dir, tmp_path, "--distribute", "data-parallel")) == 0
    out = capsys.readouterr().out
    assert "each trial MirroredStrategy over 1 devices" in out  # this process has one CPU device
    assert "1 trials in" in out
    assert main(tune_args(data_dir, tmp_path, "--distribute", "multi-worker")) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "KerasTuner's distributed mode" in error[0], error


def test_a_jax_tuner_trial_is_built_over_every_device(env, tmp_path):
    """Each trial starts with keras.backend.clear_session(), which forgets the global distribution:
    the hypermodel sets it again, so the trial's variables live on both devices."""
    script = """
import os, keras, keras_tuner
from rir_keras import distribute, training
from rir_keras.data import load_split
from rir_keras.tuning.hypermodel import RiRHyperModel
train = load_split(os.path.join(os.environ["RIR_KERAS_DATA"], "cifar10-png-mini.tar.gz"), "train").subset(slice(0, 32))
distribution = distribute.setup("data-parallel")
hypermodel = RiRHyperModel("rir_3x10", {"learning_rate": [0.1]}, train, training.TrainConfig(epochs=1, batch_size=16),
                           {"layers_per_block": 2, "widths": [8, 8, 8]}, distribution=distribution)
hypermodel.build(keras_tuner.HyperParameters())  # a first trial
model = hypermodel.build(keras_tuner.HyperParameters())  # the next one, after clear_session()
print(sorted({len(v.value.sharding.device_set) for v in model.variables}))
"""
    jax_env = {**env, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
               "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    done = subprocess.run([sys.executable, "-c", script], env=jax_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[2]"


def test_each_jax_process_feeds_its_share_of_every_global_batch(mini):
    """Several JAX processes (keras.distribution.initialize): each feeds the rows of every global
    batch for its devices, and Keras puts the shares together in process order."""
    train, _ = mini
    batches = training.batches(train, training.TrainConfig(batch_size=32), training=True)
    shares = [distribute.ProcessShard(batches, index, 2) for index in range(2)]
    shares[0].on_epoch_end()  # as fit does once at its start: the shared dataset's order of epoch 1
    assert [len(share) for share in shares] == [2, 2] and shares[1].epoch == batches.epoch == 1
    for i in range(len(batches)):
        images, labels = batches[i]
        parts = [share[i] for share in shares]
        np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), images)
        np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), labels)
