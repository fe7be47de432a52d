"""Shipped weights (`weights="cifar10"`), tested on a temporary store holding a width-reduced RiR-32.

The package's store (applications/weights/) may hold no weights yet: the real manifest is checked
for what it holds, and every loading rule is checked on a store made here. The shipping tool
(tools/ship_weights.py) is run on a run folder made here, measured on the CIFAR-10 mini test split.
"""
import importlib.util
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

import h5py
import keras
import numpy as np
import pytest
from keras import ops

from rir_keras import data as datasets
from rir_keras import runs, test_time
from rir_keras.applications import CNN32, RiRNet, RiR18Wide, RiR32, pretrained, registry, weights_store
from rir_keras.preprocessing import CIFAR10_CLASSES, preprocess_input
from conftest import load_script


def model_table():
    """benchmarks/model_table.py, which writes the model cards of docs/models.md."""
    return load_script("benchmarks/model_table.py")


REPO = pathlib.Path(__file__).resolve().parents[1]

TINY = dict(width_multiplier=0.125)
CAMPAIGN = ("cnn32", "resnet32", "resnet_init32", "rir32")  # the models of issue 14's campaign
WIDE = ("cnn18_wide", "resnet18_wide", "resnet_init18_wide", "rir18_wide")  # Tables 2 and 3 (the lent GPU's)


def raises(argument, value):
    """pytest.raises for a one-line ValueError ending with "Received: argument=value"."""
    return pytest.raises(ValueError, match=re.escape(f"Received: {argument}={value!r}") + "$")


def raw_images(batch=4, shape=(32, 32, 3), seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(batch, *shape)).astype("float32")


def predict(model, x):
    return ops.convert_to_numpy(model(x, training=False))


def randomized(model, seed=0):
    """``model`` with every variable random (batch-norm variances positive), so equal outputs mean
    equal weights, batch-norm statistics included."""
    rng = np.random.default_rng(seed)
    model.set_weights([(np.abs(rng.normal(size=w.shape)) + 0.5 if "variance" in v.path else
                        0.2 * rng.normal(size=w.shape)).astype("float32")
                       for v, w in zip(model.weights, model.get_weights())])
    return model


def write_entry(store, name, model, options, top1=0.5, test_images=10_000):
    """Ship ``model``'s weights into ``store`` as ``name``'s weights="cifar10", with a full manifest entry."""
    os.makedirs(store, exist_ok=True)
    temporary = os.path.join(store, "new.weights.h5")
    model.save_weights(temporary)
    digest = weights_store.sha256(temporary)
    file = weights_store.file_name(name, "cifar10", digest)
    os.replace(temporary, os.path.join(store, file))
    correct = int(top1 * test_images)
    options = dict(options)
    spec = registry.ModelSpec(name, options, (32, 32, 3), 10, options.pop("preprocessing", "cifar10"))
    entry = {
        "spec": spec.to_dict(), "weights": "cifar10", "file": file, "sha256": digest,
        "dataset": "CIFAR-10 (JPEG copy)", "dataset_sha256": None, "train_split": "train", "train_images": 50_000,
        "split": "test", "test_images": test_images, "classes": list(CIFAR10_CLASSES),
        "top1": correct / test_images, "correct": correct, "top1_flip": None, "correct_flip": None,
        "command": f"rir-keras evaluate --model {name} --weights cifar10 --dataset cifar10",
        "recipe": "fast", "config": {"seed": 0, "epochs": 1}, "epochs": 1, "seed": 0,
        "parameters": model.count_params(), "trainable_parameters": 1, "keras_version": keras.__version__,
        "backend": keras.backend.backend(), "backend_version": "x", "date": "2026-01-01", "machine": "test",
        "training": {},
    }
    manifest = weights_store.read_manifest(store)
    manifest.setdefault(name, {})["cifar10"] = entry
    with open(weights_store.manifest_path(store), "w", encoding="utf-8") as handle:
        json.dump(manifest, handle)
    return entry


