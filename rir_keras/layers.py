"""Layers of Resnet in Resnet: ResNetInitConv2D, RiRConv2D (the generalized residual layer),
BlockShortcut (the outer shortcut of a block) and ForgetGate.

Tensors are channels-last. A tensor that carries two streams lays out its channels as
``[residual | transient]``; the transient share is ``transient_ratio`` of the channels.
"""
import keras
import numpy as np
from keras import ops

from rir_keras.initializers import PACKAGE, ResNetInit, identity_kernel, split_channels

IDENTITY_PLACEMENTS = ("init", "constant", "shortcut")
SHORTCUTS = ("identity", "projection")
PADDINGS = ("same", "valid")


def check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}. Received: {name}={value!r}")
    return value


def check_ratio(transient_ratio):
    if not isinstance(transient_ratio, (int, float)) or not 0.0 <= transient_ratio <= 1.0:
        raise ValueError(f"transient_ratio must be a number in [0, 1]. Received: transient_ratio={transient_ratio!r}")
    return float(transient_ratio)


def kernel_size_2d(kernel_size):
    size = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
    if len(size) != 2 or any(int(k) != k or k < 1 for k in size):
        raise ValueError(f"kernel_size must be a positive int or a pair of them. Received: kernel_size={kernel_size!r}")
    return tuple(int(k) for k in size)


def odd_kernel_size(kernel_size):
    """``kernel_size`` as a pair of odd ints: the identity of a generalized layer sits at the centre tap."""
    size = kernel_size_2d(kernel_size)
    if any(k % 2 == 0 for k in size):
        raise ValueError(
            "kernel_size must be odd: an even kernel has no centre tap for the identity. "
            f"Received: kernel_size={kernel_size!r}"
        )
    return size


