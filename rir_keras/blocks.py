"""Building blocks of the paper's four architectures, as functions ``(x, filters, spec, ..., name)``.

| | plain layers | generalized residual layers (ResNet Init) |
| --- | --- | --- |
| no outer shortcuts | CNN | ResNet Init |
| outer shortcut every block | ResNet | RiR |

A ``LayerSpec`` says which column and carries the options shared by every layer of a model.
"""
import dataclasses

import keras

from rir_keras.layers import (
    IDENTITY_PLACEMENTS, SHORTCUTS, BlockShortcut, ForgetGate, RiRConv2D, check_choice, check_ratio,
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
        weight_decay: L2 penalty on every convolution kernel and the classifier.
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
        return keras.regularizers.L2(self.weight_decay) if self.weight_decay else None

    @property
    def stream_ratio(self):
        """The transient share of a tensor between layers: none unless layers are generalized."""
        return self.transient_ratio if self.generalized else 0.0

    def initializer(self):
        """A fresh initializer object per layer, so layers never share one seeded instance."""
        return keras.initializers.get(keras.initializers.serialize(keras.initializers.get(self.kernel_initializer)))


def conv_bn(x, filters, spec, *, kernel_size=3, strides=1, padding="same", activation="relu", name):
    """One layer: a generalized residual layer, or Conv2D + BatchNorm (+ activation), by ``spec``."""
    if spec.generalized:
        return RiRConv2D(
            filters, kernel_size, strides=strides, padding=padding, transient_ratio=spec.transient_ratio,
            identity=spec.identity, shortcut=spec.shortcut, activation=activation,
            kernel_initializer=spec.initializer(), kernel_regularizer=spec.regularizer,
            momentum=spec.momentum, epsilon=spec.epsilon, name=name,
        )(x)
    x = keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding, use_bias=False,
        kernel_initializer=spec.initializer(), kernel_regularizer=spec.regularizer, name=f"{name}_conv",
    )(x)
    x = keras.layers.BatchNormalization(momentum=spec.momentum, epsilon=spec.epsilon, name=f"{name}_bn")(x)
    if activation is None:
        return x
    return keras.layers.Activation(activation, name=f"{name}_{activation}")(x)


def residual_count(channels, spec):
    return channels - int(round(channels * spec.stream_ratio))


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
        kernel_initializer=spec.initializer(), kernel_regularizer=spec.regularizer,
        momentum=spec.momentum, epsilon=spec.epsilon, name=f"{name}_shortcut",
    )(inputs)
    if spec.gate:
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
