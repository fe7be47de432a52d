"""Exports for serving: SavedModels that load and predict in a process with TensorFlow only, the
serving contract (signature, dtype and shape errors), atomic writes, ONNX, .keras and the CLI.

The models normalize their raw inputs themselves (their preprocessing layer), so an export serves
uint8 images to the Keras model's predictions on the same pixels; a model without the layer is refused."""
import json
import os
import pathlib
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

from rir_keras import export
from rir_keras.commands.main import main as rir_keras_main
from rir_keras.applications import (
    AllCNNC, ResNet32, RiR18Wide, RiR32, RiRNet,
)
from rir_keras.preprocessing import CIFAR10_CLASSES, CIFAR100_CLASSES

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="exports need the TensorFlow backend")

TOP_K = 3
SMALL = dict(blocks_per_stage=(1, 1, 1), widths=(8, 8, 8))
# One model per family, width-reduced; building them is cheap, tracing them for export is not.
# Every layer type the package has: plain Conv2D + BatchNorm and outer shortcuts (ResNet-32; CNN-32 has
# nothing more), generalized layers (RiR-32; ResNet Init-32 has nothing more), projection shortcuts,
# dropout, forget gates and the other identity placements.
FAMILIES = {
    "resnet32": lambda: ResNet32(width_multiplier=0.125),
    "rir32": lambda: RiR32(width_multiplier=0.125),
    "rir18_wide": lambda: RiR18Wide(width_multiplier=0.125),
    "all_cnn_c_resnet_init": lambda: AllCNNC(resnet_init=True, width_multiplier=0.125),
    "rir_forget_gate": lambda: RiRNet(**SMALL, forget_gate=True, name="rir_forget"),
    "rir_identity_constant": lambda: RiRNet(**SMALL, identity="constant", name="rir_constant"),
    "rir_identity_shortcut": lambda: RiRNet(**SMALL, identity="shortcut", shortcut="projection",
                                            name="rir_shortcut"),
}


def calibrate(model, seed=0):
    """Set every BatchNorm's moving statistics to those of one random batch (momentum 0 for one step),
    so that deep random models give unsaturated probabilities and inference differs from training mode."""
    images = np.random.default_rng(seed).integers(0, 256, (16, *model.input_shape[1:])).astype("uint8")
    norms = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    model(images.astype("float32"), training=True)
    for layer, momentum in zip(norms, momenta):
        layer.momentum = momentum
    return model


def raw_images(shape, count=5, seed=1):
    return np.random.default_rng(seed).integers(0, 256, (count, *shape)).astype("uint8")


def keras_predictions(model, images, training=False):
    """The Keras model's output on raw pixels (as float32, the way it takes them)."""
    return keras.ops.convert_to_numpy(model(images.astype("float32"), training=training))


