"""Resnet in Resnet (Targ, Almeida, Lyman 2016) for Keras 3: layers, initializer and blocks.

Constructors live in ``rir_keras.applications``, the hyperparameter grid in ``rir_keras.tuning``.

``import rir_keras`` registers the package's layers and initializer with Keras, so that saved models
using them load (``keras.saving.load_model``). Where Keras is not installed at all, it registers
nothing and imports no backend: the modules that need no Keras still work there, `rir_keras.runs`
(a training run's folder) and `rir_keras.atomic` (atomic writes), as in the bare ``python3`` that
runs tools/gpu/runner.py's ``collect`` and ``size`` on this side; the layers' names then raise a
`rir_keras.dependencies.MissingDependency`. Importing a submodule always runs this file first, so
this is the one place that decides.
"""
from rir_keras import dependencies as _dependencies

__version__ = "0.14.0"
__all__ = ["ResNetInit", "ResNetInitConv2D", "RiRConv2D", "BlockShortcut", "ForgetGate", "BatchNormalization"]

if _dependencies.installed("keras"):
    _dependencies.choose_backend()  # before Keras is imported: JAX where TensorFlow is not installed
    _dependencies.prefer_onednn()  # before TensorFlow is imported: its fast CPU kernels on every CPU

    with _dependencies.quiet_tensorflow_startup():  # TensorFlow's C++ start-up log, as TF_CPP_MIN_LOG_LEVEL says
        from rir_keras.initializers import ResNetInit
        from rir_keras.layers import (
            BatchNormalization, BlockShortcut, ForgetGate, ResNetInitConv2D, RiRConv2D,
        )
else:
    def __getattr__(name):
        if name in __all__:
            raise _dependencies.MissingDependency(f"rir_keras.{name} needs Keras, which is not installed: "
                                                  "pip install rir_keras (or keras and jax)")
        raise AttributeError(f"module 'rir_keras' has no attribute {name!r}")
