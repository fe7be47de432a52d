"""Tests of rir_keras.tuning: the grid as data, the hypermodel, `rir-keras tune` end to end, resume
after a kill, the settings check of a resumed search, and KerasTuner's distributed mode (one chief,
two workers on 127.0.0.1): sharing the grid, a worker killed mid-trial, a chief killed and restarted,
a worker whose chief is gone.

The searches run a tiny RiR (three blocks of two generalized residual layers, 8 channels) on 32
images of CIFAR-10 (JPEG copy), one step per epoch.
"""
import csv
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time

import keras
import keras_tuner
import numpy as np
import pytest

from rir_keras import data as datasets
from rir_keras import training
from rir_keras.applications import registry
from rir_keras.commands.main import main
from rir_keras.layers import BlockShortcut, RiRConv2D
from rir_keras.preprocessing import model_preprocessing
from rir_keras.tuning import RiRHyperModel, grid_size, load_best, load_grid, preset_names, validate_grid
from rir_keras.tuning.search import GridSearch, _point_key, build_recorded, trial_runs

TINY = {"layers_per_block": 2, "widths": [8, 8, 8]}
TINY_GRID = {"optimizer": ["sgd", "adam"], "identity": ["init", "constant"]}  # the "tiny" preset
SUBPROCESS_SECONDS = 240
# KerasTuner 1.4's oracle lock calls threading.currentThread().getName().
pytestmark = pytest.mark.filterwarnings("ignore:(currentThread|getName):DeprecationWarning")


def tune_args(data_dir, directory, grid="tiny", epochs=1, extra=()):
    return ["tune", "--model", "rir_3x10", "--grid", str(grid), "--model-option", "layers_per_block=2",
            "--model-option", "widths=[8,8,8]", "--dataset", str(data_dir / "cifar10-png-mini.tar.gz"),
            "--train-limit", "32", "--test-limit", "32", "--batch-size", "16", "--steps-per-epoch", "1",
            "--epochs", str(epochs), "--no-jit", "--verbose", "0", "--directory", str(directory),
            "--project-name", "search", *extra]


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def subprocess_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERASTUNER_")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1", **extra)
    return env


def start_tune(args, log_path, **env):
    command = [sys.executable, "-c", "import sys; from rir_keras.commands.main import main; sys.exit(main())", *args]
    log = open(log_path, "w", encoding="utf-8")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=subprocess_env(**env)), log


def stop(processes):
    for process, log in processes:
        if process.poll() is None:
            process.kill()
        process.wait()
        log.close()


def trial_states(project):
    """``{trial_id: status}`` from KerasTuner's trial files."""
    states = {}
    for name in os.listdir(project) if os.path.isdir(project) else ():
        path = os.path.join(project, name, "trial.json")
        if name.startswith("trial_") and os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                states[name[len("trial_"):]] = json.load(handle)["status"]
    return states


def assert_covers_grid_once(rows, grid):
    points = [tuple(row[name] for name in grid) for row in rows]
    assert sorted(points) == sorted(itertools.product(*grid.values()))  # every point, none twice
    assert len({row["trial"] for row in rows}) == len(rows)
    assert all(row["status"] == "COMPLETED" for row in rows)


# --- the grid as data -------------------------------------------------------------------------

def test_paper_preset_is_the_papers_grid():
    grid = load_grid("paper")
    assert set(preset_names()) >= {"paper", "placement", "tiny"}
    assert set(grid) >= {"learning_rate", "optimizer", "weight_decay", "kernel_initializer", "shortcut"}
    assert set(grid["optimizer"]) == {"sgd", "adam", "rmsprop"}
    assert grid["shortcut"] == ["identity", "projection"]
    # The paper's recipe is the first point: SGD, lr 0.1, weight decay 1e-4, He init, identity shortcuts.
    assert [values[0] for values in grid.values()] == [0.1, "sgd", 1e-4, "he_normal", "identity", "init"]
    assert grid_size(grid) == 3 * 3 * 3 * 2 * 2 * 1 == 108
    assert grid_size(load_grid("placement")) == 9
    assert load_grid("tiny") == TINY_GRID