def symmetric_padding(x, kernel_size):
    """Zero-pad the spatial axes of ``x`` by ``k // 2`` on both sides, for a 'valid' convolution.

    A strided 'same' convolution in Keras pads an even-sized input 0 before and 1 after, so its
    centre tap reads pixels 1, 3, 5, ...; padded symmetrically, it reads 0, 2, 4, ..., the pixels
    that a block's strided shortcut ``x[:, ::2, ::2]`` reads (He et al. pad 1 on both sides).
    """
    kh, kw = kernel_size
    return ops.pad(x, [[0, 0], [kh // 2, kh // 2], [kw // 2, kw // 2], [0, 0]])


def strides_2d(strides):
    pair = (strides, strides) if isinstance(strides, int) else tuple(strides)
    if len(pair) != 2 or any(int(s) != s or s < 1 for s in pair):
        raise ValueError(f"strides must be a positive int or a pair of them. Received: strides={strides!r}")
    return tuple(int(s) for s in pair)


class StreamSplit:
    """How a layer divides its input and output channels into residual and transient streams.

    The output's transient count is ``transient_channels`` if given, else ``transient_ratio`` of
    ``filters``; the input's is ``input_transient_channels`` if given, else the same share of the
    input channels.
    """

    def __init__(self, filters, transient_ratio=0.5, transient_channels=None, input_transient_channels=None):
        self.filters = int(filters)
        if self.filters < 1:
            raise ValueError(f"filters must be a positive integer. Received: filters={filters!r}")
        self.transient_ratio = check_ratio(transient_ratio)
        if transient_channels is not None and not 0 <= transient_channels <= self.filters:
            raise ValueError(
                f"transient_channels must be between 0 and filters={self.filters}. "
                f"Received: transient_channels={transient_channels!r}"
            )
        self.transient_channels = transient_channels
        self.input_transient_channels = input_transient_channels

    @property
    def share(self):
        if self.transient_channels is None:
            return self.transient_ratio
        return self.transient_channels / self.filters

    def output(self):
        """``(residual, transient)`` channel counts of the output."""
        if self.transient_channels is None:
            return split_channels(self.filters, self.transient_ratio)
        return self.filters - self.transient_channels, self.transient_channels

    def input(self, channels_in):
        """``(residual, transient)`` channel counts of an input with ``channels_in`` channels."""
        if self.input_transient_channels is None:
            return split_channels(channels_in, self.share)
        if not 0 <= self.input_transient_channels <= channels_in:
            raise ValueError(
                f"input_transient_channels must be between 0 and the input's {channels_in} channels. "
                f"Received: input_transient_channels={self.input_transient_channels!r}"
            )
        return channels_in - self.input_transient_channels, self.input_transient_channels

    def get_config(self):
        return {
            "transient_ratio": self.transient_ratio,
            "transient_channels": self.transient_channels,
            "input_transient_channels": self.input_transient_channels,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class ResNetInitConv2D(keras.layers.Conv2D):
    """A Conv2D over ``[residual | transient]`` channels whose kernel starts as ``W + I`` (ResNet Init).

    A drop-in replacement for ``keras.layers.Conv2D``: same arguments, same parameters, same cost.
    ``kernel_initializer`` initializes ``W``; the identity ``I`` joins the first residual input
    channels to the first residual output channels at the centre tap.

    Args:
        filters, kernel_size, **kwargs: as for ``keras.layers.Conv2D``.
        transient_ratio: share of channels in the transient stream (default 0.5, the paper's split).
        transient_channels: number of transient output channels; overrides ``transient_ratio``.
        input_transient_channels: number of transient input channels; default: the same share.

    Being a Conv2D, a strided ``padding="same"`` layer pads an even-sized input 0 before and 1
    after, so its identity reads pixels 1, 3, 5, ...; to read 0, 2, 4, ... (where a strided
    shortcut ``x[:, ::2, ::2]`` reads), put ``keras.layers.ZeroPadding2D(k // 2)`` before a
    ``padding="valid"`` layer, as ``RiRConv2D`` and the networks of ``rir_keras.applications`` do.
    """

    def __init__(self, filters, kernel_size, transient_ratio=0.5, transient_channels=None,
                 input_transient_channels=None, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        self.streams = StreamSplit(filters, transient_ratio, transient_channels, input_transient_channels)
        self.base_initializer = self.kernel_initializer

    def build(self, input_shape):
        residual_in, _ = self.streams.input(input_shape[-1])
        residual_out, _ = self.streams.output()
        self.kernel_initializer = ResNetInit(residual_out, residual_in, self.base_initializer)
        super().build(input_shape)

    def get_config(self):
        config = super().get_config()
        config["kernel_initializer"] = keras.initializers.serialize(self.base_initializer)
        config.update(self.streams.get_config())
        return config


def embed_at_centre(matrix, kernel_shape):
    """A kernel of ``kernel_shape`` holding ``matrix`` (r_in, r_out) in the top-left corner of its centre tap."""
    kh, kw, channels_in, channels_out = kernel_shape
    rows, cols = matrix.shape
    padded = ops.pad(matrix, [[0, channels_in - rows], [0, channels_out - cols]])
    centre = np.zeros((kh, kw, 1, 1), dtype="float32")
    centre[kh // 2, kw // 2] = 1.0
    return ops.cast(centre, padded.dtype) * padded[None, None]


@keras.saving.register_keras_serializable(package=PACKAGE)
class BatchNormalization(keras.layers.BatchNormalization):
    """Keras' BatchNormalization, trained through TensorFlow's fused kernel on the TensorFlow backend.

    Same variables, outputs, gradients and moving statistics as ``keras.layers.BatchNormalization``
    (to float rounding): only the kernels differ. Keras 3 computes a training step's normalization from
    about ten element-wise ops whose gradients take a fifth of a training step on a CPU; one
    ``FusedBatchNormV3`` and its gradient take a fraction of that. Elsewhere (JAX, inference,
    ``synchronized``, masks, renormalization, not 4-D channels-last) the Keras computation runs.
    """

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable and self._fusable(inputs, mask)):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        # Under mixed precision the kernel takes bfloat16 or float16 as they come (its statistics are
        # float32): no casts to float32 and back around it (docs/benchmarks.md, section 4).
        half = keras.backend.standardize_dtype(inputs.dtype) in ("bfloat16", "float16")
        x = inputs if half else ops.cast(inputs, "float32")
        channels = (x.shape[-1],)
        gamma = ops.cast(self.gamma, "float32") if self.scale else ops.ones(channels, "float32")
        beta = ops.cast(self.beta, "float32") if self.center else ops.zeros(channels, "float32")
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            x, gamma, beta, epsilon=self.epsilon, data_format="NHWC", is_training=True)
        count = ops.cast(ops.prod(ops.shape(x)[:-1]), "float32")
        variance = variance * (count - 1.0) / count  # the kernel returns the unbiased variance; Keras keeps the biased
        for moving, batch in ((self.moving_mean, mean), (self.moving_variance, variance)):
            moving.assign(ops.cast(moving, "float32") * self.momentum + batch * (1.0 - self.momentum))
        return ops.cast(outputs, self.compute_dtype)

    def _fusable(self, inputs, mask):
        return (keras.backend.backend() == "tensorflow" and mask is None and not self.renorm
                and not self.synchronized and len(inputs.shape) == 4 and self.axis in (-1, 3))


def leading_channels(x, channels):
    """The first ``channels`` channels of ``x``. A split, not a slice: TensorFlow's gradient of a
    slice (StridedSliceGrad) takes several times as long as a split's (a concatenation)."""
    if channels == x.shape[-1]:
        return x
    return ops.split(x, [channels], axis=-1)[0]


def zero_channels_after(x, channels):
    """``x`` with its channels from ``channels`` on set to zero (a product with a 0/1 mask)."""
    if channels == x.shape[-1]:
        return x
    return x * ops.convert_to_tensor(np.arange(x.shape[-1]) < channels, dtype=x.dtype)


def subsample(x, strides):
    """``x[:, ::sh, ::sw]``, as an average pooling of window 1 (the same values; its gradient is
    several times faster in TensorFlow than a strided slice's)."""
    if tuple(strides) == (1, 1):
        return x
    return ops.average_pool(x, pool_size=1, strides=strides, padding="valid", data_format="channels_last")


def fit_channels(x, channels):
    """Zero-pad or truncate the last axis of ``x`` to ``channels``."""
    have = x.shape[-1]
    if have < channels:
        return ops.pad(x, [[0, 0]] * (len(x.shape) - 1) + [[0, channels - have]])
    return leading_channels(x, channels)


@keras.saving.register_keras_serializable(package=PACKAGE)
class RiRConv2D(keras.layers.Layer):
    """The generalized residual layer (Targ et al. 2016, Eq. 1):

        r' = act(BN(conv(r, W_rr) + conv(m, W_mr) + shortcut(r)))
        m' = act(BN(conv(r, W_rm) + conv(m, W_mm)))

    on a tensor whose channels are ``[r | m]``. The layer holds ONE kernel
    ``[[W_rr, W_rm], [W_mr, W_mm]]``, exactly the parameters of a Conv2D of the same shape (plus a
    projection matrix where the shortcut is a projection and the placement is not ``"init"``).

    Args:
        filters: output channels, residual and transient together.
        kernel_size: odd int or pair (the identity sits at the centre tap).
        strides, padding: as for Conv2D, except that a strided 'same' convolution pads ``k // 2``
            on both sides (as He et al.'s networks do), so that its centre tap, and so its identity,
            reads pixels 0, 2, 4, ..., the pixels a block's strided shortcut reads. Where the shape
            changes, the shortcut samples the residual stream at the centre of each window.
        transient_ratio, transient_channels, input_transient_channels: the stream split, as for
            ``ResNetInitConv2D``.
        identity: where the shortcut lives.
            ``"init"``: written into the kernel's initial value (ResNet Init); one convolution. Weight
            decay pulls the identity toward zero too, so the network can learn to forget it.
            ``"constant"``: added to the kernel at call time; one convolution. Weight decay pulls the
            kernel toward the identity.
            ``"shortcut"``: Eq. 1 literally, four quadrant convolutions plus an explicit shortcut.
        shortcut: ``"identity"`` (zero channel padding where the residual stream grows) or
            ``"projection"`` (a learned r_in × r_out matrix, started at the identity) where the
            residual stream changes shape. Under ``"init"`` the kernel's centre tap already is a
            learned projection, so both give the same layer.
        activation: applied after batch normalization; ``None`` for the last layer of a block, whose
            activation follows the block's outer shortcut.
        kernel_initializer: initializer of ``W`` (He normal by default).
        kernel_regularizer: applied to the kernel and to the projection matrix.
        momentum, epsilon: of the batch normalization.
    """

    def __init__(self, filters, kernel_size=3, strides=1, padding="same", transient_ratio=0.5,
                 transient_channels=None, input_transient_channels=None, identity="init",
                 shortcut="identity", activation="relu", kernel_initializer="he_normal",
                 kernel_regularizer=None, momentum=0.9, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.streams = StreamSplit(filters, transient_ratio, transient_channels, input_transient_channels)
        self.filters = self.streams.filters
        self.kernel_size = odd_kernel_size(kernel_size)
        self.strides = strides_2d(strides)
        self.padding = check_choice("padding", padding, PADDINGS)
        self.identity = check_choice("identity", identity, IDENTITY_PLACEMENTS)
        self.shortcut = check_choice("shortcut", shortcut, SHORTCUTS)
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.momentum = momentum
        self.epsilon = epsilon
        self.batch_norm = BatchNormalization(momentum=momentum, epsilon=epsilon, name="batch_norm")

    def build(self, input_shape):
        channels_in = input_shape[-1]
        self.residual_in, self.transient_in = self.streams.input(channels_in)
        self.residual_out, self.transient_out = self.streams.output()
        self.kernel_shape = self.kernel_size + (channels_in, self.filters)
        initializer = self.kernel_initializer
        if self.identity == "init":
            initializer = ResNetInit(self.residual_out, self.residual_in, self.kernel_initializer)
        self.kernel = self.add_weight(
            name="kernel", shape=self.kernel_shape, initializer=initializer, regularizer=self.kernel_regularizer
        )
        reshapes = self.strides != (1, 1) or self.padding == "valid" or self.residual_in != self.residual_out
        self.projection = None
        if self.shortcut == "projection" and reshapes and self.identity != "init":
            self.projection = self.add_weight(
                name="projection", shape=(self.residual_in, self.residual_out),
                initializer=keras.initializers.Identity(), regularizer=self.kernel_regularizer,
            )
        out_shape = self.compute_output_shape(input_shape)
        self.batch_norm.build(out_shape)

    def compute_output_shape(self, input_shape):
        spatial = []
        for size, k, s in zip(input_shape[1:3], self.kernel_size, self.strides):
            if size is None:
                spatial.append(None)
            elif self.padding == "same":
                spatial.append(-(-size // s))
            else:
                spatial.append((size - k) // s + 1)
        return (input_shape[0], *spatial, self.filters)

    def identity_kernel(self):
        """The residual identity as a numpy kernel of this layer's shape."""
        return identity_kernel(self.kernel_shape, self.residual_in, self.residual_out)

    def shortcut_kernel(self):
        """The shortcut as a kernel of this layer's shape: the identity, or the embedded projection."""
        if self.projection is not None:
            return embed_at_centre(self.projection, self.kernel_shape)
        return ops.convert_to_tensor(self.identity_kernel(), dtype=self.kernel.dtype)

    def effective_kernel(self):
        """The one kernel that computes this layer's convolution, shortcut included."""
        if self.identity == "init":
            return ops.convert_to_tensor(self.kernel)
        return self.kernel + ops.cast(self.shortcut_kernel(), self.kernel.dtype)

    def _conv(self, x, kernel):
        padding = self.padding
        if padding == "same" and self.strides != (1, 1):
            x, padding = symmetric_padding(x, self.kernel_size), "valid"
        return ops.conv(x, kernel, strides=self.strides, padding=padding, data_format="channels_last")

    def _explicit_shortcut(self, residual):
        """shortcut(r) of Eq. 1, sampled where the kernel's centre tap reads."""
        if self.strides != (1, 1) or self.padding == "valid":
            square = identity_kernel(self.kernel_size + (self.residual_in, self.residual_in),
                                     self.residual_in, self.residual_in)
            residual = self._conv(residual, ops.cast(square, residual.dtype))
        if self.projection is not None:
            return ops.matmul(residual, ops.cast(self.projection, residual.dtype))
        return fit_channels(residual, self.residual_out)

    def _four_convolutions(self, x):
        """Eq. 1 literally: each stream's output sums a convolution of each input stream."""
        kernel = ops.cast(self.kernel, x.dtype)
        r_in, r_out = self.residual_in, self.residual_out
        inputs = [(x[..., :r_in], kernel[:, :, :r_in]), (x[..., r_in:], kernel[:, :, r_in:])]
        outputs = []
        for begin, end in ((0, r_out), (r_out, self.filters)):
            if end == begin:
                continue
            terms = [self._conv(stream, weights[..., begin:end]) for stream, weights in inputs if stream.shape[-1]]
            outputs.append(sum(terms[1:], terms[0]))
        if r_in and r_out:
            outputs[0] = outputs[0] + self._explicit_shortcut(x[..., :r_in])
        return outputs[0] if len(outputs) == 1 else ops.concatenate(outputs, axis=-1)

    def convolve(self, x):
        """The layer's output before batch normalization and activation."""
        if self.identity == "shortcut":
            return self._four_convolutions(x)
        return self._conv(x, ops.cast(self.effective_kernel(), x.dtype))

    def call(self, inputs, training=None):
        outputs = self.batch_norm(self.convolve(inputs), training=training)
        return outputs if self.activation is None else self.activation(outputs)

    def get_config(self):
        config = super().get_config()
        config.update(self.streams.get_config())
        config.update({
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "identity": self.identity,
            "shortcut": self.shortcut,
            "activation": keras.activations.serialize(self.activation) if self.activation else None,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "momentum": self.momentum,
            "epsilon": self.epsilon,
        })
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class BlockShortcut(keras.layers.Layer):
    """The outer shortcut of a residual block, onto the residual stream of the block's output.

    Takes the block input's first ``input_residual_channels`` channels and returns a tensor of the
    block output's full ``filters`` channels: the shortcut on the first ``residual_channels``, zeros
    on the transient ones (so a plain ``Add`` puts it on the residual stream only).

    ``mode="identity"`` subsamples with ``strides`` and zero-pads channels (He et al. option A);
    ``mode="projection"`` is a strided 1x1 convolution and batch normalization (option B).
    """

    def __init__(self, filters, residual_channels, input_residual_channels, strides=1, mode="identity",
                 kernel_initializer="he_normal", kernel_regularizer=None, momentum=0.9, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.residual_channels = int(residual_channels)
        self.input_residual_channels = int(input_residual_channels)
        self.strides = strides_2d(strides)
        self.mode = check_choice("mode", mode, SHORTCUTS)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.momentum = momentum
        self.epsilon = epsilon
        self.projection = None
        if self.mode == "projection":
            self.projection = keras.layers.Conv2D(
                self.residual_channels, 1, strides=self.strides, use_bias=False,
                kernel_initializer=self.kernel_initializer, kernel_regularizer=self.kernel_regularizer,
                name="projection",
            )
            self.batch_norm = BatchNormalization(momentum=momentum, epsilon=epsilon, name="batch_norm")

    def build(self, input_shape):
        if self.projection is not None:
            residual_shape = (*input_shape[:-1], self.input_residual_channels)
            self.projection.build(residual_shape)
            self.batch_norm.build(self.projection.compute_output_shape(residual_shape))

    def compute_output_shape(self, input_shape):
        spatial = [None if n is None else -(-n // s) for n, s in zip(input_shape[1:3], self.strides)]
        return (input_shape[0], *spatial, self.filters)

    def call(self, inputs, training=None):
        if self.projection is not None:
            residual = leading_channels(inputs, self.input_residual_channels)
            return fit_channels(self.batch_norm(self.projection(residual), training=training), self.filters)
        residual = subsample(inputs, self.strides)
        if self.input_residual_channels <= self.residual_channels and inputs.shape[-1] <= self.filters:
            # [residual | transient] -> [residual | zeros | zeros] in one product with a 0/1 mask: cheaper,
            # gradient included, than taking the residual channels apart and padding them back.
            return fit_channels(zero_channels_after(residual, self.input_residual_channels), self.filters)
        residual = fit_channels(leading_channels(residual, self.input_residual_channels), self.residual_channels)
        return fit_channels(residual, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters,
            "residual_channels": self.residual_channels,
            "input_residual_channels": self.input_residual_channels,
            "strides": self.strides,
            "mode": self.mode,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "momentum": self.momentum,
            "epsilon": self.epsilon,
        })
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class ForgetGate(keras.layers.Layer):
    """A forget gate on a shortcut: ``sigmoid(conv(x) + b) * shortcut``.

    Called on ``[x, shortcut]``: ``x`` is the block input, ``shortcut`` the tensor to gate. The
    gate covers the first ``channels`` channels of the shortcut (default: all of them; an RiR block
    gates its residual stream only, the rest of its shortcut being zeros). The convolution has ``strides`` so that the gate matches the
    shortcut's subsampling. ``bias_initializer`` defaults to 1.0, a gate that starts mostly open
    (sigmoid(1) ≈ 0.73), so a deep stack of gated shortcuts still carries signal at the start.
    """

    def __init__(self, channels=None, kernel_size=1, strides=1, kernel_initializer="glorot_uniform",
                 bias_initializer=keras.initializers.Constant(1.0), kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.kernel_size = kernel_size_2d(kernel_size)
        self.strides = strides_2d(strides)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def build(self, input_shape):
        x_shape, shortcut_shape = input_shape
        channels = shortcut_shape[-1] if self.channels is None else self.channels
        if not 1 <= channels <= shortcut_shape[-1]:
            raise ValueError(
                f"channels must be between 1 and the shortcut's {shortcut_shape[-1]} channels. "
                f"Received: channels={self.channels!r}"
            )
        self.gated = channels
        self.kernel = self.add_weight(
            name="kernel", shape=self.kernel_size + (x_shape[-1], channels),
            initializer=self.kernel_initializer, regularizer=self.kernel_regularizer,
        )
        self.bias = self.add_weight(name="bias", shape=(channels,), initializer=self.bias_initializer)

    def compute_output_shape(self, input_shape):
        return input_shape[1]

    def gate(self, x):
        logits = ops.conv(x, self.kernel, strides=self.strides, padding="same", data_format="channels_last")
        return ops.sigmoid(logits + self.bias)

    def call(self, inputs):
        x, shortcut = inputs
        if self.gated == shortcut.shape[-1]:
            return self.gate(x) * shortcut
        gated, rest = ops.split(shortcut, [self.gated], axis=-1)
        return ops.concatenate([self.gate(x) * gated, rest], axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update({
            "channels": self.channels,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
        })
        return config