# Runs in a fresh interpreter where importing keras or rir_keras fails: the exports must load with
# TensorFlow alone. (TensorFlow imports keras when it can, and tolerates it being absent.)
REFUSE_KERAS = r'''
import importlib.abc, importlib.util, json, sys

class RefuseImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("keras", "rir_keras", "tf_keras"):
            return importlib.util.spec_from_loader(name, self)
    def create_module(self, spec):
        raise ImportError(spec.name + " is refused in this process")
    def exec_module(self, module):
        pass

sys.meta_path.insert(0, RefuseImport())
'''
TENSORFLOW_ONLY = REFUSE_KERAS + r'''
import numpy as np
import tensorflow as tf

folder = sys.argv[1]
manifest = json.load(open(folder + "/manifest.json"))
report = {}
for name, entry in manifest.items():
    loaded = tf.saved_model.load(entry["path"])
    serve, serve_float = loaded.signatures["serving_default"], loaded.signatures["serving_float32"]
    images = np.load(entry["images"])
    outputs = {key: value.numpy() for key, value in serve(images=tf.constant(images)).items()}
    outputs = {key: value.astype(bytes) if value.dtype == object else value for key, value in outputs.items()}
    floats = serve_float(images=tf.constant(images.astype("float32")))["probabilities"].numpy()
    errors = {}
    bad_inputs = {"dtype": images.astype("float32"), "shape": images[:, 1:], "rank": images[0]}
    for kind, bad in bad_inputs.items():
        try:
            serve(images=tf.constant(bad))
            errors[kind] = None
        except Exception as error:  # the process goes on: that is part of what is tested
            errors[kind] = type(error).__name__ + ": " + str(error)
    np.savez(folder + "/" + name + "-served.npz", floats=floats, **outputs)
    report[name] = {"outputs": sorted(outputs), "errors": errors}
assert "keras" not in sys.modules and "rir_keras" not in sys.modules, sorted(sys.modules)
print(json.dumps(report))
'''


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every family exported (top_k=3), its images and Keras's predictions, and the report of loading
    them all in one TensorFlow-only subprocess."""
    folder = tmp_path_factory.mktemp("exports")
    manifest, expected = {}, {}
    for name, build in FAMILIES.items():
        model = calibrate(build())
        images = raw_images(model.input_shape[1:])
        np.save(folder / f"{name}-images.npy", images)
        inference = keras_predictions(model, images)
        path = export.export_saved_model(model, folder / name, top_k=TOP_K)
        # After the export: a training-mode call moves the BatchNorm statistics.
        expected[name] = {"inference": inference, "training": keras_predictions(model, images, training=True)}
        manifest[name] = {"path": str(path), "images": str(folder / f"{name}-images.npy")}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", TENSORFLOW_ONLY, str(folder)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    served = {name: dict(np.load(folder / f"{name}-served.npz")) for name in FAMILIES}
    return {"folder": folder, "report": report, "served": served, "expected": expected}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_saved_model_predicts_like_keras_without_keras(exported, name):
    served, expected = exported["served"][name], exported["expected"][name]
    np.testing.assert_allclose(served["probabilities"], expected["inference"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(served["floats"], expected["inference"], atol=1e-5, rtol=0)
    # BatchNorm ran in inference mode: training mode (batch statistics) gives other predictions.
    assert np.abs(served["probabilities"] - expected["training"]).max() > 1e-3
    assert exported["report"][name]["outputs"] == ["probabilities", "top_k_ids", "top_k_names", "top_k_scores"]


def test_top_k_outputs(exported):
    served = exported["served"]["rir32"]
    order = np.argsort(-served["probabilities"], axis=1, kind="stable")[:, :TOP_K]
    np.testing.assert_array_equal(served["top_k_ids"], order)
    np.testing.assert_allclose(served["top_k_scores"], np.take_along_axis(served["probabilities"], order, 1))
    names = np.vectorize(lambda i: CIFAR10_CLASSES[i].encode())(order)
    np.testing.assert_array_equal(served["top_k_names"], names)


def test_wrong_dtype_or_shape_gives_a_clear_error(exported):
    for name, entry in exported["report"].items():
        errors = entry["errors"]
        assert errors["dtype"] is not None and "uint8" in errors["dtype"] and "float" in errors["dtype"], name
        for kind, received in (("shape", "[5 31 32 3]"), ("rank", "[32 32 3]")):
            assert errors[kind] is not None, (name, kind)
            assert "images must be a uint8 tensor of shape (batch, 32, 32, 3)" in errors[kind], (name, errors[kind])
            assert f"received shape:] {received}" in errors[kind], (name, errors[kind])


def test_saved_model_cli_lists_the_signature(exported):
    binary = pathlib.Path(sys.executable).with_name("saved_model_cli")
    done = subprocess.run([str(binary), "show", "--dir", str(exported["folder"] / "rir32"), "--tag_set", "serve",
                           "--signature_def", "serving_default"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    text = done.stdout
    assert "inputs['images']" in text and "DT_UINT8" in text and "shape: (-1, 32, 32, 3)" in text
    for output in ("probabilities", "top_k_ids", "top_k_names", "top_k_scores"):
        assert f"outputs['{output}']" in text


def test_load_serving_function(exported):
    name = "all_cnn_c_resnet_init"
    serve = export.load_serving_function(exported["folder"] / name)
    images = np.load(exported["folder"] / f"{name}-images.npy")
    np.testing.assert_allclose(serve(images)["probabilities"], exported["expected"][name]["inference"], atol=1e-5)
    with pytest.raises(ValueError, match="signature must be one of"):
        export.load_serving_function(exported["folder"] / name, signature="predict")
    with pytest.raises(FileNotFoundError, match="missing"):
        export.load_serving_function(exported["folder"] / "missing")


@pytest.fixture(scope="module")
def tiny():
    return calibrate(RiRNet(**SMALL, name="tiny"))


@pytest.fixture(scope="module")
def tiny_export(tiny, tmp_path_factory):
    """One SavedModel of ``tiny`` (cifar10 statistics), copied by the tests that need a previous export."""
    return export.export_saved_model(tiny, tmp_path_factory.mktemp("tiny") / "model")


def files(folder):
    return {path.relative_to(folder): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def with_preprocessing(model, preprocessing, **options):
    """``tiny``'s twin (same weights) built with another ``preprocessing``."""
    twin = RiRNet(**SMALL, name="tiny", preprocessing=preprocessing, **options)
    twin.set_weights(model.get_weights())
    return twin