def test_grid_file_yaml_and_json(tmp_path):
    yaml_file = tmp_path / "grid.yaml"
    yaml_file.write_text("learning_rate: [1e-3, 0.1]\nweight_decay: [0, 1e-4]\nshortcut: [projection]\n")
    grid = load_grid(yaml_file)
    assert grid == {"learning_rate": [1e-3, 0.1], "weight_decay": [0.0, 1e-4], "shortcut": ["projection"]}
    assert all(isinstance(v, float) for v in grid["learning_rate"] + grid["weight_decay"])  # 1e-3 is no string
    json_file = tmp_path / "grid.json"
    json_file.write_text(json.dumps({"optimizer": ["rmsprop"], "batch_size": [16, 32]}))
    assert load_grid(json_file) == {"optimizer": ["rmsprop"], "batch_size": [16, 32]}


@pytest.mark.parametrize("raw, message", [
    ({"learning_rte": [0.1]}, "learning_rte: unknown hyperparameter; known: learning_rate"),
    ({"learning_rate": ["fast"]}, "Received: learning_rate='fast'"),
    ({"learning_rate": [0]}, "must be a number > 0. Received: learning_rate=0"),
    ({"optimizer": ["nadam"]}, "Received: optimizer='nadam'"),
    ({"batch_size": [True]}, "Received: batch_size=True"),
    ({"momentum": [1.5]}, "Received: momentum=1.5"),
    ({"kernel_initializer": ["he_nromal"]}, "Received: kernel_initializer='he_nromal'"),
    ({"shortcut": ["conv"]}, "Received: shortcut='conv'"),
    ({"identity": ["init", "init"]}, "must not repeat. Received: identity=['init', 'init']"),
    ({"weight_decay": []}, "non-empty list of values. Received: weight_decay=[]"),
    ({"weight_decay": 1e-4}, "non-empty list of values. Received: weight_decay=0.0001"),
    ({}, "non-empty mapping"),
    (["learning_rate"], "non-empty mapping"),
])
def test_grid_validation_names_argument_and_value(raw, message):
    with pytest.raises(ValueError, match="<grid>: ") as error:
        validate_grid(raw)
    assert message in str(error.value)


