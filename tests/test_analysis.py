"""Stream analysis: kernel quadrant norms, stream ablation, the `analyze` command."""
import json

import keras
import numpy as np
import pytest

from rir_keras import analysis, training
from rir_keras.applications import RiRNet, registry
from rir_keras.commands.main import main
from rir_keras.data import load_split
from rir_keras.layers import RiRConv2D

TINY = dict(blocks_per_stage=(1, 1, 1), widths=(8, 8, 8))
CONFIG = training.TrainConfig(epochs=1, batch_size=64, jit_compile=False)


@pytest.fixture(scope="module")
def archive(data_dir):
    return data_dir / "cifar10-png-mini.tar.gz"


@pytest.fixture(scope="module")
def mini(archive):
    """256 training and 64 test images, random (the archive is ordered by class)."""
    rng = np.random.default_rng(0)
    train, test = load_split(archive, "train"), load_split(archive, "test")
    return train.subset(rng.permutation(len(train))[:256]), test.subset(rng.permutation(len(test))[:64])


@pytest.fixture(scope="module")
def trained(mini):
    """A tiny RiR trained for a few steps."""
    keras.utils.set_random_seed(0)
    model = RiRNet(**TINY, name="tiny_rir")
    training.compile_model(model, CONFIG, steps_per_epoch=4)
    model.fit(training.batches(mini[0], CONFIG, training=True), epochs=1, steps_per_epoch=4, verbose=0)
    return model


def copy_of(model):
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    return twin


def raw(data):
    """The images as the models take them: float32 in [0, 255] (the model normalizes them itself)."""
    return data.images.astype("float32")


def predict(model, images):
    return model.predict(images, batch_size=64, verbose=0)


def layer_output(model, name, images):
    return predict(keras.Model(model.inputs, model.get_layer(name).output), images)


# --------------------------------------------------------------------------- quadrant norms


def built_layer(channels_in=12, filters=16, **kwargs):
    layer = RiRConv2D(filters, **kwargs)
    layer.build((None, 8, 8, channels_in))
    return layer


@pytest.mark.parametrize("identity", ["init", "constant", "shortcut"])
def test_zero_kernel_leaves_only_the_identity(identity):
    layer = built_layer(identity=identity, kernel_initializer="zeros")  # residual 6 in, 8 out
    norms = analysis.quadrant_norms(layer)
    assert norms["rr_with_identity"] == pytest.approx(np.sqrt(6))
    for quadrant in ("rr_without_identity", "rm", "mr", "mm"):
        assert norms[quadrant] == 0.0


@pytest.mark.parametrize("identity", ["init", "constant", "shortcut"])
def test_identity_taps_stand_out_in_a_fresh_kernel_and_vanish_with_it(identity):
    layer = built_layer(identity=identity, kernel_initializer="zeros")  # residual 6 in, 8 out: 6 identity taps
    taps = analysis.identity_taps(layer)
    assert taps["identity_tap"] == pytest.approx(1.0)
    assert taps["identity_tap_ratio"] == pytest.approx(np.sqrt(9 * 6 * 8 / 6))  # the 6 ones among 9 x 6 x 8 weights
    # W_rr = -I / 2 halves every identity tap and leaves them the quadrant's only weights: the ratio holds.
    layer.kernel.assign(keras.ops.convert_to_numpy(layer.kernel) - 0.5 * layer.identity_kernel())
    taps = analysis.identity_taps(layer)
    assert taps["identity_tap"] == pytest.approx(0.5)
    assert taps["identity_tap_ratio"] == pytest.approx(np.sqrt(72))
    # An ordinary weight of the same size elsewhere in the quadrant: the tap stays, the ratio falls.
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    kernel[0, 0, 1, 2] = 0.5
    layer.kernel.assign(kernel)
    taps = analysis.identity_taps(layer)
    assert taps["identity_tap"] == pytest.approx(0.5)
    assert taps["identity_tap_ratio"] == pytest.approx(0.5 / np.sqrt(7 * 0.25 / 432))
    # W_rr = -I: no identity left, and nothing to measure it against.
    layer.kernel.assign(np.zeros(layer.kernel.shape) if identity == "init" else -layer.identity_kernel())
    assert analysis.identity_taps(layer) == {"identity_tap": 0.0, "identity_tap_ratio": None}


