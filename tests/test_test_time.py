"""Test-time flips (rir_keras.test_time, ``rir-keras evaluate --tta flip``)."""
import json

import keras
import numpy as np
import pytest

from rir_keras import test_time, training
from rir_keras.applications import RiRNet
from rir_keras.commands.main import main
from rir_keras.data import load_split

TINY = dict(blocks_per_stage=(1, 1, 1), widths=(8, 8, 8))


@pytest.fixture(scope="module")
def test_images(data_dir):
    return load_split(data_dir / "cifar10-png-mini.tar.gz", "test").subset(slice(0, 48))


@pytest.mark.parametrize("activation", ["softmax", None])
def test_flip_averaged_is_the_mean_over_each_image_and_its_mirror(test_images, activation, tmp_path):
    keras.utils.set_random_seed(1)
    model = RiRNet(**TINY, classifier_activation=activation)
    images = test_images.images.astype("float32")
    wrapped = test_time.flip_averaged(model)
    expected = (model.predict(images, verbose=0) + model.predict(images[:, :, ::-1], verbose=0)) / 2
    np.testing.assert_allclose(wrapped.predict(images, verbose=0), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(expected, model.predict(images, verbose=0), atol=1e-4)  # the mirror counts
    assert training.outputs_logits(wrapped) == (activation is None)  # scored from logits where it outputs them
    wrapped.save(tmp_path / "flip.keras")  # saves and loads like any model
    loaded = keras.saving.load_model(tmp_path / "flip.keras")
    np.testing.assert_allclose(loaded.predict(images, verbose=0), expected, rtol=1e-5, atol=1e-6)


def test_with_tta_names_a_bad_mode():
    model = RiRNet(**TINY)
    assert test_time.with_tta(model, "none") is model
    with pytest.raises(ValueError, match="tta='crop'"):
        test_time.with_tta(model, "crop")


def test_evaluate_reports_flips_beside_the_single_view(data_dir, test_images, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RIR_KERAS_DATA", str(data_dir))
    keras.utils.set_random_seed(2)
    model = RiRNet(**TINY)
    model.save(tmp_path / "model.keras")
    capsys.readouterr()
    args = ["evaluate", str(tmp_path / "model.keras"), "--dataset", "cifar10-png-mini", "--batch-size", "50"]
    assert main(args) == 0
    single = json.loads(capsys.readouterr().out)
    assert "tta" not in single
    assert main([*args, "--tta", "flip"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {k: report[k] for k in ("correct", "accuracy")} == {k: single[k] for k in ("correct", "accuracy")}
    test = load_split(data_dir / "cifar10-png-mini.tar.gz", "test")
    images = test.images.astype("float32")
    averaged = model.predict(images, verbose=0) + model.predict(images[:, :, ::-1], verbose=0)
    assert report["tta"]["mode"] == "flip"
    assert report["tta"]["correct"] == int(np.sum(averaged.argmax(axis=1) == test.labels))
    assert report["data"] == {"file": "cifar10-png-mini.tar.gz", "sha256": report["data"]["sha256"]}
    assert len(report["data"]["sha256"]) == 64
    with pytest.raises(SystemExit) as exit_info:  # argparse refuses it by name, exit status 2
        main([*args, "--tta", "crop"])
    assert exit_info.value.code == 2 and "--tta" in capsys.readouterr().err