def test_grid_source_errors(tmp_path):
    with pytest.raises(ValueError, match=r"preset \(paper, placement, tiny\).*Received: grid='papr'"):
        load_grid("papr")
    with pytest.raises(FileNotFoundError, match="Received: grid="):
        load_grid(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("learning_rate: [0.1, 0.01\noptimizer: sgd]\n")
    with pytest.raises(ValueError, match=r"(?s)broken.yaml: not valid YAML .*Received: grid="):
        load_grid(broken)
    broken_json = tmp_path / "broken.json"
    broken_json.write_text('{"optimizer": ["sgd",]}')
    with pytest.raises(ValueError, match=r"broken.json: not valid JSON"):
        load_grid(broken_json)
    bad_value = tmp_path / "bad.yaml"
    bad_value.write_text("optimizer: [sgd, adamw]\n")
    with pytest.raises(ValueError, match=r"bad.yaml: optimizer: .*Received: optimizer='adamw'"):
        load_grid(bad_value)


# --- the hypermodel ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mini(data_dir):
    train = datasets.load_split(data_dir / "cifar10-png-mini.tar.gz", "train").subset(slice(0, 32))
    test = datasets.load_split(data_dir / "cifar10-png-mini.tar.gz", "test").subset(slice(0, 32))
    return train, test


def hyperparameters(grid, **values):
    hp = keras_tuner.HyperParameters()
    for name, choices in grid.items():
        hp.Choice(name, choices)
    hp.values.update(values)
    return hp


def layers_of(model, kind):
    return [layer for layer in model.layers if isinstance(layer, kind)]


def test_hypermodel_builds_what_the_hyperparameters_say(mini):
    train, _ = mini
    grid = {"learning_rate": [0.1, 0.02], "optimizer": ["sgd", "adam", "rmsprop"], "momentum": [0.9, 0.5],
            "weight_decay": [1e-4, 0.0], "kernel_initializer": ["he_normal", "glorot_uniform"],
            "shortcut": ["identity", "projection"], "identity": ["init", "constant", "shortcut"]}
    config = training.TrainConfig(epochs=3, batch_size=16, jit_compile=False)
    hypermodel = RiRHyperModel("rir_3x10", grid, train, config, TINY)
    expected_optimizers = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop}
    for values in [
        dict(learning_rate=0.1, optimizer="sgd", momentum=0.9, weight_decay=1e-4, kernel_initializer="he_normal",
             shortcut="identity", identity="init"),
        dict(learning_rate=0.02, optimizer="adam", momentum=0.9, weight_decay=0.0, kernel_initializer="glorot_uniform",
             shortcut="projection", identity="constant"),
        dict(learning_rate=0.02, optimizer="rmsprop", momentum=0.5, weight_decay=1e-4, kernel_initializer="he_normal",
             shortcut="projection", identity="shortcut"),
    ]:
        model = hypermodel.build(hyperparameters(grid, **values))
        optimizer = model.optimizer
        assert type(optimizer) is expected_optimizers[values["optimizer"]]
        assert float(optimizer.learning_rate) == pytest.approx(values["learning_rate"])  # step 0 of the schedule
        if values["optimizer"] != "adam":
            assert optimizer.momentum == values["momentum"]
        convs = layers_of(model, RiRConv2D)
        assert len(convs) == 6  # 3 blocks x 2 generalized residual layers
        for layer in convs:
            assert layer.identity == values["identity"]
            if values["weight_decay"]:
                # weight_decay is the SGD-sense decay: Keras' L2 coefficient is half of it.
                assert float(layer.kernel_regularizer.l2) == pytest.approx(values["weight_decay"] / 2)
            else:
                assert layer.kernel_regularizer is None
            base = keras.initializers.get(values["kernel_initializer"])
            assert type(layer.kernel_initializer) is type(base)
        assert type(model.get_layer("stem_conv").kernel_initializer) is type(keras.initializers.get(values["kernel_initializer"]))
        shortcuts = layers_of(model, BlockShortcut)
        downsampling = [s for s in shortcuts if s.strides != (1, 1)]
        assert len(downsampling) == 2
        for shortcut in downsampling:
            assert shortcut.mode == values["shortcut"]
            assert (shortcut.projection is not None) == (values["shortcut"] == "projection")
        # L2 reaches the loss: the model's regularization losses are there exactly when the grid says so.
        assert bool(model.losses) == bool(values["weight_decay"])


def test_hypermodel_takes_fixed_options_and_checks_them(mini):
    train, _ = mini
    config = training.TrainConfig(epochs=1, batch_size=16, jit_compile=False)
    with pytest.raises(ValueError, match="Received: model='rir99'"):
        RiRHyperModel("rir99", TINY_GRID, train, config)
    with pytest.raises(ValueError, match=r"Received: model_options keys \['identity'\]"):
        RiRHyperModel("rir_3x10", TINY_GRID, train, config, {**TINY, "identity": "init"})
    hypermodel = RiRHyperModel("rir32", {"optimizer": ["sgd"]}, train, config, {"width_multiplier": 0.125})
    model = hypermodel.build(hyperparameters({"optimizer": ["sgd"]}))
    assert [layer.filters for layer in layers_of(model, RiRConv2D)][::10] == [2, 4, 8]  # 16/32/64 x 0.125
    assert model_preprocessing(model) == "cifar10"  # the constructor's default
    # preprocessing passes through to the constructor, and a logits head gets a from_logits loss.
    hypermodel = RiRHyperModel("rir32", {"optimizer": ["sgd"]}, train, config,
                               {"width_multiplier": 0.125, "preprocessing": "cifar100", "classifier_activation": None})
    model = hypermodel.build(hyperparameters({"optimizer": ["sgd"]}))
    assert model_preprocessing(model) == "cifar100" and model.loss.from_logits


