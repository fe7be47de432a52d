"""Building blocks of the paper's four architectures, as functions ``(x, filters, spec, ..., name)``.

| | plain layers | generalized residual layers (ResNet Init) |
| --- | --- | --- |
| no outer shortcuts | CNN | ResNet Init |
| outer shortcut every block | ResNet | RiR |

A ``LayerSpec`` says which column and carries the options shared by every layer of a model.
"""
import dataclasses
import zlib

import keras

from rir_keras.initializers import split_channels
from rir_keras.layers import (
    IDENTITY_PLACEMENTS, SHORTCUTS, BatchNormalization, BlockShortcut, ForgetGate, RiRConv2D, check_choice,
    check_ratio,
)


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """Options shared by the layers of one model.

    Attributes:
        generalized: generalized residual layers (``RiRConv2D``) instead of Conv2D + BN + ReLU.
        identity: where a generalized layer keeps its identity (see ``RiRConv2D``).
        shortcut: ``"identity"`` or ``"projection"`` where a shortcut changes shape.
        transient_ratio: share of each generalized layer's channels in the transient stream.
        gate: put a ``ForgetGate`` on each block's outer shortcut.
        kernel_initializer: initializer of every convolution kernel.
        weight_decay: weight decay of every convolution kernel and the classifier's, in the sense of
            He et al., Torch and Caffe: it adds ``weight_decay * w`` to each kernel's gradient. Keras
            writes that as ``keras.regularizers.L2(weight_decay / 2)`` (``L2(l)`` adds
            ``l * sum(w ** 2)`` to the loss, whose gradient is ``2 * l * w``).
        momentum, epsilon: of every batch normalization.
    """

    generalized: bool = False
    identity: str = "init"
    shortcut: str = "identity"
    transient_ratio: float = 0.5
    gate: bool = False
    kernel_initializer: object = "he_normal"
    weight_decay: float = 0.0
    momentum: float = 0.9
    epsilon: float = 1e-5

    def __post_init__(self):
        check_choice("identity", self.identity, IDENTITY_PLACEMENTS)
        check_choice("shortcut", self.shortcut, SHORTCUTS)
        check_ratio(self.transient_ratio)
        if not isinstance(self.weight_decay, (int, float)) or self.weight_decay < 0:
            raise ValueError(f"weight_decay must be a number >= 0. Received: weight_decay={self.weight_decay!r}")
        keras.initializers.get(self.kernel_initializer)  # raises on an unknown initializer name

    @property
    def regularizer(self):
        return keras.regularizers.L2(self.weight_decay / 2) if self.weight_decay else None

    @property
    def stream_ratio(self):
        """The transient share of a tensor between layers: none unless layers are generalized."""
        return self.transient_ratio if self.generalized else 0.0

    def initializer(self, name):
        """A fresh initializer for the layer called ``name``.

        A seeded initializer (e.g. ``HeNormal(seed=3)``) gets a seed of its own for each layer,
        derived from its seed and the layer's name: same-shaped layers never start equal, and the
        same model built twice starts the same.
        """
        config = keras.initializers.serialize(keras.initializers.get(self.kernel_initializer))
        seed = config.get("config", {}).get("seed")
        if isinstance(seed, int):
            config["config"]["seed"] = (seed + zlib.crc32(name.encode())) % 2**31
        return keras.initializers.get(config)


def conv_bn(x, filters, spec, *, kernel_size=3, strides=1, padding="same", activation="relu", name):
    """One layer: a generalized residual layer, or Conv2D + BatchNorm (+ activation), by ``spec``.

    A strided 'same' layer pads ``kernel_size // 2`` on both sides in every family, so that it
    reads the pixels the block's strided shortcut reads (see ``rir_keras.layers.symmetric_padding``).
    """
    if spec.generalized:
        return RiRConv2D(
            filters, kernel_size, strides=strides, padding=padding, transient_ratio=spec.transient_ratio,
            identity=spec.identity, shortcut=spec.shortcut, activation=activation,
            kernel_initializer=spec.initializer(name), kernel_regularizer=spec.regularizer,
            momentum=spec.momentum, epsilon=spec.epsilon, name=name,
        )(x)
    if strides != 1 and padding == "same":
        x = keras.layers.ZeroPadding2D(kernel_size // 2, name=f"{name}_pad")(x)
        padding = "valid"
    x = keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding, use_bias=False,
        kernel_initializer=spec.initializer(f"{name}_conv"), kernel_regularizer=spec.regularizer,
        name=f"{name}_conv",
    )(x)
    x = BatchNormalization(momentum=spec.momentum, epsilon=spec.epsilon, name=f"{name}_bn")(x)
    if activation is None:
        return x
    return keras.layers.Activation(activation, name=f"{name}_{activation}")(x)


def residual_count(channels, spec):
    return split_channels(channels, spec.stream_ratio)[0]


def block(x, filters, spec, *, layers=2, strides=1, outer_shortcut=True, name):
    """``layers`` layers; the first has ``strides``. With ``outer_shortcut`` the block input is
    added to the residual stream of the last layer's output (all of it, for plain layers),
    before that layer's activation, as in He et al.'s ResNet."""
    inputs = x
    for index in range(layers):
        last = index == layers - 1
        x = conv_bn(
            x, filters, spec, strides=strides if index == 0 else 1,
            activation=None if (last and outer_shortcut) else "relu", name=f"{name}_{index + 1}",
        )
    if not outer_shortcut:
        return x
    residual = residual_count(filters, spec)
    shortcut = BlockShortcut(
        filters, residual, residual_count(inputs.shape[-1], spec), strides=strides,
        mode=spec.shortcut if (strides != 1 or inputs.shape[-1] != filters) else "identity",
        kernel_initializer=spec.initializer(f"{name}_shortcut"), kernel_regularizer=spec.regularizer,
        momentum=spec.momentum, epsilon=spec.epsilon, name=f"{name}_shortcut",
    )(inputs)
    if spec.gate:
        if residual == 0:
            raise ValueError(f"a forget gate gates the residual stream, which transient_ratio="
                             f"{spec.transient_ratio!r} leaves empty in {filters}-channel block {name!r}: lower "
                             f"transient_ratio or drop the gate. Received: transient_ratio={spec.transient_ratio!r}")
        shortcut = ForgetGate(residual, strides=strides, kernel_regularizer=spec.regularizer, name=f"{name}_gate")(
            [inputs, shortcut]
        )
    x = keras.layers.Add(name=f"{name}_add")([x, shortcut])
    return keras.layers.Activation("relu", name=f"{name}_out")(x)


def stage(x, filters, spec, *, blocks, layers=2, strides=1, outer_shortcut=True, name):
    """``blocks`` blocks of ``filters`` channels; the first one downsamples by ``strides``."""
    for index in range(blocks):
        x = block(
            x, filters, spec, layers=layers, strides=strides if index == 0 else 1,
            outer_shortcut=outer_shortcut, name=f"{name}_block{index + 1}",
        )
    return x
