"""Training, resumption and the train/evaluate/reproduce commands, on tiny models and the mini archive."""
import argparse
import json
import os
import re

import keras
import numpy as np
import pytest

from rir_keras import data as datasets
from rir_keras import atomic, runs, training
from rir_keras.applications import RiRNet, registry
from rir_keras.commands import flags, train as train_command
from rir_keras.commands.main import main
from rir_keras.data import load_arrays, load_split
from rir_keras.preprocessing import model_preprocessing

TINY = dict(blocks_per_stage=(1, 1, 1), widths=(8, 8, 8))
# A registry model at its smallest: 1/8 of RiR-32's widths.
TINY_FLAGS = ["--width-multiplier", "0.125", "--batch-size", "32", "--no-jit", "--train-limit", "128",
              "--test-limit", "64"]


@pytest.fixture(scope="module")
def mini(data_dir):
    archive = data_dir / "cifar10-png-mini.tar.gz"
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
])
def test_bad_training_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        training.TrainConfig(**kwargs)


def test_training_needs_no_normalization_argument(mini):
    """The models normalize their inputs: batches are the raw images as float32, and TrainConfig has
    no normalization to set."""
    assert not any("normaliz" in field for field in training.TrainConfig.__dataclass_fields__)
    assert not hasattr(training, "normalizer")
    with pytest.raises(TypeError):
        training.TrainConfig(normalization="cifar10")
    _, test = mini
    images, labels = training.batches(test, training.TrainConfig(batch_size=16), training=False)[0]
    assert images.dtype == np.float32
    np.testing.assert_array_equal(images, test.images[:16].astype("float32"))
    np.testing.assert_array_equal(labels, test.labels[:16])


def logits_twins(**options):
    """A softmax model and a logits model (``classifier_activation=None``) with the same weights."""
    probabilities = RiRNet(**TINY, name="probabilities", **options)
    logits = RiRNet(**TINY, classifier_activation=None, name="logits", **options)
    logits.set_weights(probabilities.get_weights())
    return probabilities, logits


def test_logits_models_are_compiled_from_logits(mini, cli_env, tmp_path, capsys):
    _, test = mini
    probabilities, logits = logits_twins()
    assert not training.outputs_logits(probabilities) and training.outputs_logits(logits)
    assert training.outputs_logits(RiRNet(**TINY, classifier_activation="linear"))
    assert not training.outputs_logits(RiRNet(**TINY, include_top=False, pooling="avg"))  # no head: no guess
    config = training.TrainConfig(batch_size=32, jit_compile=False)
    losses = {}
    for model in (probabilities, logits):
        training.compile_model(model, config, steps_per_epoch=1)
        assert model.loss.from_logits == (model is logits)
        train_loss = model.evaluate(training.batches(test, config, training=False), verbose=0, return_dict=True)
        training.compile_for_evaluation(model)
        assert model.loss.from_logits == (model is logits)
        losses[model.name] = (train_loss["loss"], training.evaluate(model, test, config.batch_size)["loss"])
    np.testing.assert_allclose(losses["logits"], losses["probabilities"], rtol=1e-4)
    assert losses["logits"][0] == pytest.approx(losses["logits"][1], rel=1e-5)

    # The evaluate command, on saved models: the logits model is read as logits after loading too.
    reports = {}
    for model in (probabilities, logits):
        model.save(tmp_path / f"{model.name}.keras")
        capsys.readouterr()
        assert main(["evaluate", str(tmp_path / f"{model.name}.keras"), "--dataset", "cifar10-png-mini", "--limit", "32",
                     "--batch-size", "32"]) == 0
        reports[model.name] = json.loads(capsys.readouterr().out)
    assert reports["logits"]["loss"] == pytest.approx(reports["probabilities"]["loss"], rel=1e-4)
    assert reports["logits"]["accuracy"] == reports["probabilities"]["accuracy"]
    assert reports["logits"]["preprocessing"] == "cifar10"


@pytest.mark.parametrize("optimizer,kind", [("sgd", "SGD"), ("adam", "Adam"), ("rmsprop", "RMSprop")])
def test_optimizers(optimizer, kind):
    made = training.make_optimizer(training.TrainConfig(optimizer=optimizer), steps_per_epoch=10)
    assert type(made).__name__ == kind