@pytest.fixture(scope="module")
def source():
    """The width-reduced RiR-32 the temporary store ships, its weights random."""
    return randomized(RiR32(weight_decay=1e-4, **TINY))


@pytest.fixture(scope="module")
def shipped_store(tmp_path_factory, source):
    store = str(tmp_path_factory.mktemp("store"))
    write_entry(store, "rir32", source, {**TINY, "weight_decay": 1e-4, "preprocessing": "cifar10"})
    return store


@pytest.fixture
def store(shipped_store, monkeypatch):
    monkeypatch.setattr(weights_store, "STORE", shipped_store)
    return shipped_store


@pytest.fixture
def empty_store(tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "manifest.json").write_text("{}")
    monkeypatch.setattr(weights_store, "STORE", str(folder))
    return str(folder)


def test_the_store_is_valid(store):
    assert pretrained.check_manifest() == 1
    assert [entry["spec"]["registry_name"] for entry in weights_store.entries()] == ["rir32"]


def test_loads_and_predicts_as_the_source(store, source):
    x = raw_images()
    expected = predict(source, x)
    for model in (RiR32(weights="cifar10", **TINY), registry.build("rir32", weights="cifar10", **TINY),
                  pretrained.build("rir32")):
        np.testing.assert_array_equal(predict(model, x), expected)


def test_include_top_false_loads_the_body(store, source):
    x = raw_images()
    features = keras.Model(source.input, source.get_layer("avg_pool").output)
    body = RiR32(weights="cifar10", include_top=False, pooling="avg", **TINY)
    assert "logits" not in [layer.name for layer in body.layers]
    np.testing.assert_array_equal(predict(body, x), predict(features, x))
    # classes do not matter without the top; any input size works for the body
    RiR32(weights="cifar10", include_top=False, classes=100, input_shape=(48, 48, 3), **TINY)


def test_without_preprocessing_layer_takes_preprocessed_inputs(store, source):
    x = raw_images()
    model = RiR32(weights="cifar10", include_preprocessing=False, **TINY)
    np.testing.assert_allclose(predict(model, preprocess_input(x, "cifar10")), predict(source, x), rtol=1e-5, atol=1e-6)


def test_wrong_classes_refused(store):
    with raises("classes", 100):
        RiR32(weights="cifar10", classes=100, **TINY)


@pytest.mark.parametrize("option, value", [
    ("identity", "constant"), ("shortcut", "projection"), ("transient_ratio", 0.25), ("width_multiplier", 1.0),
    ("preprocessing", "cifar100"), ("preprocessing", None), ("forget_gate", True),
])
def test_an_option_that_changes_the_function_is_refused(store, option, value):
    with raises(option, value):
        RiR32(weights="cifar10", **{**TINY, option: value})


def test_options_that_only_change_training_are_free(store, source):
    x = raw_images()
    model = RiR32(weights="cifar10", weight_decay=5e-4, kernel_initializer="glorot_uniform", name="mine", **TINY)
    np.testing.assert_array_equal(predict(model, x), predict(source, x))


def test_logits_instead_of_probabilities(store, source):
    x = raw_images()
    logits = RiR32(weights="cifar10", classifier_activation=None, **TINY)
    probabilities = ops.convert_to_numpy(ops.softmax(predict(logits, x)))
    np.testing.assert_allclose(probabilities, predict(source, x), rtol=1e-5, atol=1e-6)


def test_fewer_input_channels_refused(store):
    with raises("input_shape", (32, 32, 1)):
        RiR32(weights="cifar10", input_shape=(32, 32, 1), **TINY)