def test_he_normal_init_layer_matches_the_initializer():
    keras.utils.set_random_seed(1)
    layer = built_layer(channels_in=64, filters=64)  # 32 residual, 32 transient on both sides
    norms = analysis.quadrant_norms(layer)
    expected = np.sqrt(9 * 32 * 32 * 2 / (9 * 64))  # He normal: variance 2 / fan_in
    for quadrant in ("rr_without_identity", "rm", "mr", "mm"):
        assert norms[quadrant] == pytest.approx(expected, rel=0.05)
    # ||W + I||^2 = ||W||^2 + 2 tr(W at the centre tap) + r: the identity sits on the centre diagonal.
    kernel = keras.ops.convert_to_numpy(layer.kernel).astype("float64")
    centre_trace = np.trace(kernel[1, 1, :32, :32] - np.eye(32))
    assert norms["rr_with_identity"] ** 2 == pytest.approx(norms["rr_without_identity"] ** 2 + 2 * centre_trace + 32)


def test_placements_with_equal_effective_kernels_give_equal_norms():
    keras.utils.set_random_seed(2)
    layers = {identity: built_layer(identity=identity) for identity in ("init", "constant", "shortcut")}
    weights = keras.ops.convert_to_numpy(layers["init"].kernel) - layers["init"].identity_kernel()
    for identity in ("constant", "shortcut"):
        layers[identity].kernel.assign(weights)
    norms = {identity: analysis.quadrant_norms(layer) for identity, layer in layers.items()}
    for identity in ("constant", "shortcut"):
        assert norms[identity] == pytest.approx(norms["init"], rel=1e-6)


def test_stream_norms_follow_depth_order_and_channel_counts():
    model = RiRNet(**TINY)
    rows = analysis.stream_norms(model)
    names = [layer.name for layer in model.layers if isinstance(layer, RiRConv2D)]
    assert [row["name"] for row in rows] == names
    assert [row["depth"] for row in rows] == list(range(1, len(names) + 1))
    assert all(row["residual_out"] + row["transient_out"] == 8 for row in rows)


# --------------------------------------------------------------------------- ablation


def test_mask_zeroes_exactly_one_stream_of_the_chosen_layer(trained, mini):
    images = raw(mini[1])
    name = "stage2_block1_2"  # the last layer of a block: masked before the outer-shortcut add
    masked = analysis.ablated_model(trained, "residual", [name])
    original = layer_output(trained, name, images)
    ablated = layer_output(masked, f"{name}_stream_mask_1", images)
    assert np.all(ablated[..., :4] == 0)
    np.testing.assert_allclose(ablated[..., 4:], original[..., 4:], rtol=1e-5, atol=1e-5)
    assert np.abs(original[..., :4]).max() > 0


def test_zeroing_a_stream_that_is_already_zero_changes_nothing(trained, mini):
    model = copy_of(trained)
    images = raw(mini[1])
    layer = model.get_layer("stage2_block1_1")
    r_out = layer.residual_out
    # No weight produces this layer's transient output, and its batch norm maps 0 to 0.
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    kernel[..., r_out:] = 0.0
    layer.kernel.assign(kernel)
    for variable in (layer.batch_norm.beta, layer.batch_norm.moving_mean):
        value = keras.ops.convert_to_numpy(variable)
        value[r_out:] = 0.0
        variable.assign(value)
    assert np.all(layer_output(model, layer.name, images)[..., r_out:] == 0)

    intact = predict(model, images)
    np.testing.assert_allclose(predict(analysis.ablated_model(model, "transient", [layer]), images), intact,
                               rtol=1e-6, atol=1e-7)
    # The residual stream of the same layer does carry something: zeroing it changes the predictions.
    assert np.abs(predict(analysis.ablated_model(model, "residual", [layer]), images) - intact).max() > 1e-3

    study = analysis.ablation_study(model, mini[1], batch_size=64)
    row = next(row for row in study["layers"] if row["name"] == layer.name)
    assert row["transient"] == study["accuracy"]


def test_zeroing_every_residual_stream_changes_predictions(trained, mini):
    images = raw(mini[1])
    intact = predict(trained, images)
    for stream in analysis.STREAMS:
        assert np.abs(predict(analysis.ablated_model(trained, stream), images) - intact).max() > 1e-2
    np.testing.assert_allclose(predict(analysis.ablated_model(trained, "residual", []), images), intact,
                               rtol=1e-6, atol=1e-7)


def test_ablation_study_feeds_raw_images_to_the_model(trained, mini):
    study = analysis.ablation_study(trained, mini[1], batch_size=64)
    expected = np.mean(np.argmax(predict(trained, raw(mini[1])), axis=-1) == mini[1].labels)
    assert study["accuracy"] == pytest.approx(expected)
    assert study["images"] == 64 and len(study["layers"]) == 6
    assert set(study["all_layers"]) == set(analysis.STREAMS)


