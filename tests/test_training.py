"""Training, resumption and the train/evaluate/reproduce commands, on tiny models and the mini archive."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from rir_keras import reporting, training
from rir_keras.applications import RiRNet, train_cli
from rir_keras.cli import main
from rir_keras.data import load_split

TINY = dict(blocks_per_stage=(1, 1, 1), widths=(8, 8, 8))
# A registry model at its smallest: 1/8 of RiR-32's widths.
TINY_FLAGS = ["--width-multiplier", "0.125", "--batch-size", "32", "--no-jit", "--train-limit", "128",
              "--test-limit", "64"]


@pytest.fixture(scope="module")
def mini(data_dir):
    archive = data_dir / "cifar10-mini.tar.gz"
    train = load_split(archive, "train")
    test = load_split(archive, "test")
    return train.subset(slice(0, 128)), test.subset(slice(0, 64))


@pytest.fixture
def cli_env(data_dir, monkeypatch):
    monkeypatch.setenv("RIR_KERAS_DATA", str(data_dir))
    return {**os.environ, "RIR_KERAS_DATA": str(data_dir), "TF_CPP_MIN_LOG_LEVEL": "3"}


def test_decay_epochs_scale_the_papers_schedule():
    assert training.TrainConfig().decay_epochs == (42, 62)
    assert training.TrainConfig(epochs=41).decay_epochs == (21, 31)
    assert training.TrainConfig(epochs=1).decay_epochs == (1,)
    assert training.TrainConfig(epochs=10, decay_epochs=[3, 6]).decay_epochs == (3, 6)


def test_learning_rate_steps_down_by_the_factor_at_each_decay_epoch():
    config = training.TrainConfig(epochs=10, decay_epochs=(3, 6), learning_rate=0.1, decay_factor=0.1)
    schedule = training.learning_rate_schedule(config, steps_per_epoch=5)
    rates = [float(schedule(step)) for step in (0, 14, 15, 16, 29, 30, 31, 49)]
    np.testing.assert_allclose(rates, [0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001], rtol=1e-6)


@pytest.mark.parametrize("kwargs,message", [
    ({"epochs": 0}, "epochs=0"),
    ({"batch_size": -1}, "batch_size=-1"),
    ({"optimizer": "lbfgs"}, "optimizer='lbfgs'"),
    ({"learning_rate": 0}, "learning_rate=0"),
    ({"steps_per_epoch": 0}, "steps_per_epoch=0"),
    ({"normalization": "imagenet"}, "dataset='imagenet'"),
])
def test_bad_training_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        training.TrainConfig(**kwargs)


@pytest.mark.parametrize("optimizer,kind", [("sgd", "SGD"), ("adam", "Adam"), ("rmsprop", "RMSprop")])
def test_optimizers(optimizer, kind):
    made = training.make_optimizer(training.TrainConfig(optimizer=optimizer), steps_per_epoch=10)
    assert type(made).__name__ == kind


def test_train_writes_every_artifact_and_learns(mini, tmp_path):
    train, test = mini
    model = RiRNet(**TINY, input_shape=train.image_shape)
    config = training.TrainConfig(epochs=3, batch_size=32, learning_rate=0.05, jit_compile=False, augment=False)
    results = training.train(model, train, test, config, tmp_path, verbose=0)
    assert sorted(os.listdir(tmp_path)) == ["curves.png", "log.csv", "model.keras", "results.json", "tensorboard"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["test_accuracy"] == pytest.approx(results["test_accuracy"])
    assert saved["history"]["epoch"] == [0.0, 1.0, 2.0]
    assert saved["history"]["loss"][-1] < saved["history"]["loss"][0]  # it learned something
    assert saved["config"]["decay_epochs"] == [2]
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    batch = training.batches(test, config, training=False)[0][0]
    np.testing.assert_allclose(loaded.predict(batch, verbose=0), model.predict(batch, verbose=0), atol=1e-6)
    with pytest.raises(ValueError, match="finished run"):
        training.train(RiRNet(**TINY), train, test, config, tmp_path, verbose=0)


def log_epochs(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as handle:
        return [row["epoch"] for row in csv.DictReader(handle)]


def test_training_resumes_after_a_kill_without_losing_finished_epochs(cli_env, tmp_path):
    output = tmp_path / "run"
    command = [sys.executable, "-m", "rir_keras.cli", "train", "--model", "rir32", "--dataset", "cifar10-mini",
               "--epochs", "4", "--output", str(output), *TINY_FLAGS]
    process = subprocess.Popen(command, env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while len(log_epochs(output / "log.csv")) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = log_epochs(output / "log.csv")
    assert 2 <= len(done) < 4, f"the kill should land mid-run; epochs logged: {done}"
    assert (output / "backup").is_dir() and not (output / "results.json").exists()

    finished = subprocess.run(command, env=cli_env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    results = json.loads((output / "results.json").read_text())
    assert results["resumed"] is True
    assert results["history"]["epoch"] == [0.0, 1.0, 2.0, 3.0]
    assert results["epochs_this_run"] == 4 - len(done)
    assert not (output / "backup").exists()  # removed once training finished


def test_cli_train_then_evaluate(cli_env, tmp_path, capsys):
    output = tmp_path / "run"
    assert main(["train", "--model", "resnet_init32", "--dataset", "cifar10-mini", "--epochs", "1",
                 "--steps-per-epoch", "2", "--output", str(output), *TINY_FLAGS]) == 0
    results = json.loads((output / "results.json").read_text())
    assert results["registry_name"] == "resnet_init32" and results["model_options"]["width_multiplier"] == 0.125
    capsys.readouterr()
    assert main(["evaluate", str(output / "model.keras"), "--dataset", "cifar10-mini", "--limit", "64"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 64
    assert report["accuracy"] == pytest.approx(results["test_accuracy"], abs=1e-6)  # same 64 images, same model


def test_seed_fixes_the_initial_weights(cli_env, monkeypatch):
    handed = []
    monkeypatch.setattr(training, "train", lambda model, *args, **kwargs: handed.append(model.get_weights()) or {})
    monkeypatch.setattr(reporting, "write_json", lambda *args: None)
    parser = train_cli.argparse.ArgumentParser()
    train_cli.add_train(parser.add_subparsers())
    data = train_cli.load_data(parser.parse_args(["train", "--model", "rir32", "--dataset", "cifar10-mini", *TINY_FLAGS]))
    for seed in ("3", "3", "4"):
        args = parser.parse_args(["train", "--model", "rir32", "--seed", seed, *TINY_FLAGS])
        keras.utils.set_random_seed(99)  # whatever state came before
        train_cli.train_one("rir32", args, *data, "unused")
    same, other = ([np.array_equal(a, b) for a, b in zip(handed[0], run)] for run in handed[1:])
    assert all(same) and not all(other)


def test_cli_reproduce_writes_the_table_and_resumes(cli_env, tmp_path, capsys):
    args = ["reproduce", "--table", "32", "--dataset", "cifar10-mini", "--epochs", "1", "--steps-per-epoch", "1",
            "--output", str(tmp_path), *TINY_FLAGS]
    assert main(args) == 0
    table = (tmp_path / "results.md").read_text()
    for name, reported in (("cnn32", "89.03"), ("resnet32", "92.32"), ("resnet_init32", "89.62"), ("rir32", "92.97")):
        row = next(line for line in table.splitlines() if line.startswith(f"| {name} |"))
        assert row.endswith(f"| {reported} |")
    stamps = {name: (tmp_path / name / "results.json").stat().st_mtime_ns for name in ("cnn32", "rir32")}
    assert main(args) == 0  # finished models are read back, not trained again
    assert stamps == {name: (tmp_path / name / "results.json").stat().st_mtime_ns for name in stamps}


def test_cli_errors_name_what_is_wrong(cli_env, tmp_path, capsys):
    assert main(["train", "--model", "rir33", "--dataset", "cifar10-mini", "--output", str(tmp_path)]) == 2
    assert "model='rir33'" in capsys.readouterr().err
    assert main(["train", "--model", "all_cnn_c", "--shortcut", "projection", "--dataset", "cifar10-mini",
                 "--output", str(tmp_path), *TINY_FLAGS]) == 2
    assert "does not take" in capsys.readouterr().err
    assert main(["train", "--model", "rir32", "--dataset", str(tmp_path / "missing.tar.gz"),
                 "--output", str(tmp_path)]) == 2
    assert "missing.tar.gz" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nothing.keras")]) == 2
    assert "nothing.keras" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "evaluate", "reproduce"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: rir-keras " + command in capsys.readouterr().out


def test_subset_is_seeded_and_checked(mini):
    train, _ = mini
    first = train_cli.subset(train, 10, seed=3, argument="--train-limit")
    again = train_cli.subset(train, 10, seed=3, argument="--train-limit")
    np.testing.assert_array_equal(first.images, again.images)
    assert len(first) == 10
    with pytest.raises(ValueError, match="--train-limit=0"):
        train_cli.subset(train, 0, seed=3, argument="--train-limit")