def test_corrupted_or_missing_file_refused(store, tmp_path, monkeypatch):
    copy = str(tmp_path / "copy")
    shutil.copytree(store, copy)
    monkeypatch.setattr(weights_store, "STORE", copy)
    path = os.path.join(copy, weights_store.entry("rir32")["file"])
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    open(path, "wb").write(bytes(data))
    with pytest.raises(ValueError, match=r"is corrupted: its SHA-256 is [0-9a-f]{64}, the manifest's [0-9a-f]{64}.*"
                                         r"Received: weights='cifar10'$"):
        RiR32(weights="cifar10", **TINY)
    with pytest.raises(ValueError, match="does not have the entry's SHA-256"):
        pretrained.check_manifest()
    os.remove(path)
    with pytest.raises(ValueError, match="is missing"):
        RiR32(weights="cifar10", **TINY)


@pytest.mark.parametrize("name, weights, recipe", [
    *((name, weights, recipe) for name in CAMPAIGN for weights, recipe in (("cifar10", "long or fast"),
                                                                           ("cifar10_paper", "paper"))),
    *((name, weights, "long or fast") for name in WIDE for weights in ("cifar10", "cifar100")),
])
def test_no_entry_yet(empty_store, name, weights, recipe):
    message = (f"weights={weights!r} for {name} are not available yet: its training campaign (recipe {recipe}) "
               f"has not finished (see docs/results.md). Received: weights={weights!r}")
    for build in (registry.record(name).build, lambda weights: pretrained.build(name, weights)):
        with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
            build(weights=weights)


def test_models_without_shipped_weights_refuse_them(empty_store):
    with pytest.raises(ValueError, match="not offered for rir32: only for the registry models cnn18_wide, resnet18_wide, "
                                         "resnet_init18_wide, rir18_wide. Received: weights='cifar100'$"):
        RiR32(weights="cifar100")
    with pytest.raises(ValueError, match="not offered for rir18_wide: only for the registry models cnn32, resnet32, "
                                         "resnet_init32, rir32. Received: weights='cifar10_paper'$"):
        RiR18Wide(weights="cifar10_paper")
    with pytest.raises(ValueError, match="not offered for this constructor.*Received: weights='cifar10'$"):
        RiRNet(blocks_per_stage=(1, 1, 1), widths=(4, 4, 4), weights="cifar10")


@pytest.mark.parametrize("weights", ["imagenet", "CIFAR10", "cifar100_paper"])
def test_unknown_string_refused(empty_store, weights):
    with pytest.raises(ValueError, match=re.escape("None, 'cifar10', 'cifar10_paper', 'cifar100' or the path") + ".*" + re.escape(f"Received: weights={weights!r}") + "$"):
        CNN32(weights=weights, **TINY)


def test_committed_manifest_is_valid():
    """The package's own store: a well-formed manifest (``{}`` until weights ship), every file it
    names present with its SHA-256 and hashed name, and no file without an entry."""
    for store in (str(REPO / "applications" / "weights"), weights_store.STORE):  # the repository's, the installed one
        with open(weights_store.manifest_path(store), encoding="utf-8") as handle:
            assert isinstance(json.load(handle), dict)
        count = pretrained.check_manifest(store)
        for entry in weights_store.entries(store):
            assert weights_store.FILE_PATTERN.match(entry["file"])
            assert entry["spec"]["registry_name"] in CAMPAIGN and entry["seed"] == 0
        assert count == len(weights_store.entries(store))


def test_check_manifest_finds_problems(store, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(store, copy)
    (copy / "stray.weights.h5").write_bytes(b"x")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["rir32"]["cifar10"]["seed"] = 1
    manifest["rir32"]["cifar10"]["file"] = "rir32-cifar10-00000000.weights.h5"
    del manifest["rir32"]["cifar10"]["machine"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="field 'machine' is missing"):
        pretrained.check_manifest(str(copy))
    manifest["rir32"]["cifar10"]["machine"] = "test"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError) as error:
        pretrained.check_manifest(str(copy))
    manifest["rir32"]["cifar10"]["recipe"] = "paper"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError) as error:
        pretrained.check_manifest(str(copy))
    for problem in ("should be named", "only seed 0's weights ship", "stray.weights.h5: in the store without an entry",
                    "recipe 'paper', but 'cifar10' names the weights of long or fast"):
        assert problem in str(error.value)


