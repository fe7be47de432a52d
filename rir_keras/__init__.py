"""Resnet in Resnet (Targ, Almeida, Lyman 2016) for Keras 3: layers, initializer and blocks.

Constructors live in ``rir_keras.applications``, the hyperparameter grid in ``rir_keras.tuning``.
"""
from rir_keras import dependencies as _dependencies

_dependencies.choose_backend()  # before Keras is imported: JAX where TensorFlow is not installed
_dependencies.prefer_onednn()  # before TensorFlow is imported: its fast CPU kernels on every CPU

with _dependencies.quiet_tensorflow_startup():  # TensorFlow's C++ start-up log, as TF_CPP_MIN_LOG_LEVEL says
    from rir_keras.initializers import ResNetInit  # noqa: E402
    from rir_keras.layers import (  # noqa: E402
        BatchNormalization, BlockShortcut, ForgetGate, ResNetInitConv2D, RiRConv2D,
    )

__version__ = "0.9.0"
__all__ = ["ResNetInit", "ResNetInitConv2D", "RiRConv2D", "BlockShortcut", "ForgetGate", "BatchNormalization"]
