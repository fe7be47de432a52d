"""The applications, tested the way Keras tests keras.applications: every registry model with and
without top, pooling modes, input tensors and shapes, serialization, errors; plus the paper's
parameter invariants ("no added cost") and the behaviour of ResNet Init in a whole network.

Forward passes run on width-reduced models; full-size models are only built to count parameters.
"""
import functools
import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import ops

from rir_keras.applications import (
    AllCNNC, CNN32, ModelSpec, ResNet32, ResNetInit32, RiR18Wide, RiR32, RiRNet, build, names, record,
)
from rir_keras.applications.registry import group_members
from rir_keras.applications.weights_store import shipping
from rir_keras import preprocessing as preprocessing_lib
from rir_keras.preprocessing import (
    CIFAR10_CLASSES, CIFAR100_CLASSES, decode_predictions, preprocess_input, statistics,
)

TINY = dict(width_multiplier=0.125)
PLACEMENTS = ("init", "constant", "shortcut")


def small_rir(**kwargs):
    """A 3-stage RiR of one block per stage: the cheapest model with every kind of layer."""
    return RiRNet(blocks_per_stage=(1, 1, 1), widths=(8, 8, 16), **kwargs)


def images(shape=(32, 32, 3), batch=2, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, *shape)).astype("float32")


def raw_images(shape=(32, 32, 3), batch=2, seed=0):
    """Images as the models take them: float32 pixel values in [0, 255]."""
    return np.random.default_rng(seed).integers(0, 256, size=(batch, *shape)).astype("float32")


def predict(model, x):
    return ops.convert_to_numpy(model(x, training=False))


def raises(argument, value):
    """pytest.raises for a ValueError whose message ends with "Received: argument=value"."""
    return pytest.raises(ValueError, match=re.escape(f"Received: {argument}={value!r}") + "$")


@functools.lru_cache(maxsize=None)
def parameters(name, **kwargs):
    """(total, trainable) parameter counts of the full-size registry model ``name``."""
    model = build(name, **kwargs)
    trainable = sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
    return model.count_params(), trainable


def blocks(stem, widths, blocks_per_stage):
    """(input channels, output channels) of every block, in order."""
    channels = [stem]
    for width, count in zip(widths, blocks_per_stage):
        channels += [width] * count
    return list(zip(channels[:-1], channels[1:]))


THIRTY_TWO = blocks(16, (16, 32, 64), (5, 5, 5))
WIDE = blocks(96, (96, 192, 384), (2, 3, 3))


# -- registry -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", names())
def test_every_registry_model_builds_with_and_without_top(name):
    model = build(name, **TINY)
    assert model.name == name
    assert model.output.shape == (None, 10)
    probabilities = predict(model, images())
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)

    features = build(name, include_top=False, **TINY)
    assert len(features.output.shape) == 4
    assert "logits" not in [layer.name for layer in features.layers]
    assert features.count_params() < model.count_params()


def test_registry_records_and_lookup():
    assert record("rir32").constructor is RiR32 and record("rir32").group == "32"
    assert group_members("32") == ("cnn32", "resnet32", "resnet_init32", "rir32")  # Table 1's order
    assert shipping("cifar10") == ("cnn32", "resnet32", "resnet_init32", "rir32", "cnn18_wide", "resnet18_wide",
                                   "resnet_init18_wide", "rir18_wide")
    assert shipping("cifar10_paper") == ("cnn32", "resnet32", "resnet_init32", "rir32")
    assert shipping("cifar100") == ("cnn18_wide", "resnet18_wide", "resnet_init18_wide", "rir18_wide")
    forget = record("rir32_forget")
    assert forget.call() == "RiR32(forget_gate=True)" and forget.source.startswith("Table 6")
    assert build("rir32_forget", **TINY).name == "rir32_forget"
    assert record("rir32").cite("cifar10") == "92.97 (Table 1, 6)" and record("rir18_wide").reported("cifar100") == [(3, 77.10)]
    assert record("rir18_wide").preprocessing == "cifar10" and record("rir18_wide").classes == 10
    assert build("resnet32", classes=3, **TINY).output.shape == (None, 3)
    with raises("model", "resnet50"):
        record("resnet50")
    with raises("model", "resnet50"):
        build("resnet50")
    with pytest.raises(ValueError, match="does not take one of these options: \\['depth'\\]"):
        build("rir32", depth=3)