def test_model_cards_from_the_manifest(store, empty_store, monkeypatch):
    assert "None has shipped yet" in model_table().model_cards(empty_store)
    cards = model_table().model_cards(store)
    assert "### `rir32`, `weights=\"cifar10\"`" in cards and "None has shipped yet" not in cards
    assert ('Still in training (see docs/results.md): `weights="cifar10"` for `cnn32`, `resnet32`, `resnet_init32`, '
            '`cnn18_wide`, `resnet18_wide`, `resnet_init18_wide`, `rir18_wide`; `weights="cifar10_paper"` for `cnn32`, '
            '`resnet32`, `resnet_init32`, `rir32`; `weights="cifar100"` for `cnn18_wide`, `resnet18_wide`, '
            '`resnet_init18_wide`, `rir18_wide`.') in " ".join(cards.split())
    assert ('`RiR18Wide` take `weights="cifar100"` (CIFAR-100, recipe `long` or `fast`)') in " ".join(cards.split())
    assert 'model = RiR32(weights="cifar10")' in cards and "RiR32(weights" not in model_table().model_cards(empty_store)
    assert "rir-keras evaluate --model rir32 --weights cifar10 --dataset cifar10" in cards
    assert all(f"`{field}`" in cards for field in weights_store.ENTRY_FIELDS)


# --------------------------------------------------------------------------- the shipping tool


@pytest.fixture(scope="module")
def ship_weights():
    return load_script("tools/ship_weights.py")


@pytest.fixture(scope="module")
def mini_test(data_dir):
    return datasets.load_split(str(data_dir / "cifar10-png-mini.tar.gz"), "test")


def make_run(folder, model, test_data, seed=0, off_by=0, measure=True, registry_name="rir32", **changes):
    """A finished run folder as ``rir-keras train`` leaves it, its final test accuracy measured on
    ``test_data`` (``off_by`` images wrong, to fake a disagreement)."""
    os.makedirs(folder)
    model.save(os.path.join(folder, "model.keras"))
    correct, images = pretrained.measure(model, test_data, 128) if measure else (0, len(test_data))
    config = {"seed": seed, "epochs": 1, "batch_size": 128}
    results = {
        "spec": registry.ModelSpec(registry_name, {**TINY, "weight_decay": 1e-4}, (32, 32, 3), 10, "cifar10").to_dict(),
        "dataset": "cifar10",
        "config": config, "preprocessing": "cifar10", "test_accuracy": (correct + off_by) / images,
        "test_images": images, "train_images": 50_000, "history": {"epoch": [0], "seconds": [7.0]},
        "backend": keras.backend.backend(), "machine": runs.machine(), "recipe": "fast",
        "parameters": model.count_params(),
        **changes,
    }
    for name, data in (("results.json", results), ("run.json", {"config": config})):
        with open(os.path.join(folder, name), "w", encoding="utf-8") as handle:
            json.dump(data, handle)


def test_ship_weights_tool(tmp_path, ship_weights, mini_test, source, monkeypatch):
    store = str(tmp_path / "weights")
    run = str(tmp_path / "run")
    make_run(run, source, mini_test)
    entry = ship_weights.ship(run, mini_test, store=store)
    assert pretrained.check_manifest(store) == 1
    assert entry["file"] == f"rir32-cifar10-{entry['sha256'][:8]}.weights.h5"
    assert entry["command"] == "rir-keras evaluate --model rir32 --weights cifar10 --dataset cifar10"
    spec = registry.ModelSpec.from_dict(entry["spec"])
    assert spec.options["width_multiplier"] == 0.125 and spec.options["identity"] == "init"  # defaults recorded
    assert spec.preprocessing == "cifar10" and spec.classes == 10 and spec.input_shape == (32, 32, 3)
    assert entry["seed"] == 0 and entry["recipe"] == "fast"
    assert entry["test_images"] == len(mini_test) and entry["top1"] == entry["correct"] / len(mini_test)
    flipped = test_time.flip_averaged(source).predict(mini_test.images.astype("float32"), verbose=0)
    assert entry["correct_flip"] == int(np.sum(flipped.argmax(axis=1) == mini_test.labels))  # beside top1
    assert entry["top1_flip"] == entry["correct_flip"] / len(mini_test)
    with h5py.File(os.path.join(store, entry["file"]), "r") as file:
        assert "optimizer" not in file  # weights only
    monkeypatch.setattr(weights_store, "STORE", store)
    x = raw_images()
    np.testing.assert_array_equal(predict(pretrained.build("rir32"), x), predict(source, x))
    with pytest.raises(ship_weights.ShipError, match="--replace"):
        ship_weights.ship(run, mini_test, store=store)