def test_refuses_to_overwrite_then_replaces_atomically(tiny, tiny_export, tmp_path):
    target = tmp_path / "model"
    shutil.copytree(tiny_export, target)
    mean, std = (120.0, 110.0, 100.0), (60.0, 61.0, 62.0)
    other = with_preprocessing(tiny, (mean, std))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export.export_saved_model(other, target)
    assert files(target) == files(tiny_export)
    export.export_saved_model(other, target, top_k=2, overwrite=True)
    images = raw_images((32, 32, 3))
    outputs = export.load_serving_function(target)(images)
    # The new export is in place, with its own statistics (its model's) and outputs.
    plain = with_preprocessing(tiny, None)
    expected = keras.ops.convert_to_numpy(plain((images - np.float32(mean)) / np.float32(std), training=False))
    np.testing.assert_allclose(outputs["probabilities"], expected, atol=1e-5)
    np.testing.assert_allclose(outputs["probabilities"], keras_predictions(other, images), atol=1e-5)
    assert outputs["top_k_ids"].shape == (len(images), 2)
    assert "top_k_names" not in outputs  # statistics of no known dataset: no class names to guess
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # nothing left beside it


def test_failure_during_export_keeps_the_previous_export(tiny, tiny_export, tmp_path, monkeypatch):
    import tensorflow as tf

    target = tmp_path / "model"
    shutil.copytree(tiny_export, target)

    def fail_halfway(obj, export_dir, signatures=None, options=None):
        os.makedirs(os.path.join(export_dir, "variables"))
        pathlib.Path(export_dir, "saved_model.pb").write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", fail_halfway)
    with pytest.raises(RuntimeError, match="disk full"):
        export.export_saved_model(tiny, target, overwrite=True)
    assert files(target) == files(tiny_export)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_bad_arguments_name_the_argument(tiny, tmp_path):
    cases = [
        (dict(top_k=11), "top_k=11"),
        (dict(top_k=0), "top_k=0"),
        (dict(top_k=2, class_names=("a", "b")), "class_names with 2 names"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            export.export_saved_model(tiny, tmp_path / "model", **kwargs)
    with pytest.raises(ValueError, match="format="):
        export.export(tiny, tmp_path / "model", format="tflite")
    with pytest.raises(TypeError, match="preprocessing"):  # the model carries its statistics now
        export.export_saved_model(tiny, tmp_path / "model", preprocessing="cifar10")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("options", [dict(include_preprocessing=False), dict(preprocessing=None)])
def test_export_refuses_a_model_without_its_preprocessing_layer(options, tmp_path):
    model = RiRNet(**SMALL, name="tiny", **options)
    for exporter, path in ((export.export_saved_model, tmp_path / "model"), (export.export_onnx, tmp_path / "m.onnx"),
                           (export.export_keras, tmp_path / "m.keras")):
        with pytest.raises(ValueError, match="include_preprocessing=True") as error:
            exporter(model, path)
        assert "\n" not in str(error.value) and "'tiny'" in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_class_names_come_from_the_models_statistics(tiny):
    assert export.ServingGraph(tiny, top_k=2).class_names == CIFAR10_CLASSES
    cifar100 = RiRNet(**SMALL, classes=100, preprocessing="cifar100")
    assert export.ServingGraph(cifar100, top_k=2).class_names == CIFAR100_CLASSES
    # cifar10 statistics on a 100-class model (or any class count but the dataset's): no names to guess.
    assert export.ServingGraph(RiRNet(**SMALL, classes=100), top_k=2).class_names is None
    assert export.ServingGraph(with_preprocessing(tiny, "cifar100"), top_k=2).class_names is None
    names = tuple("abcdefghij")
    assert export.ServingGraph(with_preprocessing(tiny, (1.0, 2.0)), top_k=2, class_names=names).class_names == names
    assert export.ServingGraph(tiny, top_k=2, class_names="cifar10").class_names == CIFAR10_CLASSES


ONNX_MODELS = {
    "rir_forget_gate": FAMILIES["rir_forget_gate"],
    "rir_identity_shortcut": FAMILIES["rir_identity_shortcut"],
}


@pytest.mark.parametrize("name", list(ONNX_MODELS))
def test_onnx_predicts_like_keras(name, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    model = calibrate(ONNX_MODELS[name]())
    path = export.export_onnx(model, tmp_path / "model.onnx", top_k=TOP_K)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (given,) = session.get_inputs()
    assert (given.name, given.type, given.shape[1:]) == ("images", "tensor(uint8)", [32, 32, 3])
    images = raw_images((32, 32, 3))
    names = [output.name for output in session.get_outputs()]
    outputs = dict(zip(names, session.run(None, {"images": images})))
    np.testing.assert_allclose(outputs["probabilities"], keras_predictions(model, images), atol=1e-4, rtol=0)
    order = np.argsort(-outputs["probabilities"], axis=1, kind="stable")[:, :TOP_K]
    np.testing.assert_array_equal(outputs["top_k_ids"], order)
    np.testing.assert_array_equal(outputs["top_k_names"], np.asarray(CIFAR10_CLASSES, object)[order])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_keras_format_takes_raw_images(tiny, tmp_path):
    path = export.export_keras(tiny, tmp_path / "raw.keras")
    reloaded = keras.saving.load_model(path, compile=False)
    images = raw_images((32, 32, 3))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(reloaded(images.astype("float32"))),
                               keras_predictions(tiny, images), atol=1e-5)
    with pytest.raises(ValueError, match="must end with .keras"):
        export.export_keras(tiny, tmp_path / "raw.h5")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export.export_keras(tiny, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw.keras"]


def run_cli(capsys, *argv):
    code = rir_keras_main(["export", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_cli_exports_a_keras_file(tiny, tmp_path, capsys):
    tiny.save(tmp_path / "tiny.keras")
    code, text = run_cli(capsys, tmp_path / "tiny.keras", "--output", tmp_path / "served", "--top-k", 2)
    assert code == 0, text
    images = raw_images((32, 32, 3))
    outputs = export.load_serving_function(tmp_path / "served")(images)
    np.testing.assert_allclose(outputs["probabilities"], keras_predictions(tiny, images), atol=1e-5)
    assert outputs["top_k_ids"].shape == (len(images), 2)
    code, text = run_cli(capsys, tmp_path / "tiny.keras", "--output", tmp_path / "served")
    assert code == 2 and "--overwrite" in text


def test_cli_exports_registry_name_and_weights(tmp_path, capsys):
    model = calibrate(RiR32(width_multiplier=0.125, classes=100, preprocessing="cifar100"))
    model.save_weights(tmp_path / "rir32.weights.h5")
    code, text = run_cli(capsys, "--model", "rir32", "--weights", tmp_path / "rir32.weights.h5",
                         "--width-multiplier", 0.125, "--classes", 100, "--preprocessing", "cifar100",
                         "--format", "keras", "--output", tmp_path / "rir32.keras")
    assert code == 0, text
    assert "preprocessing: cifar100" in text
    reloaded = keras.saving.load_model(tmp_path / "rir32.keras", compile=False)
    images = raw_images((32, 32, 3))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(reloaded(images.astype("float32"))),
                               keras_predictions(model, images), atol=1e-5)


def test_cli_errors(tmp_path, capsys):
    code, text = run_cli(capsys, tmp_path / "missing.keras", "--output", tmp_path / "out")
    assert code == 2 and "model file not found" in text and "missing.keras" in text
    code, text = run_cli(capsys, "--model", "rir64", "--weights", tmp_path / "w.weights.h5", "--output", tmp_path / "o")
    assert code == 2 and "model='rir64'" in text and "rir32" in text
    code, text = run_cli(capsys, "--model", "rir32", "--weights", tmp_path / "w.weights.h5", "--output", tmp_path / "o")
    assert code == 2 and "weights file not found" in text
    code, text = run_cli(capsys, "--output", tmp_path / "o")
    assert code == 2 and "either a MODEL.keras file or --model" in text
    RiRNet(**SMALL, include_preprocessing=False, name="plain").save(tmp_path / "plain.keras")
    code, text = run_cli(capsys, tmp_path / "plain.keras", "--output", tmp_path / "o")
    assert code == 2 and "include_preprocessing=True" in text and "'plain'" in text
    code, text = run_cli(capsys, tmp_path / "plain.keras", "--preprocessing", "cifar10", "--output", tmp_path / "o")
    assert code == 2 and "a .keras model file carries how it was built" in text and "drop --preprocessing" in text
    assert not (tmp_path / "o").exists() and not (tmp_path / "out").exists()


# The served model's answer to inputs it cannot classify, asked in a process without keras or rir_keras.
SERVING_INPUTS = REFUSE_KERAS + r'''
import numpy as np
import tensorflow as tf

loaded = tf.saved_model.load(sys.argv[1])
images = np.full((3, 32, 32, 3), 128, np.float32)
report = {}
for name, value in {"nan": np.nan, "inf": np.inf, "huge": 1e6, "negative": -1.0, "edges": 255.0}.items():
    bad = images.copy()
    bad[1, 5, 7, 2] = value
    bad[2, 0, 0, 0] = 0.0
    try:
        report[name] = {k: v.shape.as_list() for k, v in loaded.signatures["serving_float32"](images=tf.constant(bad)).items()}
    except tf.errors.InvalidArgumentError as error:
        report[name] = " ".join(error.message.split())
for signature, dtype in (("serving_default", np.uint8), ("serving_float32", np.float32)):
    outputs = loaded.signatures[signature](images=tf.constant(np.zeros((0, 32, 32, 3), dtype)))
    report["empty " + signature] = {k: v.shape.as_list() for k, v in outputs.items()}
assert "keras" not in sys.modules and "rir_keras" not in sys.modules, sorted(sys.modules)
print(json.dumps(report))
'''


def test_a_served_model_refuses_values_it_cannot_classify_and_answers_an_empty_batch(tiny, tmp_path):
    # The float32 signature answered NaN probabilities (with plausible top-k names) for one NaN or inf
    # pixel and confident ones for 1e6; an empty batch failed in both signatures (batch normalization).
    path = export.export_saved_model(tiny, tmp_path / "model", top_k=3)
    done = subprocess.run([sys.executable, "-c", SERVING_INPUTS, str(path)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for name in ("nan", "inf", "huge", "negative"):
        assert "images must hold finite pixel values in [0, 255]; received another value in image (index):] [1]" \
            in report[name], (name, report[name])
    assert report["edges"]["probabilities"] == [3, 10]
    for signature in ("serving_default", "serving_float32"):
        assert report["empty " + signature] == {"probabilities": [0, 10], "top_k_ids": [0, 3], "top_k_scores": [0, 3],
                                                "top_k_names": [0, 3]}, report
