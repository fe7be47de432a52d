"""Resnet in Resnet (Targ, Almeida, Lyman 2016) for Keras 3: layers, initializer and blocks.

Constructors live in ``rir_keras.applications``, the hyperparameter grid in ``rir_keras.tuning``.
"""
from rir_keras.initializers import ResNetInit
from rir_keras.layers import BlockShortcut, ForgetGate, ResNetInitConv2D, RiRConv2D

__version__ = "0.2.0"
__all__ = ["ResNetInit", "ResNetInitConv2D", "RiRConv2D", "BlockShortcut", "ForgetGate"]