def test_ship_weights_ranks_recipes_and_checks_the_data(tmp_path, ship_weights, mini_test, source):
    """`long` and `fast` both ship as "cifar10": long replaces fast, never the other way round; a
    run ships only measured on the data it trained on (by SHA-256)."""
    store = str(tmp_path / "weights")
    digest = "a" * 64  # the official archive's SHA-256, as ship_weights.main measures it
    for recipe in ("fast", "long"):
        make_run(str(tmp_path / recipe), source, mini_test, recipe=recipe,
                 data={"file": "cifar10-webp.tar.gz", "sha256": digest})
    make_run(str(tmp_path / "jpeg"), source, mini_test, data={"file": "cifar10-jpeg.tar.gz", "sha256": "b" * 64})
    with pytest.raises(ship_weights.ShipError, match="'cifar10-jpeg.tar.gz'.*not on the data measured on"):
        ship_weights.ship(str(tmp_path / "jpeg"), mini_test, store=store, dataset_sha256=digest)
    assert ship_weights.ship(str(tmp_path / "fast"), mini_test, store=store, dataset_sha256=digest)["recipe"] == "fast"
    entry = ship_weights.ship(str(tmp_path / "long"), mini_test, store=store, dataset_sha256=digest, replace=True)
    assert entry["weights"] == "cifar10" and entry["recipe"] == "long"
    with pytest.raises(ship_weights.ShipError, match="'long' recipe, which ranks before 'fast'"):
        ship_weights.ship(str(tmp_path / "fast"), mini_test, store=store, dataset_sha256=digest, replace=True)
    assert weights_store.entry("rir32", store=store)["recipe"] == "long" and pretrained.check_manifest(store) == 1


def test_ship_weights_names_weights_after_the_recipe(tmp_path, ship_weights, mini_test, source, monkeypatch):
    """A `paper` run ships as weights="cifar10_paper", beside the `fast` run's "cifar10"; a run
    evaluated by another backend or machine, or in mixed precision, ships when it scores within that
    case's tolerance, and its entry keeps the run's own count."""
    store = str(tmp_path / "weights")
    make_run(str(tmp_path / "fast"), source, mini_test)
    make_run(str(tmp_path / "paper"), source, mini_test, off_by=2, recipe="paper", backend="jax",
             machine="NVIDIA H200")
    ship_weights.ship(str(tmp_path / "fast"), mini_test, store=store)
    with pytest.raises(ship_weights.ShipError, match=r"\(jax on NVIDIA H200, float32; 0 may differ\): nothing shipped"):
        ship_weights.ship(str(tmp_path / "paper"), mini_test, store=store)  # 0.05% of 200 images: none
    monkeypatch.setattr(ship_weights, "ENGINE_TOLERANCE", 2 / len(mini_test))
    entry = ship_weights.ship(str(tmp_path / "paper"), mini_test, store=store)
    assert entry["weights"] == "cifar10_paper" and entry["recipe"] == "paper"
    assert entry["file"].startswith("rir32-cifar10_paper-") and entry["training"]["correct"] == entry["correct"] + 2
    assert entry["command"] == "rir-keras evaluate --model rir32 --weights cifar10_paper --dataset cifar10"
    assert pretrained.check_manifest(store) == 2
    monkeypatch.setattr(weights_store, "STORE", store)
    x = raw_images()
    np.testing.assert_array_equal(predict(RiR32(weights="cifar10_paper", **TINY), x), predict(source, x))
    assert "its own final evaluation there: " in model_table().model_cards(store)
    make_run(str(tmp_path / "same"), source, mini_test, off_by=1, recipe="paper")  # this engine: exact
    with pytest.raises(ship_weights.ShipError, match="float32; 0 may differ"):
        ship_weights.ship(str(tmp_path / "same"), mini_test, store=store, replace=True)
    # A run that evaluated itself in bfloat16, on this engine, measured here in float32: its own tolerance.
    make_run(str(tmp_path / "bf16"), source, mini_test, off_by=2, recipe="paper", precision="mixed_bfloat16")
    with pytest.raises(ship_weights.ShipError, match="mixed_bfloat16; 0 may differ"):  # 0.2% of 200 images: none
        ship_weights.ship(str(tmp_path / "bf16"), mini_test, store=store, replace=True)
    monkeypatch.setattr(ship_weights, "LOW_PRECISION_TOLERANCE", 2 / len(mini_test))
    entry = ship_weights.ship(str(tmp_path / "bf16"), mini_test, store=store, replace=True)
    assert entry["training"]["precision"] == "mixed_bfloat16" and entry["training"]["correct"] == entry["correct"] + 2