# --- the command line, end to end ----------------------------------------------------------------

def test_tune_cli_end_to_end(tmp_path, data_dir, capsys):
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text("learning_rate: [0.05, 1e-3]\noptimizer: [sgd, rmsprop]\n")
    directory = tmp_path / "tune"
    assert main(tune_args(data_dir, directory, grid_file, epochs=2, extra=["--max-trials", "3"])) == 0
    output = capsys.readouterr().out
    assert "tensorflow on " in output
    project = directory / "search"
    rows = read_csv(project / "results.csv")
    # --max-trials 3 of the 4 points: the first three in grid order, each once.
    assert sorted((float(r["learning_rate"]), r["optimizer"]) for r in rows) == [
        (1e-3, "sgd"), (0.05, "rmsprop"), (0.05, "sgd")]
    assert all(r["status"] == "COMPLETED" and r["epochs"] == "2" and r["best_epoch"] in ("1", "2") for r in rows)
    assert all(r["tuner"] == "tuner0" for r in rows)
    accuracies = [float(r["val_accuracy"]) for r in rows]
    assert accuracies == sorted(accuracies, reverse=True)
    markdown = (project / "results.md").read_text()
    for row in rows:
        assert f"| {row['trial']} | COMPLETED | " in markdown
    assert "3 of 3 trials finished" in markdown
    # TensorBoard logs with KerasTuner's HParams for every trial.
    for row in rows:
        assert os.listdir(project / "tensorboard" / row["trial"])

    # The best weights, in a model built from the best config, are the best trial's best epoch:
    # they give the same predictions as KerasTuner's checkpoint in the hypermodel's own model, and
    # the validation accuracy that was recorded for that epoch.
    record = json.loads((project / "best.json").read_text())
    assert record["trial"] == rows[0]["trial"]
    spec = registry.ModelSpec.from_dict(record["spec"])
    assert spec.preprocessing == "cifar10"  # --preprocessing auto, from the dataset's name
    assert spec.registry_name == "rir_3x10" and spec.classes == 10 and spec.input_shape == (32, 32, 3)
    assert record["val_accuracy"] == pytest.approx(float(rows[0]["val_accuracy"]))
    assert record["hyperparameters"]["optimizer"] == rows[0]["optimizer"]
    best = load_best(str(project))
    test = datasets.load_split(data_dir / "cifar10-png-mini.tar.gz", "test").sample(32, 0)
    config = training.TrainConfig(**record["train_config"])
    images = training.batches(test, config, training=False)[0][0]
    train = datasets.load_split(data_dir / "cifar10-png-mini.tar.gz", "train").sample(32, 0)
    grid = load_grid(grid_file)
    hypermodel = RiRHyperModel("rir_3x10", grid, train, config, {**{k: v for k, v in spec.options.items() if k not in grid}, "preprocessing": spec.preprocessing})
    reference = hypermodel.build(hyperparameters(grid, **record["hyperparameters"]))
    reference.load_weights(project / f"trial_{record['trial']}" / "checkpoint.weights.h5")
    np.testing.assert_allclose(best.predict(images, verbose=0), reference.predict(images, verbose=0), rtol=1e-5, atol=1e-6)
    fresh = build_recorded(record)
    assert not np.allclose(fresh.predict(images, verbose=0), best.predict(images, verbose=0))  # the weights matter
    best.compile(loss="sparse_categorical_crossentropy", metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    assert training.evaluate(best, test, config.batch_size)["accuracy"] == pytest.approx(record["val_accuracy"])


def test_tune_cli_rejects_bad_arguments(tmp_path, data_dir, capsys):
    assert main(tune_args(data_dir, tmp_path, grid="nope")) == 2
    assert "Received: --grid='nope'" in capsys.readouterr().err
    assert main(tune_args(data_dir, tmp_path, extra=["--max-trials", "0"])) == 2
    assert "Received: --max-trials=0" in capsys.readouterr().err
    assert main(tune_args(data_dir, tmp_path, extra=["--model-option", "identity=init"])) == 2
    assert "is an axis of the grid" in capsys.readouterr().err
    assert main(tune_args(data_dir, tmp_path, extra=["--heartbeat-timeout", "0"])) == 2
    assert "--heartbeat-timeout must be a number of seconds > 0. Received: --heartbeat-timeout=0.0" in \
        capsys.readouterr().err


def folder_contents(folder):
    """``{relative path: bytes}`` of every file under ``folder``."""
    return {os.path.relpath(os.path.join(root, name), folder): open(os.path.join(root, name), "rb").read()
            for root, _, names in os.walk(folder) for name in names}


def test_tune_refuses_to_resume_with_other_settings_and_restarts_on_demand(tmp_path, data_dir, capsys):
    directory = tmp_path / "tune"
    project = directory / "search"
    assert main(tune_args(data_dir, directory, extra=["--max-trials", "1"])) == 0
    before = folder_contents(project)
    for flags, setting in [(["--epochs", "2"], "train_config.epochs=1 (now 2)"),
                           (["--learning-rate", "0.05"], "train_config.learning_rate=0.1 (now 0.05)")]:
        capsys.readouterr()
        assert main(tune_args(data_dir, directory, extra=["--max-trials", "1", *flags])) == 2
        errors = capsys.readouterr().err.strip().splitlines()
        assert len(errors) == 1 and errors[0].startswith("rir-keras tune: error: ") and setting in errors[0]
        assert "--restart" in errors[0]
        assert folder_contents(project) == before  # nothing run, nothing written
    # What does not change results stays free: verbosity, how many trials.
    assert main(tune_args(data_dir, directory, extra=["--max-trials", "2", "--verbose", "1"])) == 0
    assert len(read_csv(project / "results.csv")) == 2
    # --restart starts over with the new settings: the earlier trials are gone.
    assert main(tune_args(data_dir, directory, epochs=2, extra=["--max-trials", "1", "--restart"])) == 0
    rows = read_csv(project / "results.csv")
    assert len(rows) == 1 and rows[0]["epochs"] == "2" and set(trial_states(project)) == {rows[0]["trial"]}
    assert json.loads((project / "run.json").read_text())["train_config"]["epochs"] == 2
    assert main(tune_args(data_dir, directory, epochs=2, extra=["--max-trials", "1"])) == 0  # and resumes with them


# --- interruption and several machines ------------------------------------------------------------

def test_resume_after_kill_runs_no_finished_trial_again(tmp_path, data_dir, capsys):
    directory = tmp_path / "tune"
    project = str(directory / "search")
    args = tune_args(data_dir, directory)
    process = start_tune(args, tmp_path / "killed.log")
    try:
        deadline = time.monotonic() + SUBPROCESS_SECONDS
        # A trial ends in two writes: KerasTuner's trial.json says COMPLETED, then runs.jsonl its "end" line.
        # Kill after both (a kill between them would leave a finished trial without its "end" line).
        while not any(event["event"] == "end" for trial in trial_states(project)
                      for event in trial_runs(project, trial)):
            assert process[0].poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no trial finished in time"
            time.sleep(0.1)
        process[0].send_signal(signal.SIGKILL)
    finally:
        stop([process])
    finished = [t for t, status in trial_states(project).items() if status == "COMPLETED"]
    assert 1 <= len(finished) < 4 and not os.path.exists(os.path.join(project, "results.csv"))
    before = {t: trial_runs(project, t) for t in finished}

    assert main(args) == 0
    output = capsys.readouterr().out
    assert "Reloading Tuner" in output
    for trial_id in finished:
        assert trial_runs(project, trial_id) == before[trial_id]  # not run again
        assert f"trial {trial_id} begins" not in output
    rows = read_csv(os.path.join(project, "results.csv"))
    assert_covers_grid_once(rows, TINY_GRID)
    for row in rows:  # each trial ended once; one cut short by the kill began twice
        runs = trial_runs(project, row["trial"])
        assert [r["event"] for r in runs].count("end") == 1
        assert [r["event"] for r in runs][-1] == "end"


def test_a_kill_before_the_tuners_file_is_written_runs_no_finished_trial_again(tmp_path, data_dir, capsys,
                                                                                  monkeypatch):
    """KerasTuner writes a finished trial's file and oracle.json, then the tuner's own file: the run is
    stopped right between them (where a kill can land), and the next run reloads and skips that trial."""
    from rir_keras.tuning import keras_tuner_internals as internals

    directory = tmp_path / "tune"
    project = str(directory / "search")
    save_tuner = internals.save_tuner

    def stopped_after_a_trial(tuner):
        if "COMPLETED" in trial_states(project).values():
            raise KeyboardInterrupt  # the process ends here, as under a kill
        save_tuner(tuner)

    monkeypatch.setattr(internals, "save_tuner", stopped_after_a_trial)
    args = tune_args(data_dir, directory)
    assert main(args) == 2
    monkeypatch.setattr(internals, "save_tuner", save_tuner)
    finished = [t for t, status in trial_states(project).items() if status == "COMPLETED"]
    assert len(finished) == 1
    before = trial_runs(project, finished[0])
    capsys.readouterr()

    assert main(args) == 0
    output = capsys.readouterr().out
    assert "Reloading Tuner" in output and f"trial {finished[0]} begins" not in output
    assert trial_runs(project, finished[0]) == before
    assert_covers_grid_once(read_csv(os.path.join(project, "results.csv")), TINY_GRID)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_distributed(args, tmp_path, port, tuner_ids=("chief", "worker1", "worker2"), log_suffix=""):
    """``{tuner_id: (process, log)}``: `rir-keras tune` with ``args`` as each of ``tuner_ids``, on 127.0.0.1."""
    env = dict(KERASTUNER_ORACLE_IP="127.0.0.1", KERASTUNER_ORACLE_PORT=str(port))
    return {tuner_id: start_tune(args, tmp_path / f"{tuner_id}{log_suffix}.log", KERASTUNER_TUNER_ID=tuner_id, **env)
            for tuner_id in tuner_ids}


def wait_for_success(processes, tmp_path, log_suffix=""):
    deadline = time.monotonic() + SUBPROCESS_SECONDS
    for tuner_id, (process, _) in processes.items():
        process.wait(timeout=max(1, deadline - time.monotonic()))
        assert process.returncode == 0, (tmp_path / f"{tuner_id}{log_suffix}.log").read_text()[-3000:]


def wait_until(condition, processes, what):
    """Poll ``condition()`` until it returns something true (returned); fail if a process ends first."""
    deadline = time.monotonic() + SUBPROCESS_SECONDS
    while not (found := condition()):
        for tuner_id, (process, log) in processes.items():
            assert process.poll() is None, f"{tuner_id} ended before {what}: " + open(log.name).read()[-3000:]
        assert time.monotonic() < deadline, f"no {what} in time"
        time.sleep(0.05)
    return found


def running_trials(project):
    """``{trial_id: tuner}`` of the trials begun and not ended, from their run records."""
    running = {}
    for trial_id in trial_states(project):
        runs = trial_runs(project, trial_id)
        if runs and runs[-1]["event"] == "begin":
            running[trial_id] = runs[-1]["tuner"]
    return running


def test_distributed_trial_of_a_killed_worker_goes_to_another(tmp_path, data_dir):
    directory = tmp_path / "tune"
    project = str(directory / "search")
    args = tune_args(data_dir, directory, extra=["--heartbeat-timeout", "10"])
    processes = start_distributed(args, tmp_path, free_port())
    try:
        # SIGKILL the first worker to begin a trial, as soon as it has begun it.
        lost_trial, victim = next(iter(wait_until(lambda: running_trials(project), processes, "trial").items()))
        processes[victim][0].send_signal(signal.SIGKILL)
        processes[victim][0].wait()
        survivor = ({"worker1", "worker2"} - {victim}).pop()
        wait_for_success({t: processes[t] for t in ("chief", survivor)}, tmp_path)
    finally:
        stop(processes.values())
    rows = read_csv(os.path.join(project, "results.csv"))
    assert_covers_grid_once(rows, TINY_GRID)  # the chief ended and wrote every point's result
    assert os.path.isfile(os.path.join(project, "best.json"))
    runs = [(r["event"], r["tuner"]) for r in trial_runs(project, lost_trial)]
    assert runs == [("begin", victim), ("begin", survivor), ("end", survivor)]
    for row in rows:
        if row["trial"] != lost_trial:
            assert [(r["event"], r["tuner"]) for r in trial_runs(project, row["trial"])] == [
                ("begin", survivor), ("end", survivor)]
    assert f"no word from {victim}" in (tmp_path / "chief.log").read_text()
    assert f"its trial {lost_trial} goes to the next worker" in (tmp_path / "chief.log").read_text()


def test_distributed_restarted_chief_runs_no_trial_twice(tmp_path, data_dir):
    directory = tmp_path / "tune"
    project = str(directory / "search")
    args = tune_args(data_dir, directory)
    port = free_port()
    processes = start_distributed(args, tmp_path, port)
    workers = {t: processes[t] for t in ("worker1", "worker2")}
    try:
        # SIGKILL the chief once a trial has finished and another is running, then start it again.
        wait_until(lambda: "COMPLETED" in trial_states(project).values() and running_trials(project), processes,
                   "finished trial beside a running one")
        processes["chief"][0].send_signal(signal.SIGKILL)
        stop([processes.pop("chief")])
        assert "COMPLETED" in trial_states(project).values() and len(trial_states(project)) < len(grid_points())
        restarted = start_distributed(args, tmp_path, port, ("chief",), log_suffix="2")
        wait_for_success(restarted, tmp_path, log_suffix="2")
        wait_for_success(workers, tmp_path)
    finally:
        stop(list(processes.values()) + list(restarted.values()))
    rows = read_csv(os.path.join(project, "results.csv"))
    assert_covers_grid_once(rows, TINY_GRID)
    for row in rows:  # one run each: none began again, none ran on two workers, none on the chief
        runs = trial_runs(project, row["trial"])
        assert [r["event"] for r in runs] == ["begin", "end"] and runs[0]["tuner"] == runs[1]["tuner"] == row["tuner"]
        assert row["tuner"] in workers
    assert os.path.isfile(os.path.join(project, "best.weights.h5"))
    assert "Reloading Tuner" in (tmp_path / "chief2.log").read_text()
    for tuner_id in workers:
        log = (tmp_path / f"{tuner_id}.log").read_text()
        assert f"worker {tuner_id} done" in log and "Traceback" not in log


def grid_points():
    return list(itertools.product(*TINY_GRID.values()))


def test_worker_whose_chief_does_not_answer_ends_with_one_line(tmp_path, data_dir, capsys, monkeypatch):
    port = free_port()  # nothing listens there
    for name, value in dict(KERASTUNER_TUNER_ID="worker1", KERASTUNER_ORACLE_IP="127.0.0.1",
                            KERASTUNER_ORACLE_PORT=str(port)).items():
        monkeypatch.setenv(name, value)
    assert main(tune_args(data_dir, tmp_path, extra=["--chief-timeout", "2"])) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("rir-keras tune")]
    assert errors == [f"rir-keras tune: error: worker worker1: no answer from the chief at 127.0.0.1:{port} to "
                      f"CreateTrial for 2 s (gRPC DEADLINE_EXCEEDED); start the chief again, then this worker"]


