"""Every public layer round-trips through its config and through a .keras file, on TensorFlow and JAX."""
import io
import json
import os
import subprocess
import sys
import zipfile

import h5py
import keras
import numpy as np
import pytest

from rir_keras import ForgetGate, ResNetInitConv2D, RiRConv2D
from rir_keras.layers import BatchNormalization, BlockShortcut

LAYERS = [
    lambda: RiRConv2D(8, strides=2, identity="constant", shortcut="projection", transient_channels=3,
                      kernel_regularizer=keras.regularizers.L2(1e-4), activation=None, momentum=0.8),
    lambda: RiRConv2D(8, identity="shortcut", padding="valid", kernel_initializer="glorot_normal"),
    lambda: ResNetInitConv2D(8, 3, transient_ratio=0.25, padding="same"),
    lambda: BlockShortcut(16, 8, 4, strides=2, mode="projection", epsilon=1e-3),
    lambda: ForgetGate(channels=4, strides=2, bias_initializer="zeros"),
    lambda: BatchNormalization(momentum=0.8, epsilon=1e-3),
]


@pytest.mark.parametrize("make", LAYERS)
def test_config_round_trip_is_complete(make):
    layer = make()
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    json.dumps(keras.saving.serialize_keras_object(layer))  # the config is plain JSON


def small_model():
    """Every layer type of the package in one model, with nonzero weights everywhere."""
    inputs = keras.Input((8, 8, 6))
    x = ResNetInitConv2D(8, 3, padding="same")(inputs)
    a = RiRConv2D(8, identity="init", name="init")(x)
    b = RiRConv2D(8, identity="constant", shortcut="projection", strides=2, name="constant")(a)
    c = RiRConv2D(8, identity="shortcut", activation=None, name="shortcut")(b)
    s = BlockShortcut(8, 4, 4, strides=2, name="outer")(a)
    s = ForgetGate(channels=4, strides=2, name="gate")([a, s])
    x = BatchNormalization(name="bn")(keras.layers.Add()([c, s]))
    outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    model.set_weights([w + rng.normal(scale=0.05, size=w.shape).astype("float32") for w in model.get_weights()])
    return model


def test_keras_file_round_trip_gives_identical_predictions(tmp_path):
    model = small_model()
    x = np.random.default_rng(1).normal(size=(4, 8, 8, 6)).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert [type(layer).__name__ for layer in loaded.layers] == [type(layer).__name__ for layer in model.layers]


JAX_SCRIPT = """
import json, sys
import numpy as np
import keras
import rir_keras  # registers the layers
assert keras.backend.backend() == "jax", keras.backend.backend()
model = keras.saving.load_model(sys.argv[1])
x = np.load(sys.argv[2])
np.save(sys.argv[3], model.predict(x, verbose=0))
model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
before = [np.array(w) for w in model.trainable_weights]
history = model.fit(x, np.arange(len(x)) % 3, epochs=2, batch_size=4, verbose=0)
moved = max(float(np.abs(np.array(w) - b).max()) for w, b in zip(model.trainable_weights, before))
print(json.dumps({"loss": history.history["loss"], "moved": moved}))
"""


def test_layers_run_and_train_under_the_jax_backend(tmp_path):
    pytest.importorskip("jax")
    model = small_model()
    x = np.random.default_rng(2).normal(size=(4, 8, 8, 6)).astype("float32")
    model.save(tmp_path / "model.keras")
    np.save(tmp_path / "x.npy", x)
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT, str(tmp_path / "model.keras"), str(tmp_path / "x.npy"),
         str(tmp_path / "jax.npy")],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "jax.npy"), model.predict(x, verbose=0), atol=1e-4)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert all(np.isfinite(report["loss"])) and report["moved"] > 0


def test_a_model_saved_by_an_earlier_version_loads():
    """A .keras file from the finished CIFAR-10 (JPEG copy) campaign (CNN-32, saved by version 0.6)
    loads, every batch norm into our fused-kernel class and computing what its own statistics say.
    Keras writes each layer's class name into the file (its config, and the path of every variable:
    snake_case of the class name), so renaming a class breaks every saved model and weights file."""
    path = os.path.join(os.path.dirname(__file__), "..", "results", "table32-cifar10", "cnn32", "seed0", "model.keras")
    with zipfile.ZipFile(path) as archive:
        assert '"registered_name": "rir_keras>BatchNormalization"' in archive.read("config.json").decode()
        names = []
        with h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
            weights.visit(names.append)
    assert "layers/batch_normalization_30/vars" in names  # the class's name, in every variable's path
    model = keras.saving.load_model(path, compile=False)
    norms = [layer for layer in model.layers if isinstance(layer, BatchNormalization)]
    assert len(norms) == 31
    norm = norms[0]
    x = np.random.default_rng(0).normal(size=(2, 32, 32, norm.gamma.shape[0])).astype("float32")
    mean, variance = (keras.ops.convert_to_numpy(v) for v in (norm.moving_mean, norm.moving_variance))
    gamma, beta = keras.ops.convert_to_numpy(norm.gamma), keras.ops.convert_to_numpy(norm.beta)
    assert not np.allclose(mean, 0)  # trained statistics, not a fresh layer's
    expected = gamma * (x - mean) / np.sqrt(variance + norm.epsilon) + beta
    np.testing.assert_allclose(keras.ops.convert_to_numpy(norm(x, training=False)), expected, rtol=1e-4, atol=1e-4)