@pytest.mark.parametrize("problem, kwargs, message", [
    ("another seed", dict(seed=1), "only seed 0's final weights ship"),
    ("a hand-set recipe", dict(recipe=None), "only named recipes ship"),
    ("a different accuracy", dict(off_by=1), "nothing shipped"),
    ("a model without weights='cifar10'", dict(registry_name="rir18_wide_forget"), "offered for cnn32"),
    ("other data", dict(dataset="data/cifar10-png-mini.tar.gz"), "not the full CIFAR-10"),
    ("a test subset", dict(test_images=100), "on the full test split"),
    ("a run still going", dict(backup=True), "has not finished"),
])
def test_ship_weights_refuses(tmp_path, ship_weights, mini_test, source, problem, kwargs, message):
    store = str(tmp_path / "weights")
    run = str(tmp_path / "run")
    backup = kwargs.pop("backup", False)
    make_run(run, source, mini_test, measure="off_by" in kwargs, **kwargs)  # the others fail before measuring
    if backup:
        os.makedirs(os.path.join(run, "backup"))
    with pytest.raises(ship_weights.ShipError, match=message):
        ship_weights.ship(run, mini_test, store=store)
    assert weights_store.read_manifest(store) == {}  # nothing written
    assert not os.path.isdir(store) or os.listdir(store) == []