def test_oracle_requeues_the_trial_of_a_silent_worker_and_counts_one_result(tmp_path, mini):
    train, _ = mini
    config = training.TrainConfig(epochs=1, batch_size=16, jit_compile=False)
    tuner = GridSearch(RiRHyperModel("rir_3x10", TINY_GRID, train, config, TINY), directory=tmp_path,
                       project_name="search", heartbeat_timeout=30)
    oracle = tuner.oracle
    first, second = oracle.create_trial("worker1"), oracle.create_trial("worker2")
    for tuner_id in ("worker1", "worker2"):
        oracle.last_heard[tuner_id] -= 31  # both silent for longer than the timeout ...
    oracle.get_trial(first.trial_id)  # ... but worker1's heartbeat comes in
    oracle.requeue_silent()
    assert oracle.ongoing_trials == {"worker1": first} and oracle.tuner_ids == {"worker1"}
    assert oracle.create_trial("worker3") is second  # worker2's trial goes to the next worker, before new points
    # worker2 was alive after all and sends its result, then worker3 (or worker2 again): the first one counts.
    oracle.update_trial(second.trial_id, {"val_accuracy": 0.5})
    second.status = "COMPLETED"
    oracle.end_trial(second)
    oracle.update_trial(second.trial_id, {"val_accuracy": 0.9})
    oracle.end_trial(second)
    assert oracle.end_order == [second.trial_id] and second.score == 0.5
    assert oracle.get_best_trials()[0].metrics.get_best_value("val_accuracy") == 0.5
    assert oracle.ongoing_trials == {"worker1": first}