def test_model_spec_round_trip():
    """A spec written to JSON and read back rebuilds the same model, weights loadable layer for layer."""
    spec = ModelSpec.of("rir_3x10", {"width_multiplier": 0.25, "preprocessing": ([120.0], [60.0])}, (16, 16, 3), 7)
    again = ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and again.preprocessing == ([120.0], [60.0])
    first, second = spec.build(), again.build()
    second.set_weights(first.get_weights())
    x = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(predict(second, x), predict(first, x), rtol=1e-6)
    assert first.output.shape == (None, 7) and first.name == "rir_3x10"
    assert ModelSpec.of("rir32", {}, (32, 32, 3), 10).preprocessing == "cifar10"  # the record's default
    with pytest.raises(ValueError, match="Received: spec=\\['classes', 'registry_name'\\]"):
        ModelSpec.from_dict({"registry_name": "rir32", "classes": 10})
    with raises("model", "nope"):
        ModelSpec.from_dict({**spec.to_dict(), "registry_name": "nope"})


@pytest.mark.parametrize("name, options", [
    ("rir32", dict(shortcut="projection")), ("rir18_wide_forget", dict(shortcut="projection")),
    ("all_cnn_c_resnet_init", {}), ("rir_6x5", {}),
])
def test_layer_names_are_deterministic(name, options):
    first, second = ([layer.name for layer in build(name, **options, **TINY).layers] for _ in range(2))
    assert first == second  # Keras' automatic names would count up between the two builds
    assert len(set(first)) == len(first)


# -- keras.applications conventions ---------------------------------------------------------------