def test_train_writes_every_artifact_and_learns(mini, tmp_path):
    train, test = mini
    model = RiRNet(**TINY, input_shape=train.image_shape)
    config = training.TrainConfig(epochs=3, batch_size=32, learning_rate=0.05, jit_compile=False, augment=False)
    results = training.train(model, train, test, config, tmp_path, verbose=0)
    assert sorted(os.listdir(tmp_path)) == ["curves.png", "log.csv", "model.keras", "results.json", "run.json",
                                            "sessions.jsonl", "tensorboard"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["test_accuracy"] == pytest.approx(results["test_accuracy"])
    assert saved["history"]["epoch"] == [0.0, 1.0, 2.0]
    assert saved["history"]["loss"][-1] < saved["history"]["loss"][0]  # it learned something
    assert saved["config"]["decay_epochs"] == [2]
    assert saved["preprocessing"] == "cifar10" and "normalization" not in saved["config"]
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    batch = training.batches(test, config, training=False)[0][0]
    np.testing.assert_allclose(loaded.predict(batch, verbose=0), model.predict(batch, verbose=0), atol=1e-6)
    assert saved["wall_seconds"] == pytest.approx(sum(saved["history"]["seconds"]))
    # A finished folder gives back its results without training; restart=True trains anew.
    again = RiRNet(**TINY, input_shape=train.image_shape)
    assert training.train(again, train, test, config, tmp_path, verbose=0) == saved
    fresh = training.train(again, train, test, config, tmp_path, verbose=0, restart=True)
    assert fresh["epochs_this_run"] == 3 and len(runs.sessions(tmp_path)) == 1


def test_cli_train_then_evaluate(cli_env, tmp_path, capsys):
    output = tmp_path / "run"
    assert main(["train", "--model", "resnet_init32", "--dataset", "cifar10-png-mini", "--epochs", "1",
                 "--steps-per-epoch", "2", "--output", str(output), *TINY_FLAGS]) == 0
    results = json.loads((output / "results.json").read_text())
    spec = registry.ModelSpec.from_dict(results["spec"])
    assert spec.registry_name == "resnet_init32" and spec.options["width_multiplier"] == 0.125
    assert spec.preprocessing == "cifar10"  # --preprocessing auto: the dataset's name
    assert spec.input_shape == (32, 32, 3) and spec.classes == 10
    assert spec.build().count_params() == results["parameters"]  # the spec rebuilds the trained model
    assert model_preprocessing(keras.saving.load_model(output / "model.keras")) == "cifar10"
    capsys.readouterr()
    assert main(["evaluate", str(output / "model.keras"), "--dataset", "cifar10-png-mini", "--limit", "64"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 64 and report["preprocessing"] == "cifar10"
    assert report["accuracy"] == pytest.approx(results["test_accuracy"], abs=1e-6)  # same 64 images, same model


def test_seed_fixes_the_initial_weights(cli_env, monkeypatch):
    handed = []
    monkeypatch.setattr(training, "train", lambda model, *args, **kwargs: handed.append(model.get_weights()) or {})
    monkeypatch.setattr(atomic, "write_json", lambda *args: None)
    parser = argparse.ArgumentParser()
    train_command.add_train(parser.add_subparsers())
    data = flags.load_data(parser.parse_args(["train", "--model", "rir32", "--dataset", "cifar10-png-mini", *TINY_FLAGS]))
    for seed in ("3", "3", "4"):
        args = parser.parse_args(["train", "--model", "rir32", "--seed", seed, *TINY_FLAGS])
        keras.utils.set_random_seed(99)  # whatever state came before
        train_command.train_one("rir32", args, *data, "unused")
    same, other = ([np.array_equal(a, b) for a, b in zip(handed[0], run)] for run in handed[1:])
    assert all(same) and not all(other)


def test_cli_reproduce_writes_the_table_and_resumes(cli_env, tmp_path, capsys):
    args = ["reproduce", "--table", "32", "--models", "rir32", "cnn32", "--dataset", "cifar10-png-mini", "--epochs", "1",
            "--steps-per-epoch", "1", "--output", str(tmp_path), *TINY_FLAGS]
    assert main(args) == 0
    table = (tmp_path / "results.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split("|")[1].strip() for row in rows] == ["cnn32", "rir32"]  # the paper's order
    for row, reported in zip(rows, ("89.03 (Table 1)", "92.97 (Table 1, 6)")):
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[5] == reported, row
        assert float(cells[6]) == pytest.approx(float(cells[4]) - float(reported.split()[0]), abs=0.011)
    stamps = {name: (tmp_path / name / "seed0" / "results.json").stat().st_mtime_ns for name in ("cnn32", "rir32")}
    assert main(args) == 0  # finished models are read back, not trained again
    assert stamps == {name: (tmp_path / name / "seed0" / "results.json").stat().st_mtime_ns for name in stamps}


def test_cli_errors_name_what_is_wrong(cli_env, tmp_path, capsys):
    assert main(["train", "--model", "rir33", "--dataset", "cifar10-png-mini", "--output", str(tmp_path)]) == 2
    assert "model='rir33'" in capsys.readouterr().err
    assert main(["train", "--model", "all_cnn_c", "--shortcut", "projection", "--dataset", "cifar10-png-mini",
                 "--output", str(tmp_path), *TINY_FLAGS]) == 2
    assert "does not take" in capsys.readouterr().err
    assert main(["train", "--model", "rir32", "--dataset", str(tmp_path / "missing.tar.gz"),
                 "--output", str(tmp_path)]) == 2
    assert "missing.tar.gz" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nothing.keras")]) == 2
    assert "nothing.keras" in capsys.readouterr().err


@pytest.mark.parametrize("dataset, family", [
    ("cifar10", "cifar10"), ("cifar10-png-mini", "cifar10"), ("cifar100", "cifar100"), ("tfds:cifar100", "cifar100"),
    ("/data/cifar100-jpeg.tar.gz", "cifar100"), ("../shared/datasets/cifar10/cifar10-jpeg.tar.gz", "cifar10"),
    ("data/CIFAR10/", "cifar10"), ("mnist", None), ("/data/cifar/svhn.tar.gz", None), ("tfds:stl10", None),
])
def test_auto_preprocessing_follows_the_dataset_name(dataset, family):
    assert datasets.dataset_family(dataset) == family


def test_preprocessing_flag_resolves_to_the_constructor_argument():
    pixels = np.random.default_rng(0).integers(0, 256, size=(20, 4, 4, 3)).astype("uint8")
    data = load_arrays(pixels, np.arange(20) % 2)
    given = lambda dataset, value: argparse.Namespace(dataset=dataset, preprocessing=value)  # noqa: E731
    assert flags.preprocessing(given("cifar100-mini", "auto"), data) == "cifar100"
    assert flags.preprocessing(given("mnist", "cifar10"), data) == "cifar10"
    assert flags.preprocessing(given("cifar10", "none"), data) is None
    mean, std = flags.preprocessing(given("/data/shapes.tar.gz", "auto"), data)  # not CIFAR: its own statistics
    np.testing.assert_allclose(mean, pixels.reshape(-1, 3).mean(axis=0))
    np.testing.assert_allclose(std, pixels.reshape(-1, 3).std(axis=0))
    model = RiRNet(**TINY, input_shape=(4, 4, 3), preprocessing=(mean, std))
    np.testing.assert_allclose(model_preprocessing(model), (mean, std), rtol=1e-6)


def test_a_sample_is_seeded_and_checked(mini):
    train, _ = mini
    first, again, other = train.sample(10, seed=3), train.sample(10, seed=3), train.sample(10, seed=4)
    np.testing.assert_array_equal(first.images, again.images)
    assert len(first) == 10 and not np.array_equal(first.images, other.images)
    assert train.sample(None) is train and train.sample(len(train) + 1) is train
    for wrong in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match=re.escape(f"limit={wrong!r}")):
            train.sample(wrong)
    with pytest.raises(ValueError, match="--train-limit=0"):
        flags.sample(train, 0, seed=3, flag="--train-limit")
