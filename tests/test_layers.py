"""The paper's claims about the generalized residual layer, proven to float tolerance."""
import keras
import numpy as np
import pytest

from rir_keras import ForgetGate, RiRConv2D
from rir_keras.layers import BatchNormalization, BlockShortcut

PLACEMENTS = ("init", "constant", "shortcut")
ATOL = 1e-5


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def images(shape=(4, 8, 8, 8), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def built(layer, shape):
    layer.build(shape)
    return layer


@pytest.mark.parametrize("size", [8, 9])
@pytest.mark.parametrize("identity", PLACEMENTS)
@pytest.mark.parametrize("strides,filters", [(1, 8), (2, 8), (2, 12), (1, 6)])
def test_zero_kernels_pass_the_residual_stream_through(identity, strides, filters, size):
    # A strided layer's identity reads pixels 0, 2, 4, ...: those of a block's shortcut x[:, ::2, ::2].
    x = images((4, size, size, 8))
    layer = built(RiRConv2D(filters, strides=strides, identity=identity, kernel_initializer="zeros"), x.shape)
    y = numpy(layer.convolve(x))
    assert y.shape[1:3] == (-(-size // strides),) * 2 == x[:, ::strides, ::strides].shape[1:3]
    residual_in, residual_out = layer.residual_in, layer.residual_out
    sampled = x[:, ::strides, ::strides][..., :residual_in]
    overlap = min(residual_in, residual_out)
    np.testing.assert_allclose(y[..., :overlap], sampled[..., :overlap], atol=ATOL)
    np.testing.assert_array_equal(y[..., overlap:], 0)  # padded residual channels and the transient stream


def equivalent_layers(strides=1, filters=8, shortcut="identity", seed=1):
    """Three layers, one per placement, holding the same effective weights."""
    x = images(seed=seed)
    layers = {p: built(RiRConv2D(filters, strides=strides, identity=p, shortcut=shortcut), x.shape) for p in PLACEMENTS}
    base = np.random.default_rng(seed).normal(scale=0.1, size=layers["constant"].kernel.shape).astype("float32")
    layers["constant"].kernel.assign(base)
    layers["shortcut"].kernel.assign(base)
    layers["init"].kernel.assign(base + layers["init"].identity_kernel())
    return x, layers


@pytest.mark.parametrize("strides,filters", [(1, 8), (2, 16)])
def test_placements_compute_the_same_function(strides, filters):
    x, layers = equivalent_layers(strides, filters)
    kernels = {p: numpy(layer.effective_kernel()) for p, layer in layers.items()}
    reference = numpy(layers["init"](x, training=True))
    for placement in ("constant", "shortcut"):
        np.testing.assert_allclose(kernels[placement], kernels["init"], atol=ATOL)
        np.testing.assert_allclose(numpy(layers[placement](x, training=True)), reference, atol=ATOL)


def sgd_steps(layer, x, steps=4):
    """Train ``layer`` inside a small fixed classifier for a few SGD steps on fixed data."""
    inputs = keras.Input(x.shape[1:])
    features = keras.layers.Flatten()(layer(inputs))  # not a mean: BN zeroes channel means
    head = keras.layers.Dense(3, kernel_initializer=keras.initializers.RandomNormal(seed=0), trainable=False)
    model = keras.Model(inputs, head(features))
    model.compile(optimizer=keras.optimizers.SGD(0.5, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    labels = np.arange(len(x)) % 3
    for _ in range(steps):
        model.train_on_batch(x, labels)
    return numpy(layer.effective_kernel())


@pytest.mark.parametrize("strides,filters", [(1, 8), (2, 16)])
def test_placements_take_the_same_sgd_steps_without_weight_decay(strides, filters):
    x, layers = equivalent_layers(strides, filters)
    before = numpy(layers["init"].effective_kernel())
    after = {p: sgd_steps(layer, x) for p, layer in layers.items()}
    assert np.abs(after["init"] - before).max() > 1e-2  # the steps moved the weights
    for placement in ("constant", "shortcut"):
        np.testing.assert_allclose(after[placement], after["init"], atol=1e-4)


def test_projection_placements_agree_on_outputs_and_steps():
    x, layers = equivalent_layers(strides=2, filters=16, shortcut="projection")
    assert layers["constant"].projection is not None and layers["init"].projection is None
    rng = np.random.default_rng(5)
    projection = rng.normal(size=layers["constant"].projection.shape).astype("float32")
    for placement in ("constant", "shortcut"):
        layers[placement].projection.assign(projection)
    np.testing.assert_allclose(numpy(layers["constant"](x, training=True)),
                               numpy(layers["shortcut"](x, training=True)), atol=ATOL)
    np.testing.assert_allclose(sgd_steps(layers["constant"], x), sgd_steps(layers["shortcut"], x), atol=1e-4)


def test_weight_decay_pulls_init_toward_zero_and_constant_toward_the_identity():
    decayed = {}
    for placement in ("init", "constant"):
        layer = RiRConv2D(8, identity=placement, kernel_regularizer=keras.regularizers.L2(1.0),
                          kernel_initializer="zeros")
        layer.build((None, 8, 8, 8))
        decayed[placement] = float(numpy(sum(layer.losses)))
    assert decayed["init"] == pytest.approx(4.0)  # the identity's four ones are penalized
    assert decayed["constant"] == 0.0  # the kernel is zero: the identity is outside it


@pytest.mark.parametrize("identity", PLACEMENTS)
def test_zeroed_transient_to_residual_weights_give_a_one_layer_resnet_unit(identity):
    x = images(seed=3)
    layer = built(RiRConv2D(8, identity=identity), x.shape)
    r = layer.residual_in
    kernel = numpy(layer.kernel)
    kernel[:, :, r:, :r] = 0.0  # W_mr: the transient stream no longer writes to the residual stream
    layer.kernel.assign(kernel)
    w_rr = kernel[:, :, :r, :r] - (layer.identity_kernel()[:, :, :r, :r] if identity == "init" else 0)

    conv = built(keras.layers.Conv2D(r, 3, padding="same", use_bias=False), (None, 8, 8, r))
    conv.set_weights([w_rr])
    bn = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)
    resnet_unit = keras.ops.relu(bn(conv(x[..., :r]) + x[..., :r], training=True))
    np.testing.assert_allclose(numpy(layer(x, training=True))[..., :r], numpy(resnet_unit), atol=ATOL)


@pytest.mark.parametrize("identity", PLACEMENTS)
def test_without_a_residual_stream_the_layer_is_a_plain_conv_layer(identity):
    x = images(seed=4)
    layer = built(RiRConv2D(8, strides=2, identity=identity, transient_ratio=1.0), x.shape)
    # The plain layer of the CNN and ResNet families: symmetric padding, then a 'valid' convolution.
    padded = keras.layers.ZeroPadding2D(1)(x)
    conv = built(keras.layers.Conv2D(8, 3, strides=2, padding="valid", use_bias=False), padded.shape)
    conv.set_weights([numpy(layer.kernel)])
    bn = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)
    plain = keras.ops.relu(bn(conv(padded), training=True))
    np.testing.assert_allclose(numpy(layer(x, training=True)), numpy(plain), atol=ATOL)


def test_init_layer_with_its_identity_removed_is_a_plain_conv_layer():
    x = images(seed=6)
    layer = built(RiRConv2D(8), x.shape)
    conv = built(keras.layers.Conv2D(8, 3, padding="same", use_bias=False), x.shape)
    conv.set_weights([numpy(layer.kernel) - layer.identity_kernel()])
    layer.kernel.assign(numpy(layer.kernel) - layer.identity_kernel())
    bn = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)
    np.testing.assert_allclose(numpy(layer(x, training=True)), numpy(keras.ops.relu(bn(conv(x), training=True))),
                               atol=ATOL)


@pytest.mark.parametrize("identity", PLACEMENTS)
def test_parameters_are_those_of_a_conv_of_the_same_shape(identity):
    layer = built(RiRConv2D(16, strides=2, identity=identity), (None, 8, 8, 8))
    conv = built(keras.layers.Conv2D(16, 3, use_bias=False), (None, 8, 8, 8))
    bn = built(keras.layers.BatchNormalization(), (None, 8, 8, 16))
    assert layer.count_params() == conv.count_params() + bn.count_params()


def test_valid_padding_crops_the_shortcut_to_the_window_centres():
    x = images(shape=(2, 7, 7, 8))
    for identity in PLACEMENTS:
        layer = built(RiRConv2D(8, padding="valid", identity=identity, kernel_initializer="zeros"), x.shape)
        y = numpy(layer.convolve(x))
        assert y.shape == (2, 5, 5, 8)
        np.testing.assert_allclose(y[..., :4], x[:, 1:-1, 1:-1, :4], atol=ATOL)


def test_channel_split_arguments():
    layer = built(RiRConv2D(10, transient_channels=3, input_transient_channels=1), (None, 8, 8, 6))
    assert (layer.residual_in, layer.transient_in, layer.residual_out, layer.transient_out) == (5, 1, 7, 3)
    ratio = built(RiRConv2D(8, transient_ratio=0.25), (None, 8, 8, 4))
    assert (ratio.residual_in, ratio.residual_out) == (3, 6)


@pytest.mark.parametrize("kwargs,message", [
    ({"identity": "kernel"}, "identity='kernel'"),
    ({"shortcut": "gated"}, "shortcut='gated'"),
    ({"padding": "full"}, "padding='full'"),
    ({"transient_ratio": 1.5}, "transient_ratio=1.5"),
    ({"transient_channels": 9}, "transient_channels=9"),
    ({"strides": 0}, "strides=0"),
    ({"kernel_size": (3, 3, 3)}, r"kernel_size=\(3, 3, 3\)"),
])
def test_bad_arguments_name_the_argument_and_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RiRConv2D(8, **kwargs)


@pytest.mark.parametrize("identity", PLACEMENTS)
@pytest.mark.parametrize("kernel_size", [2, (3, 4)])
def test_even_kernels_are_rejected_for_every_placement(identity, kernel_size):
    # An even kernel has no centre tap: the identity would sit off-centre.
    with pytest.raises(ValueError, match=r"kernel_size must be odd.*Received: kernel_size="):
        RiRConv2D(8, kernel_size=kernel_size, identity=identity)


def test_input_transient_channels_larger_than_input_is_rejected():
    with pytest.raises(ValueError, match="input_transient_channels=9"):
        built(RiRConv2D(8, input_transient_channels=9), (None, 8, 8, 8))


@pytest.mark.parametrize("size", [8, 9])
def test_block_shortcut_identity_subsamples_and_pads_the_residual_stream(size):
    x = images(shape=(2, size, size, 8))
    shortcut = BlockShortcut(16, residual_channels=8, input_residual_channels=4, strides=2)
    y = numpy(shortcut(x))
    assert y.shape == (2, (size + 1) // 2, (size + 1) // 2, 16)
    np.testing.assert_array_equal(y[..., :4], x[:, ::2, ::2, :4])
    np.testing.assert_array_equal(y[..., 4:], 0)


def test_block_shortcut_projection_has_a_1x1_kernel():
    shortcut = BlockShortcut(16, residual_channels=8, input_residual_channels=4, strides=2, mode="projection")
    y = shortcut(images(shape=(2, 8, 8, 8)))
    assert tuple(y.shape) == (2, 4, 4, 16)
    assert shortcut.projection.kernel.shape == (1, 1, 4, 8)
    np.testing.assert_array_equal(numpy(y)[..., 8:], 0)


def batch_norm_step(layer, x, training):
    """Outputs, gradients (input, gamma, beta) of a nonlinear loss, and moving statistics after one call."""
    layer.build(x.shape)
    layer.gamma.assign(np.linspace(0.5, 2.0, x.shape[-1]))
    layer.beta.assign(np.linspace(-1.0, 1.0, x.shape[-1]))
    if keras.backend.backend() != "tensorflow":
        return [numpy(layer(x, training=training)), numpy(layer.moving_mean), numpy(layer.moving_variance)]
    import tensorflow as tf

    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        loss = tf.reduce_sum(tf.square(y) * tf.range(y.shape[-1], dtype=y.dtype) + tf.sin(y))
    gradients = tape.gradient(loss, [x, layer.gamma, layer.beta])
    return [numpy(y), *map(numpy, gradients), numpy(layer.moving_mean), numpy(layer.moving_variance)]


@pytest.mark.parametrize("training", [True, False])
def test_batch_normalization_computes_what_keras_computes(training):
    """The fused training path (TensorFlow) gives Keras' outputs, gradients and moving statistics."""
    x = np.random.default_rng(0).normal(2.0, 3.0, (16, 6, 6, 5)).astype("float32")
    ours = batch_norm_step(BatchNormalization(momentum=0.8, epsilon=1e-5), x, training)
    reference = batch_norm_step(keras.layers.BatchNormalization(momentum=0.8, epsilon=1e-5), x, training)
    for got, expected in zip(ours, reference):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    if training:
        assert not np.allclose(ours[-1], 1.0)  # the statistics moved: the training path ran


def test_forget_gate_is_sigmoid_of_conv_plus_bias_times_shortcut():
    x = images(shape=(2, 8, 8, 8))
    shortcut = images(shape=(2, 4, 4, 6), seed=9)
    gate = ForgetGate(channels=4, strides=2)
    y = numpy(gate([x, shortcut]))
    kernel, bias = (numpy(w) for w in gate.weights)
    logits = np.einsum("bhwc,cd->bhwd", x[:, ::2, ::2], kernel[0, 0]) + bias
    expected = shortcut[..., :4] / (1 + np.exp(-logits))
    np.testing.assert_allclose(y[..., :4], expected, atol=ATOL)
    np.testing.assert_array_equal(y[..., 4:], shortcut[..., 4:])  # ungated channels pass through
    np.testing.assert_allclose(bias, 1.0)


def zeroed(model):
    """Zero every convolution kernel (the RiR layers' own W, their identity kept where it is not in W)."""
    for layer in model.layers:
        if isinstance(layer, (RiRConv2D, keras.layers.Conv2D)):
            layer.kernel.assign(np.zeros(layer.kernel.shape, "float32"))
    return model


def strided_block(identity, size, generalized=True, channels=8):
    from rir_keras.blocks import LayerSpec, block

    spec = LayerSpec(generalized=generalized, identity=identity, epsilon=1e-12)
    inputs = keras.Input((size, size, channels))
    return keras.Model(inputs, block(inputs, 2 * channels, spec, strides=2, name="b"))


@pytest.mark.parametrize("size", [8, 9])
@pytest.mark.parametrize("identity", PLACEMENTS)
def test_strided_rir_block_reads_the_shortcuts_pixels(identity, size):
    # With W = 0 both generalized layers are identities on the residual stream, so every path of
    # the block reads x[:, ::2, ::2]: the block outputs relu(x_sub + x_sub), never x_odd + x_even.
    x = np.abs(images((2, size, size, 8)))  # a block's input follows a ReLU
    model = zeroed(strided_block(identity, size))
    y = numpy(model(x, training=False))
    residual_in = 4
    sampled = x[:, ::2, ::2, :residual_in]
    if identity == "init":  # the identity lives in W, so zeroing W leaves the outer shortcut alone
        expected = sampled
    else:
        expected = 2 * sampled
    np.testing.assert_allclose(y[..., :residual_in], expected, atol=ATOL)
    np.testing.assert_array_equal(y[..., residual_in:], 0)  # padded residual channels, transient stream


@pytest.mark.parametrize("size", [8, 9])
def test_strided_plain_layer_reads_the_shortcuts_pixels(size):
    # CNN and ResNet pad the same way, so the four families stay comparable: a kernel that is the
    # identity at its centre tap gives x[:, ::2, ::2], like the block's shortcut.
    from rir_keras.blocks import LayerSpec, conv_bn

    inputs = keras.Input((size, size, 4))
    model = keras.Model(inputs, conv_bn(inputs, 4, LayerSpec(epsilon=1e-12), strides=2, activation=None, name="c"))
    conv = model.get_layer("c_conv")
    kernel = np.zeros(conv.kernel.shape, "float32")
    kernel[1, 1] = np.eye(4)
    conv.kernel.assign(kernel)
    x = images((2, size, size, 4))
    np.testing.assert_allclose(numpy(model(x, training=False)), x[:, ::2, ::2], atol=ATOL)
