import keras
import numpy as np
import pytest

from rir_keras import ResNetInit, ResNetInitConv2D
from rir_keras.initializers import identity_kernel


def zeros_based(residual_out, residual_in=None):
    return ResNetInit(residual_out, residual_in, base_initializer="zeros")


@pytest.mark.parametrize("kernel", [(1, 1), (3, 3), (5, 5), (3, 5)])
def test_identity_sits_at_the_centre_tap_of_the_residual_quadrant(kernel):
    value = keras.ops.convert_to_numpy(zeros_based(4)(kernel + (6, 8)))
    expected = np.zeros(kernel + (6, 8), "float32")
    for channel in range(4):
        expected[kernel[0] // 2, kernel[1] // 2, channel, channel] = 1.0
    np.testing.assert_array_equal(value, expected)
    assert value.sum() == 4  # nothing in the transient quadrants


@pytest.mark.parametrize("residual_in,residual_out,overlap", [(2, 5, 2), (5, 2, 2), (0, 4, 0), (4, 0, 0)])
def test_differing_residual_counts_get_the_identity_on_their_overlap(residual_in, residual_out, overlap):
    value = keras.ops.convert_to_numpy(zeros_based(residual_out, residual_in)((3, 3, 6, 8)))
    centre = value[1, 1]
    assert value.sum() == overlap
    np.testing.assert_array_equal(np.diag(centre)[:overlap], np.ones(overlap))


def test_base_initializer_is_added_not_replaced():
    shape = (3, 3, 64, 64)
    value = keras.ops.convert_to_numpy(ResNetInit(32)(shape))
    base = value - identity_kernel(shape, 32, 32)
    # He normal: std sqrt(2 / fan_in), fan_in = 3 * 3 * 64 (a truncated normal, a little narrower).
    assert abs(base.std() / np.sqrt(2 / (9 * 64)) - 1) < 0.15
    assert abs(base.mean()) < 0.01


def test_even_kernel_is_rejected_with_its_size():
    with pytest.raises(ValueError, match=r"odd kernel size.*kernel_size=\(2, 2\)"):
        zeros_based(2)((2, 2, 4, 4))


def test_residual_count_larger_than_channels_is_rejected():
    with pytest.raises(ValueError, match="residual_channels=9"):
        zeros_based(9)((3, 3, 8, 8))
    with pytest.raises(ValueError, match="input_residual_channels=9"):
        zeros_based(4, 9)((3, 3, 8, 8))


def test_non_conv_shape_and_bad_count_are_rejected():
    with pytest.raises(ValueError, match=r"shape=\(4, 4\)"):
        zeros_based(2)((4, 4))
    with pytest.raises(ValueError, match="residual_channels=-1"):
        ResNetInit(-1)


def test_initializer_config_round_trip():
    init = ResNetInit(4, 2, base_initializer=keras.initializers.HeUniform(seed=3))
    clone = ResNetInit.from_config(init.get_config())
    assert clone.get_config() == init.get_config()
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(init((3, 3, 6, 8))), keras.ops.convert_to_numpy(clone((3, 3, 6, 8)))
    )


def test_resnet_init_conv_is_a_conv2d_with_identity_added():
    x = np.random.default_rng(0).normal(size=(2, 7, 7, 6)).astype("float32")
    layer = ResNetInitConv2D(8, 3, padding="same", kernel_initializer="zeros", bias_initializer="zeros")
    y = keras.ops.convert_to_numpy(layer(x))
    # residual 4 of 8 outputs, input residual 3 of 6: the first 3 channels pass through unchanged.
    np.testing.assert_allclose(y[..., :3], x[..., :3], atol=1e-6)
    np.testing.assert_array_equal(y[..., 3:], 0)

    random = ResNetInitConv2D(8, 3, padding="same")
    conv = keras.layers.Conv2D(8, 3, padding="same")
    random.build(x.shape)
    conv.build(x.shape)
    assert random.count_params() == conv.count_params()
    conv.set_weights(random.get_weights())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(random(x)), keras.ops.convert_to_numpy(conv(x)), atol=1e-5)


def test_resnet_init_conv_config_keeps_the_base_initializer():
    layer = ResNetInitConv2D(8, 3, transient_channels=2, kernel_initializer="glorot_uniform", strides=2)
    layer.build((None, 8, 8, 8))
    config = layer.get_config()
    assert config["kernel_initializer"]["class_name"] == "GlorotUniform"
    assert config["transient_channels"] == 2 and config["strides"] == (2, 2)
    clone = ResNetInitConv2D.from_config(config)
    assert clone.get_config() == config
