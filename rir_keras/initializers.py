"""ResNet Init: a kernel initializer that writes the residual identity into a convolution kernel.

A convolution over the concatenated streams ``x = [r | m]`` with kernel
``[[W_rr + I, W_rm], [W_mr, W_mm]]`` computes the generalized residual layer of Targ et al.
(2016, Eq. 2) in one operation. ``I`` is the identity at the centre tap of the residual→residual
quadrant. Channels are laid out residual first, transient after, on both the input and output side.
"""
import keras
import numpy as np
from keras import ops

PACKAGE = "rir_keras"


def split_channels(channels, transient_ratio):
    """Split ``channels`` into ``(residual, transient)`` counts; the transient count is rounded."""
    transient = int(round(channels * transient_ratio))
    return channels - transient, transient


def identity_kernel(kernel_shape, residual_in, residual_out):
    """A numpy kernel that is the identity from the first ``min(residual_in, residual_out)``
    input channels to the same output channels, at the centre tap, and zero elsewhere.

    Where the residual counts differ, the identity covers their overlap: the extra output
    channels start at zero (the "zero channel padding" shortcut) and extra input channels are dropped.
    """
    kh, kw, channels_in, channels_out = kernel_shape
    kernel = np.zeros(kernel_shape, dtype="float32")
    overlap = np.arange(min(residual_in, residual_out))
    kernel[kh // 2, kw // 2, overlap, overlap] = 1.0
    return kernel


def check_kernel_shape(shape, residual_in, residual_out):
    """Raise ValueError unless ``shape`` is a 2D kernel with odd spatial size that holds the streams."""
    if len(shape) != 4:
        raise ValueError(
            "ResNetInit expects a 2D convolution kernel of shape (kh, kw, channels_in, channels_out). "
            f"Received: shape={tuple(shape)}"
        )
    kh, kw, channels_in, channels_out = shape
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(
            "ResNetInit needs an odd kernel size: an even kernel has no centre tap for the identity. "
            f"Received: kernel_size={(kh, kw)}"
        )
    if not 0 <= residual_in <= channels_in:
        raise ValueError(
            f"input_residual_channels must be between 0 and the kernel's {channels_in} input channels. "
            f"Received: input_residual_channels={residual_in}"
        )
    if not 0 <= residual_out <= channels_out:
        raise ValueError(
            f"residual_channels must be between 0 and the kernel's {channels_out} output channels. "
            f"Received: residual_channels={residual_out}"
        )


@keras.saving.register_keras_serializable(package=PACKAGE)
class ResNetInit(keras.initializers.Initializer):
    """Initializes a conv kernel as ``base + I`` where ``I`` is the residual identity.

    Args:
        residual_channels: number of residual channels on the kernel's output side (the first ones).
        input_residual_channels: number of residual channels on the input side; defaults to
            ``residual_channels``. Where the two differ, the identity covers their overlap.
        base_initializer: the initializer of ``W`` itself (default He normal, as in the paper).
    """

    def __init__(self, residual_channels, input_residual_channels=None, base_initializer="he_normal"):
        if int(residual_channels) != residual_channels or residual_channels < 0:
            raise ValueError(
                f"residual_channels must be a non-negative integer. Received: residual_channels={residual_channels!r}"
            )
        self.residual_channels = int(residual_channels)
        self.input_residual_channels = (
            self.residual_channels if input_residual_channels is None else int(input_residual_channels)
        )
        self.base_initializer = keras.initializers.get(base_initializer)

    def __call__(self, shape, dtype=None):
        check_kernel_shape(shape, self.input_residual_channels, self.residual_channels)
        identity = identity_kernel(tuple(shape), self.input_residual_channels, self.residual_channels)
        base = self.base_initializer(shape, dtype=dtype)
        return base + ops.cast(identity, base.dtype)

    def get_config(self):
        return {
            "residual_channels": self.residual_channels,
            "input_residual_channels": self.input_residual_channels,
            "base_initializer": keras.initializers.serialize(self.base_initializer),
        }