def test_ship_weights_takes_a_wide_run_on_cifar100_from_its_weights_alone(tmp_path, ship_weights, data_dir,
                                                                       monkeypatch, capsys):
    """A finished 18-layer-wide GPU run whose weights came back alone (model.weights.h5, no model.keras)
    ships as weights="cifar100", measured on the CIFAR-100 test split with the class names of the data;
    the same checks as Table 1's (here: the data by SHA-256, the weights name's data)."""
    test = datasets.load_split(str(data_dir.parent / "cifar100" / "cifar100-mini.tar.gz"), "test")
    assert list(test.class_names) == weights_store.WEIGHTS_NAMES["cifar100"]["classes"]
    options = {**TINY, "weight_decay": 1e-4}
    wide = randomized(RiR18Wide(classes=100, preprocessing="cifar100", **options))
    run, store, digest = tmp_path / "run", str(tmp_path / "weights"), "c" * 64
    spec = registry.ModelSpec("rir18_wide", options, (32, 32, 3), 100, "cifar100").to_dict()
    alone = str(tmp_path / "model.weights.h5")
    wide.save_weights(alone)  # as the GPU runner writes it: uncompiled (measuring compiles the model)
    make_run(str(run), wide, test, spec=spec, dataset="cifar100", preprocessing="cifar100",
             data={"file": "cifar100-webp.tar.gz", "sha256": digest})
    (run / "model.keras").unlink()
    with pytest.raises(ship_weights.ShipError, match="holds no model.keras or model.weights.h5"):
        ship_weights.ship(str(run), test, store=store, dataset_sha256=digest)
    shutil.move(alone, run / "model.weights.h5")
    with pytest.raises(ship_weights.ShipError, match="not on the data measured on"):
        ship_weights.ship(str(run), test, store=store, dataset_sha256="d" * 64)
    entry = ship_weights.ship(str(run), test, store=store, dataset="cifar100", dataset_sha256=digest)
    assert entry["weights"] == "cifar100" and entry["dataset"] == "CIFAR-100" and entry["classes"] == list(test.class_names)
    assert entry["command"] == "rir-keras evaluate --model rir18_wide --weights cifar100 --dataset cifar100"
    assert entry["file"].startswith("rir18_wide-cifar100-") and pretrained.check_manifest(store) == 1
    monkeypatch.setattr(weights_store, "STORE", store)
    x = raw_images()
    np.testing.assert_array_equal(predict(RiR18Wide(weights="cifar100", classes=100, preprocessing="cifar100", **TINY), x),
                                  predict(wide, x))
    assert 'model = RiR18Wide(weights="cifar100", classes=100, preprocessing=\'cifar100\')' in model_table().model_cards(store)
    with pytest.raises(ValueError, match="not available yet.*Received: weights='cifar10'$"):
        RiR18Wide(weights="cifar10", **TINY)  # its CIFAR-10 run has not shipped
    paper = tmp_path / "paper"
    make_run(str(paper), wide, test, measure=False, spec=spec, dataset="cifar100", recipe="paper")
    with pytest.raises(ship_weights.ShipError, match="recipe is 'paper' on 'cifar100': only named recipes ship, on their data"):
        ship_weights.ship(str(paper), test, store=store)
    monkeypatch.setenv("RIR_KERAS_DATA", str(data_dir))  # CIFAR-10's folder: no CIFAR-100 archive
    with pytest.raises(SystemExit):
        ship_weights.main([str(run), "--store", store])
    assert ("--dataset must resolve to cifar100-webp.tar.gz or cifar100-png.tar.gz, the official CIFAR-100 "
            "(weights='cifar100'); it resolves to 'tfds:cifar100'. Received: --dataset='cifar100'") in capsys.readouterr().err


def test_docs_carry_the_model_cards():
    """docs/models.md holds the section `benchmarks/model_table.py --cards` writes from the manifest."""
    text = (REPO / "docs" / "models.md").read_text(encoding="utf-8")
    assert model_table().model_cards() in text, "regenerate it: .venv/bin/python benchmarks/model_table.py --cards --output docs/models.md"


def test_model_table_writes_the_cards_in_place(tmp_path):
    model_table = load_script("benchmarks/model_table.py")
    doc = tmp_path / "models.md"
    doc.write_text("# Models\n\n## Shipped weights (model cards)\n\nold cards\n\n## Options\n\nkept\n")
    model_table.replace_section(str(doc), "## Shipped weights (model cards)\n\nnew cards\n")
    assert doc.read_text() == "# Models\n\n## Shipped weights (model cards)\n\nnew cards\n\n## Options\n\nkept\n"
    with pytest.raises(SystemExit, match="has no line '## Elsewhere'"):
        model_table.replace_section(str(doc), "## Elsewhere\n")


def test_cli_evaluates_shipped_weights(store, source, data_dir, monkeypatch, capsys):
    from rir_keras.commands.main import main

    monkeypatch.setenv("RIR_KERAS_DATA", str(data_dir))
    assert main(["evaluate", "--model", "rir32", "--weights", "cifar10", "--dataset", "cifar10-png-mini",
                 "--limit", "32"]) == 0
    report = json.loads(capsys.readouterr().out)
    test = datasets.load_split(data_dir / "cifar10-png-mini.tar.gz", "test")
    chosen = np.sort(np.random.default_rng(0).permutation(len(test))[:32])  # evaluate's --limit subset
    predicted = np.argmax(predict(source, test.images[chosen].astype("float32")), axis=-1)
    assert report["images"] == 32 and report["model"] == "rir32"
    assert report["correct"] == int(np.sum(predicted == test.labels[chosen]))


