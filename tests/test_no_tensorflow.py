"""Without TensorFlow, as on the lent GPU machines (JAX and CUDA, no TensorFlow): in a process that
cannot import it (tools/gpu/no_tensorflow on PYTHONPATH), `rir-keras train` under JAX trains, is
killed after its first epoch and resumes to the end; the commands that need TensorFlow say so in one
line; and with no backend chosen, rir_keras takes JAX."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO

HIDE_TENSORFLOW = REPO / "tools" / "gpu" / "no_tensorflow"
TRAIN = ["train", "--model", "rir32", "--dataset", "cifar10-png-mini", "--recipe", "fast", "--epochs", "2",
         "--width-multiplier", "0.125", "--train-limit", "128", "--test-limit", "64", "--batch-size", "32",
         "--verbose", "2"]


@pytest.fixture(scope="module")
def env(data_dir, tmp_path_factory):
    pythonpath = os.pathsep.join(filter(None, [str(HIDE_TENSORFLOW), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": pythonpath, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
            "RIR_KERAS_DATA": str(data_dir), "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
            "KERAS_HOME": str(tmp_path_factory.mktemp("keras-home")),  # no keras.json naming a backend
            # The resumed process reuses the first one's compiled XLA programs, as tools/gpu/run.sh does.
            "JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.mktemp("jax-cache")),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def cli(*args):
    return [sys.executable, "-m", "rir_keras.commands.main", *args]


def backed_up_epochs(run):
    try:
        return json.loads((run / "backup" / "training_metadata.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError):
        return 0


def test_training_is_killed_after_its_first_epoch_and_resumes_without_tensorflow(env, tmp_path):
    hidden = subprocess.run([sys.executable, "-c", "import importlib.util, sys\n"
                             "assert importlib.util.find_spec('tensorflow') is None\n"
                             "try:\n    import tensorflow\nexcept ModuleNotFoundError:\n    sys.exit(0)\nsys.exit(1)"],
                            env=env, timeout=60)
    assert hidden.returncode == 0, "tensorflow can still be imported: the test would prove nothing"

    run = tmp_path / "run"
    log = open(tmp_path / "first.log", "w")
    process = subprocess.Popen(cli(*TRAIN, "--output", str(run)), env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    while backed_up_epochs(run) < 1 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # right after the first epoch's backup
    process.wait()
    log.close()
    assert backed_up_epochs(run) == 1, (tmp_path / "first.log").read_text()[-3000:]
    assert not (run / "results.json").exists(), "the kill should land before the second epoch ends"

    resumed = subprocess.run(cli(*TRAIN, "--output", str(run)), env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    results = json.loads((run / "results.json").read_text())
    assert results["backend"] == "jax" and results["resumed"] and results["epochs_this_run"] == 1
    assert results["history"]["epoch"] == [0.0, 1.0]
    sessions = [json.loads(line) for line in (run / "sessions.jsonl").read_text().splitlines()]
    assert [(s["first_epoch"], s["backend"]) for s in sessions] == [(0, "jax"), (1, "jax")]
    assert (run / "model.keras").is_file() and not (run / "backup").exists()
    assert not (run / "tensorboard").exists()  # TensorBoard logs need TensorFlow: skipped

    # What needs TensorFlow says so in one line; no backend named: JAX, the one installed.
    check = f"""
import json, sys
import rir_keras, keras
from rir_keras.commands.main import main
assert keras.backend.backend() == "jax", keras.backend.backend()
codes = [main(["export", {str(run / "model.keras")!r}, "--output", {str(tmp_path / "saved")!r}]),
         main(["evaluate", {str(run / "model.keras")!r}, "--dataset", "tfds:cifar10"]),
         main(["export", {str(run / "model.keras")!r}, "--format", "keras", "--output", {str(tmp_path / "m.keras")!r}])]
print(json.dumps(codes))
"""
    no_backend = {key: value for key, value in env.items() if key != "KERAS_BACKEND"}
    done = subprocess.run([sys.executable, "-c", check], env=no_backend, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [2, 2, 0]
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert "Traceback" not in done.stderr and len(errors) == 2, done.stderr[-3000:]
    assert errors[0].startswith("rir-keras export: error: a SavedModel export needs TensorFlow")
    assert "--format keras" in errors[0]
    assert errors[1].startswith("rir-keras evaluate: error:") and "tensorflow-datasets" in errors[1]
    assert (tmp_path / "m.keras").is_file() and not (tmp_path / "saved").exists()