def test_nested_models_are_masked_too():
    keras.utils.set_random_seed(3)
    inner = RiRNet(**TINY, name="inner")
    inputs = keras.Input((32, 32, 3))
    outer = keras.Model(inputs, inner(inputs), name="outer")
    images = np.random.default_rng(0).normal(size=(8, 32, 32, 3)).astype("float32")
    assert [layer.name for layer in analysis.generalized_layers(outer)] == \
        [layer.name for layer in analysis.generalized_layers(inner)]
    np.testing.assert_allclose(predict(analysis.ablated_model(outer, "transient"), images),
                               predict(analysis.ablated_model(inner, "transient"), images), rtol=1e-5, atol=1e-6)


def test_bad_arguments_are_named():
    plain = RiRNet(**TINY, architecture="resnet", name="tiny_resnet")
    with pytest.raises(ValueError, match="tiny_resnet.*no generalized residual layers"):
        analysis.analyze(plain)
    with pytest.raises(ValueError, match="model must be a keras.Model"):
        analysis.generalized_layers("rir32")
    model = RiRNet(**TINY)
    with pytest.raises(ValueError, match="stream must be one of .*Received: stream='both'"):
        analysis.ablated_model(model, "both", [])
    with pytest.raises(ValueError, match="Received: layers=\\['stem'\\]"):
        analysis.ablated_model(model, "residual", ["stem"])


WITH_STREAMS = ["resnet_init32", "resnet_init18_wide", "all_cnn_c_resnet_init", "rir32", "rir18_wide",
                "rir32_forget", "rir_3x10"]
WITHOUT_STREAMS = ["cnn32", "resnet32", "resnet32_forget", "all_cnn_c"]


@pytest.mark.parametrize("name", WITH_STREAMS)
def test_every_family_with_streams_is_analyzed(name):
    keras.utils.set_random_seed(5)
    # Logits: the softmax of an untrained deep network saturates and would hide a change.
    model = registry.build(name, width_multiplier=0.125, classifier_activation=None)
    layers = analysis.generalized_layers(model)
    rows = analysis.stream_norms(model)
    assert [row["name"] for row in rows] == [layer.name for layer in layers] and rows
    images = np.random.default_rng(0).integers(0, 256, size=(4, 32, 32, 3)).astype("float32")
    intact = predict(model, images)
    np.testing.assert_allclose(predict(analysis.ablated_model(model, "residual", []), images), intact,
                               rtol=1e-6, atol=1e-7)
    for stream in analysis.STREAMS:
        assert np.abs(predict(analysis.ablated_model(model, stream), images) - intact).max() > 1e-6, stream


@pytest.mark.parametrize("name", WITHOUT_STREAMS)
def test_families_without_streams_are_refused_by_name(name):
    with pytest.raises(ValueError, match=f"model '{name}' has no generalized residual layers.*Received: model"):
        analysis.generalized_layers(registry.build(name, width_multiplier=0.125))


# --------------------------------------------------------------------------- the command


def test_cli_writes_json_markdown_and_plots(trained, archive, tmp_path, capsys):
    path = tmp_path / "tiny.keras"
    trained.save(path)
    output = tmp_path / "analysis"
    assert main(["analyze", str(path), "--dataset", str(archive), "--limit", "64", "--batch-size", "64",
                 "--output", str(output)]) == 0
    report = json.loads((output / "analysis.json").read_text())
    assert report["model"] == "tiny_rir" and report["ablation"]["images"] == 64
    assert len(report["layers"]) == 6
    for row in report["layers"]:
        assert all(0.0 <= row[f"accuracy_without_{s}"] <= 1.0 for s in analysis.STREAMS)
        assert row["rr_with_identity"] > 0
    markdown = (output / "analysis.md").read_text()
    assert all(f"`{row['name']}`" in markdown for row in report["layers"])
    from matplotlib import image

    for name in ("norms.png", "ablation.png"):
        height, width = image.imread(output / name).shape[:2]
        assert height > 200 and width > 400
    assert "tiny_rir" in capsys.readouterr().out


def test_cli_names_a_model_without_streams(tmp_path, capsys):
    path = tmp_path / "plain.keras"
    RiRNet(**TINY, architecture="cnn", name="tiny_cnn").save(path)
    assert main(["analyze", str(path), "--norms-only", "--output", str(tmp_path / "out")]) == 2
    assert "'tiny_cnn' has no generalized residual layers" in capsys.readouterr().err
    assert main(["analyze", str(tmp_path / "missing.keras"), "--output", str(tmp_path / "out")]) == 2


def test_cli_takes_no_normalization_flag(tmp_path, capsys):
    """The saved model carries its preprocessing: analyze feeds it raw images."""
    with pytest.raises(SystemExit):
        main(["analyze", str(tmp_path / "model.keras"), "--normalization", "cifar10"])
    assert "--normalization" in capsys.readouterr().err