@pytest.mark.parametrize("make, spatial", [(small_rir, 8), (functools.partial(AllCNNC, **TINY), 6)])
def test_pooling_modes(make, spatial):
    feature_map = make(include_top=False, pooling=None)
    averaged = make(include_top=False, pooling="avg")
    maximum = make(include_top=False, pooling="max")
    channels = feature_map.output.shape[-1]
    assert feature_map.output.shape == (None, spatial, spatial, channels)
    assert averaged.output.shape == maximum.output.shape == (None, channels)
    for pooled in (averaged, maximum):  # pooling adds no weights: share them to compare outputs
        pooled.set_weights(feature_map.get_weights())
    x = images()
    features = predict(feature_map, x)
    np.testing.assert_allclose(predict(averaged, x), features.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(predict(maximum, x), features.max(axis=(1, 2)), rtol=1e-5, atol=1e-6)


def test_input_tensor_becomes_the_model_input():
    image = keras.Input((32, 32, 3))
    model = RiR32(input_tensor=image, **TINY)
    assert model.inputs[0] is image
    assert model.output.shape == (None, 10)

    raw = keras.Input((24, 24, 3))
    scaled = keras.layers.Rescaling(1 / 255.0)(raw)
    model = small_rir(input_tensor=scaled, include_top=False)
    assert model.inputs[0] is raw  # the tensor's source input, as keras.applications do
    assert model.output.shape == (None, 6, 6, 16)


@pytest.mark.parametrize("shape", [(40, 40, 3), (16, 16, 3), (32, 32, 1), (32, 32, 4), (4, 4, 3)])
def test_non_default_input_shapes(shape):
    # CIFAR statistics are for 3 channels: other inputs give their own, or none.
    options = {} if shape[-1] == 3 else dict(preprocessing=((127.5,), (64.0,)))
    model = RiR32(input_shape=shape, **options, **TINY)
    assert predict(model, images(shape)).shape == (2, 10)
    features = small_rir(input_shape=shape, include_top=False, preprocessing=None if shape[-1] != 3 else "cifar10")
    side = -(-shape[0] // 4)
    assert features.output.shape == (None, side, side, 16)


def test_variable_input_size():
    model = small_rir(input_shape=(None, None, 3))
    for side in (16, 40):
        assert predict(model, images((side, side, 3))).shape == (2, 10)


@pytest.mark.parametrize("shape", [(9, 9, 3), (32, 32, 1), (40, 40, 4)])
def test_all_cnn_c_input_shapes(shape):
    model = AllCNNC(input_shape=shape, resnet_init=True, include_preprocessing=shape[-1] == 3, **TINY)
    assert predict(model, images(shape)).shape == (2, 10)


@pytest.mark.parametrize("make", [RiR32, RiR18Wide])
def test_classifier_activation_none_gives_logits(make):
    probabilities = make(**TINY)
    logits = make(classifier_activation=None, **TINY)
    logits.set_weights(probabilities.get_weights())
    x = images()
    scores = predict(logits, x)
    assert not np.allclose(scores.sum(axis=1), 1.0)
    np.testing.assert_allclose(ops.convert_to_numpy(ops.softmax(scores)), predict(probabilities, x), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["rir32", "rir18_wide", "all_cnn_c"])
def test_classes_changes_the_head(name):
    ten = build(name, **TINY)
    hundred = build(name, classes=100, **TINY)
    assert hundred.output.shape == (None, 100)
    assert predict(hundred, images()).shape == (2, 100)
    if name == "all_cnn_c":  # its class convolution has batch norm (4 per class) instead of a bias
        head_inputs, per_class = ten.get_layer("logits_conv").input.shape[-1], 4
    else:
        head_inputs, per_class = ten.get_layer("logits").input.shape[-1], 1
    assert hundred.count_params() - ten.count_params() == (head_inputs + per_class) * 90


# -- serialization --------------------------------------------------------------------------------

# One model of each family, with options that give its layers extra weights and config entries.
FAMILIES = {
    "rir32": dict(shortcut="projection", identity="constant"),
    "rir18_wide": dict(shortcut="projection", identity="shortcut"),
    "all_cnn_c_resnet_init": dict(identity="constant"),
    "rir32_forget": dict(weight_decay=1e-4),
    "rir_3x10": dict(transient_ratio=0.25),
}


@pytest.mark.parametrize("name", FAMILIES)
def test_keras_file_round_trip(name, tmp_path):
    model = build(name, **FAMILIES[name], **TINY)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = images()
    np.testing.assert_array_equal(predict(loaded, x), predict(model, x))
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]


@pytest.mark.parametrize("name", FAMILIES)
def test_config_round_trip(name):
    model = build(name, **FAMILIES[name], **TINY)
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    x = images()
    np.testing.assert_array_equal(predict(clone, x), predict(model, x))


def test_weights_path_loads_the_same_predictions(tmp_path):
    model = small_rir(forget_gate=True)
    x = images()
    for path in (tmp_path / "small.weights.h5", tmp_path / "small.keras"):
        model.save_weights(path) if path.suffix == ".h5" else model.save(path)
        reloaded = small_rir(forget_gate=True, weights=str(path))
        np.testing.assert_array_equal(predict(reloaded, x), predict(model, x))


# -- the paper's invariants -----------------------------------------------------------------------

def test_resnet32_has_the_published_parameter_count():
    _, trainable = parameters("resnet32")
    assert abs(trainable / 0.46e6 - 1) < 0.01  # He et al. (2016), Table 6: 0.46M


def test_rir18_wide_has_the_reported_parameter_count():
    total, trainable = parameters("rir18_wide")
    assert abs(total / 9.5e6 - 1) < 0.02 and abs(trainable / 9.5e6 - 1) < 0.02


@pytest.mark.parametrize("family", ["32", "18_wide"])
@pytest.mark.parametrize("identity", PLACEMENTS)
def test_generalized_layers_add_no_parameters(family, identity):
    cnn, resnet, resnet_init, rir = (f"{architecture}{family}" for architecture in ("cnn", "resnet", "resnet_init", "rir"))
    assert parameters(resnet) == parameters(cnn)  # identity shortcuts hold no weights
    assert parameters(resnet_init, identity=identity) == parameters(cnn)
    assert parameters(rir, identity=identity) == parameters(resnet)


def projection_cost(pairs):
    """(total, trainable) of a 1x1 projection + batch norm per downsampling block."""
    kernels = sum(c_in * c_out for c_in, c_out in pairs)
    norms = sum(c_out for _, c_out in pairs)
    return kernels + 4 * norms, kernels + 2 * norms  # gamma, beta trainable; moving mean, variance not


def difference(a, b):
    return tuple(x - y for x, y in zip(a, b))


def test_projection_shortcuts_add_a_projection_per_downsampling_block():
    downsampling = [(16, 32), (32, 64)]  # the first blocks of stages 2 and 3
    assert difference(parameters("resnet32", shortcut="projection"), parameters("resnet32")) == \
        projection_cost(downsampling)
    # RiR projects the residual half only; under "init" each layer's projection is its own kernel.
    residual = [(c_in // 2, c_out // 2) for c_in, c_out in downsampling]
    assert difference(parameters("rir32", shortcut="projection"), parameters("rir32")) == projection_cost(residual)
    # Under "constant", the strided first layer of those blocks learns an r_in x r_out matrix too.
    total, trainable = projection_cost(residual)
    matrices = sum(r_in * r_out for r_in, r_out in residual)
    assert difference(parameters("rir32", shortcut="projection", identity="constant"),
                      parameters("rir32", identity="constant")) == (total + matrices, trainable + matrices)


def gate_cost(pairs, share):
    """Parameters of one 1x1 gate convolution (with bias) per block, gating ``share`` of its output."""
    return sum(c_in * int(c_out * share) + int(c_out * share) for c_in, c_out in pairs)


@pytest.mark.parametrize("name, pairs, share", [
    ("resnet32", THIRTY_TWO, 1.0), ("rir32", THIRTY_TWO, 0.5), ("rir18_wide", WIDE, 0.5),
])
def test_forget_gates_add_exactly_their_gate_convolutions(name, pairs, share):
    expected = gate_cost(pairs, share)
    assert difference(parameters(f"{name}_forget"), parameters(name)) == (expected, expected)


# -- errors ---------------------------------------------------------------------------------------

def test_argument_errors():
    with raises("pooling", "sum"):
        small_rir(include_top=False, pooling="sum")
    for classes in (0, -3, 2.5):
        with raises("classes", classes):
            small_rir(classes=classes)
    with raises("input_shape", (2, 2, 3)):
        RiR32(input_shape=(2, 2, 3), **TINY)
    with raises("input_shape", (2, 2, 3)):
        CNN32(input_tensor=keras.Input((2, 2, 3)), **TINY)
    with raises("input_shape", (8, 8, 3)):
        AllCNNC(input_shape=(8, 8, 3), **TINY)
    with raises("architecture", "densenet"):
        RiRNet(architecture="densenet")
    for multiplier in (0, -1.0, "wide"):
        with raises("width_multiplier", multiplier):
            RiR32(width_multiplier=multiplier)
    for constructor in (CNN32, ResNetInit32, functools.partial(RiRNet, architecture="cnn")):
        with raises("forget_gate", True):
            constructor(forget_gate=True, **TINY)


def test_weights_errors(tmp_path):
    missing = str(tmp_path / "missing.weights.h5")
    with raises("weights", missing):
        small_rir(weights=missing)
    with raises("weights", 3):
        small_rir(weights=3)
    # Weights of other models: another layer structure, a deeper model, another head.
    for name, other in (("rir32", ResNet32(**TINY)), ("deeper", RiRNet((1, 1, 2), widths=(8, 8, 16))),
                        ("cifar100", small_rir(classes=100))):
        for suffix in (".weights.h5", ".keras"):
            path = str(tmp_path / f"{name}{suffix}")
            other.save_weights(path) if suffix == ".weights.h5" else other.save(path)
            with raises("weights", path):
                small_rir(weights=path)
    # A weights file of a wider model says which shapes differ, the file's against the model's.
    wider = str(tmp_path / "wider.weights.h5")
    small_rir(width_multiplier=2).save_weights(wider)
    with pytest.raises(ValueError, match=r"shapes only in the file: \[\(.*only in the model: \[\("):
        small_rir(weights=wider)


# -- preprocessing and decoding -------------------------------------------------------------------

@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_preprocess_input_normalizes_by_the_dataset_statistics(dataset):
    mean, std = statistics(dataset)
    mean_image = np.broadcast_to(mean, (2, 4, 4, 3)).copy()
    for x in (mean_image, ops.convert_to_tensor(mean_image)):
        normalized = preprocess_input(x, preprocessing=dataset)
        assert normalized.dtype == "float32"
        np.testing.assert_allclose(ops.convert_to_numpy(normalized), 0.0, atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(preprocess_input(mean_image + std, dataset)), 1.0, rtol=1e-5)
    uint8 = np.full((1, 2, 2, 3), 255, dtype="uint8")
    np.testing.assert_allclose(ops.convert_to_numpy(preprocess_input(uint8, dataset))[0, 0, 0], (255 - mean) / std,
                               rtol=1e-5)


def test_preprocess_input_takes_every_preprocessing_value():
    x = raw_images((4, 4, 3))
    pair = ((100.0, 110.0, 120.0), (50.0, 60.0, 70.0))
    np.testing.assert_allclose(ops.convert_to_numpy(preprocess_input(x, pair)),
                               (x - np.float32(pair[0])) / np.float32(pair[1]), rtol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(preprocess_input(x, (128.0, 64.0))), (x - 128) / 64, rtol=1e-6)
    np.testing.assert_array_equal(ops.convert_to_numpy(preprocess_input(x.astype("uint8"), None)), x)
    with raises("preprocessing", "cifar10"):
        preprocess_input(raw_images((4, 4, 1)))  # 3 channels of statistics for 1 channel


# -- the preprocessing layer: models take raw images -----------------------------------------------

@pytest.mark.parametrize("name", names())
def test_include_preprocessing_equals_preprocess_input_outside(name):
    inside = build(name, **TINY)
    outside = build(name, include_preprocessing=False, **TINY)
    layers = [layer.name for layer in inside.layers]
    assert layers[1] == "preprocessing" and isinstance(inside.layers[1], keras.layers.Normalization)
    assert "preprocessing" not in [layer.name for layer in outside.layers]
    assert inside.count_params() == outside.count_params()  # statistics are constants, not weights
    outside.set_weights(inside.get_weights())
    x = raw_images()
    np.testing.assert_allclose(predict(inside, x), predict(outside, preprocess_input(x)), rtol=1e-5, atol=1e-6)


def test_cifar100_statistics_differ():
    # Logits: an untrained softmax could saturate and hide the difference.
    cifar10 = small_rir(classifier_activation=None)
    cifar100 = small_rir(classifier_activation=None, preprocessing="cifar100")
    outside = small_rir(classifier_activation=None, include_preprocessing=False)
    for model in (cifar100, outside):
        model.set_weights(cifar10.get_weights())
    x = raw_images()
    np.testing.assert_allclose(predict(cifar100, x), predict(outside, preprocess_input(x, "cifar100")),
                               rtol=1e-5, atol=1e-5)
    assert np.abs(predict(cifar100, x) - predict(cifar10, x)).max() > 1e-3
    assert preprocessing_lib.model_preprocessing(cifar10) == "cifar10"
    assert preprocessing_lib.model_preprocessing(cifar100) == "cifar100"
    assert preprocessing_lib.model_preprocessing(outside) is None


def test_no_preprocessing_layer_without_statistics():
    for model in (small_rir(preprocessing=None), small_rir(include_preprocessing=False, preprocessing="cifar100")):
        assert not [layer for layer in model.layers if isinstance(layer, keras.layers.Normalization)]
        assert preprocessing_lib.model_preprocessing(model) is None
    x = raw_images()
    plain = small_rir(preprocessing=None)
    normalizing = small_rir()
    normalizing.set_weights(plain.get_weights())
    np.testing.assert_allclose(predict(plain, preprocess_input(x)), predict(normalizing, x), rtol=1e-5, atol=1e-6)


def test_feature_extractors_keep_the_preprocessing_layer():
    features = small_rir(include_top=False, pooling="avg")
    assert features.layers[1].name == "preprocessing"
    outside = small_rir(include_top=False, pooling="avg", include_preprocessing=False)
    outside.set_weights(features.get_weights())
    x = raw_images()
    np.testing.assert_allclose(predict(features, x), predict(outside, preprocess_input(x)), rtol=1e-5, atol=1e-6)
    tensor = keras.Input((32, 32, 3))
    model = small_rir(input_tensor=tensor)
    assert model.inputs[0] is tensor and model.layers[1].name == "preprocessing"


def test_preprocessing_layer_computes_in_float32_under_mixed_precision():
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = small_rir()
    finally:
        keras.mixed_precision.set_global_policy(policy)
    layer = model.get_layer("preprocessing")
    assert layer.compute_dtype == "float32" and layer.output.dtype == "float32"
    assert model.get_layer("stem_conv").compute_dtype == "float16"


PAIR = ((125.0, 120.0, 110.0), (60.0, 62.0, 64.0))
# Loads a .keras file in a fresh interpreter (the backend named by KERAS_BACKEND) and predicts.
PREDICT_SCRIPT = """
import json, sys
import numpy as np
import keras
import rir_keras  # registers the layers
from rir_keras.preprocessing import model_preprocessing
model = keras.saving.load_model(sys.argv[1])
np.save(sys.argv[3], keras.ops.convert_to_numpy(model(np.load(sys.argv[2]), training=False)))
print(json.dumps({"backend": keras.backend.backend(), "preprocessing": model_preprocessing(model)}))
"""


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_mean_std_pair_survives_a_keras_file_in_a_fresh_process(backend, tmp_path):
    if backend == "jax":
        pytest.importorskip("jax")
    model = small_rir(preprocessing=PAIR, classifier_activation=None)
    outside = small_rir(include_preprocessing=False, classifier_activation=None)
    outside.set_weights(model.get_weights())
    x = raw_images()
    expected = predict(outside, (x - np.float32(PAIR[0])) / np.float32(PAIR[1]))
    np.testing.assert_allclose(predict(model, x), expected, rtol=1e-5, atol=1e-5)
    model.save(tmp_path / "pair.keras")
    np.save(tmp_path / "x.npy", x)
    env = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", PREDICT_SCRIPT, str(tmp_path / "pair.keras"), str(tmp_path / "x.npy"),
                           str(tmp_path / "y.npy")], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["backend"] == backend
    assert report["preprocessing"] == [list(PAIR[0]), list(PAIR[1])]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-4, atol=1e-4)


def test_one_value_statistics_broadcast_over_the_channels():
    model = small_rir(preprocessing=(128.0, (60.0, 62.0, 64.0)))
    outside = small_rir(include_preprocessing=False)
    outside.set_weights(model.get_weights())
    x = raw_images()
    np.testing.assert_allclose(predict(model, x), predict(outside, (x - 128) / np.float32([60, 62, 64])),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("value", [
    "imagenet", "CIFAR10", 3, True, ((1.0, 2.0), (1.0, 1.0, 1.0)), ((0.0,), (0.0,)), ((1.0,), (-1.0,)),
    ((float("nan"),), (1.0,)), ((), ()), ("mean", "std"), (1.0, 2.0, 3.0),
])
def test_invalid_preprocessing_is_named(value):
    with pytest.raises(ValueError, match=r"^preprocessing .*Received: preprocessing=") as error:
        small_rir(preprocessing=value)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="Received: preprocessing="):
        RiR32(preprocessing=value, include_preprocessing=False, **TINY)  # checked even when unused
    with pytest.raises(ValueError, match="Received: preprocessing="):
        preprocessing_lib.resolve(value, channels=3)


def test_invalid_include_preprocessing_is_named():
    with raises("include_preprocessing", "yes"):
        small_rir(include_preprocessing="yes")


def test_cifar_statistics_need_three_channels():
    with raises("preprocessing", "cifar100"):
        RiR32(input_shape=(32, 32, 1), preprocessing="cifar100", **TINY)
    with raises("preprocessing", ((1.0, 2.0), (1.0, 2.0))):
        small_rir(input_shape=(16, 16, 4), preprocessing=((1.0, 2.0), (1.0, 2.0)))
    assert small_rir(input_shape=(16, 16, 1), include_preprocessing=False).output.shape == (None, 10)


def test_dataset_statistics_measures_each_channel():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(50, 6, 6, 3)).astype("uint8")
    pixels[..., 2] = 7  # a constant channel: nothing to scale
    mean, std = preprocessing_lib.dataset_statistics(pixels, chunk=7)
    as_float = pixels.astype("float64")
    np.testing.assert_allclose(mean, as_float.mean(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(std[:2], as_float.std(axis=(0, 1, 2))[:2], rtol=1e-9)
    assert std[2] == 1.0 and mean[2] == 7.0
    assert all(isinstance(value, float) for value in mean + std)  # JSON-friendly
    preprocessing_lib.resolve((mean, std), channels=3)


def test_decode_predictions():
    preds = np.random.default_rng(1).random((3, 10)).astype("float32")
    decoded = decode_predictions(preds, top=4)
    for row, best in zip(preds, decoded):
        assert [index for index, _, _ in best] == list(np.argsort(-row)[:4])
        assert [score for _, _, score in best] == sorted((score for _, _, score in best), reverse=True)
        assert all(name == CIFAR10_CLASSES[index] for index, name, _ in best)
    one_hot = np.eye(100, dtype="float32")[[42]]
    assert decode_predictions(one_hot, top=1, dataset="cifar100") == [[(42, CIFAR100_CLASSES[42], 1.0)]]
    with pytest.raises(ValueError, match=re.escape("Received: preds.shape=(2, 7)")):
        decode_predictions(np.zeros((2, 7)))
    with raises("top", 0):
        decode_predictions(preds, top=0)


# -- behaviour of ResNet Init inside a network ----------------------------------------------------

def test_zero_kernels_pass_the_residual_stream_through_generalized_layers():
    """With W = 0, a generalized layer is the identity on its residual stream (ReLU'd, through an
    untrained BN) and zero on its transient stream; a plain CNN layer outputs zeros."""
    x = np.abs(images((32, 32, 16)))
    epsilon_scale = 1 / np.sqrt(1 + 1e-5)  # inference BN with fresh statistics divides by sqrt(1 + eps)
    for constructor in (ResNetInit32, RiR32):
        layer = constructor(kernel_initializer="zeros", include_top=False).get_layer("stage1_block1_1")
        y = ops.convert_to_numpy(layer(x, training=False))
        np.testing.assert_allclose(y[..., :8], x[..., :8] * epsilon_scale, rtol=1e-6)
        np.testing.assert_array_equal(y[..., 8:], 0.0)

    # A whole RiR block: the identity layer twice, plus the outer shortcut, doubles the residual stream.
    rir = RiR32(kernel_initializer="zeros", include_top=False)
    block = keras.Model(rir.get_layer("stage1_block1_1").input, rir.get_layer("stage1_block1_out").output)
    y = predict(block, x)
    np.testing.assert_allclose(y[..., :8], x[..., :8] * (1 + epsilon_scale ** 2), rtol=1e-6)
    np.testing.assert_array_equal(y[..., 8:], 0.0)

    cnn = CNN32(kernel_initializer="zeros", include_top=False)
    plain = keras.Model(cnn.get_layer("stage1_block1_1_conv").input, cnn.get_layer("stage1_block1_1_relu").output)
    np.testing.assert_array_equal(predict(plain, x), 0.0)