def test_cli_analyzes_shipped_weights(store, source, tmp_path, capsys):
    """`analyze --model NAME --weights W` reads the shipped weights: the source model's quadrant norms."""
    from rir_keras import analysis
    from rir_keras.commands.main import main

    assert main(["analyze", "--model", "rir32", "--weights", "cifar10", "--norms-only", "--output", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "analysis.json").read_text())
    assert report["shipped_weights"] == {"model": "rir32", "weights": "cifar10"} and "model_file" not in report
    expected = analysis.analyze(source)["layers"]
    assert [row["name"] for row in report["layers"]] == [row["name"] for row in expected]
    for row, want in zip(report["layers"], expected):
        assert row["rr_with_identity"] == pytest.approx(want["rr_with_identity"], rel=1e-6)
        assert row["mm"] == pytest.approx(want["mm"], rel=1e-6)
    capsys.readouterr()
    assert main(["analyze", "model.keras", "--model", "rir32", "--norms-only"]) == 2
    assert "analyze takes a model file or --model NAME --weights DATASET, one of the two" in capsys.readouterr().err
    assert main(["analyze", "model.keras", "--weights", "cifar10", "--norms-only"]) == 2
    assert "--weights names the shipped weights of a --model: drop --weights" in capsys.readouterr().err


def test_cli_evaluate_names_what_is_missing(empty_store, capsys):
    from rir_keras.commands.main import main

    assert main(["evaluate", "--model", "rir32", "--dataset", "cifar10-png-mini"]) == 2
    assert "not available yet" in capsys.readouterr().err
    assert main(["evaluate", "model.keras", "--model", "rir32", "--dataset", "cifar10-png-mini"]) == 2
    assert "one of the two" in capsys.readouterr().err


SHIPPED = [(entry["spec"]["registry_name"], entry["weights"])
           for entry in weights_store.entries(str(REPO / "applications" / "weights"))]


@pytest.mark.parametrize("name, weights",
                         SHIPPED or [pytest.param(None, None, marks=pytest.mark.skip(reason="no weights shipped yet"))])
def test_shipped_weights_classify_as_their_entry_says(name, weights, data_dir):
    """The package's own files, loaded through ``weights=NAME``: on the 200 images of the mini
    test split (20 per class, all in the full test split the entry was measured on) the model scores
    its entry's top-1 within four binomial standard deviations. Untrained or misloaded weights
    score about 10%."""
    entry = weights_store.entry(name, weights)
    model = registry.record(name).build(weights=weights)
    correct, images = pretrained.measure(model, datasets.load_split(data_dir / "cifar10-png-mini.tar.gz", "test"))
    top1 = entry["top1"]
    assert entry["test_images"] == 10_000 and images == 200
    assert abs(correct / images - top1) <= 4 * np.sqrt(top1 * (1 - top1) / images), (correct, top1)


def test_the_wheel_carries_the_store(tmp_path):
    """A non-editable install gets the manifest and every weights file it names: the wheel built
    from this repository holds them where `weights_store.STORE` looks."""
    offline = importlib.util.find_spec("setuptools") and importlib.util.find_spec("wheel")
    isolation = ["--no-build-isolation"] if offline else []  # else pip fetches setuptools to build
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", *isolation, str(REPO),
                            "--wheel-dir", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    names = set(zipfile.ZipFile(next(tmp_path.glob("rir_keras-*.whl"))).namelist())
    store = "rir_keras/applications/weights/"
    shipped = {store + entry["file"] for entry in weights_store.entries(str(REPO / "applications" / "weights"))}
    assert {store + "manifest.json", *shipped} <= names