def test_a_trial_whose_file_was_written_but_not_oracle_json_runs_again_after_a_reload(tmp_path, mini):
    """KerasTuner writes a new trial's file, then oracle.json: a kill between the two leaves a RUNNING
    trial that oracle.json does not list as started. Its grid point must not count as done."""
    train, _ = mini
    config = training.TrainConfig(epochs=1, batch_size=16, jit_compile=False)

    def grid_search():
        return GridSearch(RiRHyperModel("rir_3x10", TINY_GRID, train, config, TINY), directory=tmp_path,
                          project_name="search")

    tuner = grid_search()
    tuner.save()  # as `search` does first: a search is reloaded only where the tuner's file exists
    oracle = tuner.oracle
    first = oracle.create_trial("worker1")
    oracle_file = os.path.join(tuner.project_dir, "oracle.json")
    with open(oracle_file) as file:
        before_second = file.read()
    second = oracle.create_trial("worker2")
    with open(oracle_file, "w") as file:  # as if killed between the trial's file and oracle.json
        file.write(before_second)
    assert json.loads(before_second)["start_order"] == [first.trial_id]

    reloaded = grid_search().oracle
    assert reloaded.trials[second.trial_id].status == "RUNNING"
    # A single search sends both running trials to the retry queue; none is lost, then the grid goes on.
    again = [reloaded.create_trial(tuner_id) for tuner_id in ("worker3", "worker4", "worker5")]
    assert sorted(trial.trial_id for trial in again[:2]) == [first.trial_id, second.trial_id]
    assert again[2].trial_id not in (first.trial_id, second.trial_id)
    points = [_point_key(trial.hyperparameters.values) for trial in again]
    assert sorted(points) == sorted(set(points)) and _point_key(second.hyperparameters.values) in points
    assert second.trial_id in reloaded.start_order
