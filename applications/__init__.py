"""keras.applications-style constructors for the networks of Resnet in Resnet (Targ et al. 2016)."""
from rir_keras.applications.networks import (
    CNN32, CNN18Wide, AllCNNC, ResNet32, ResNet18Wide, ResNetInit32, ResNetInit18Wide, RiR32, RiR18Wide, RiRNet,
)
from rir_keras.applications.registry import GROUPS, RECORDS, ModelSpec, Record, build, names, record
from rir_keras.preprocessing import decode_predictions, preprocess_input

__all__ = [
    "CNN32", "ResNet32", "ResNetInit32", "RiR32", "CNN18Wide", "ResNet18Wide", "ResNetInit18Wide", "RiR18Wide",
    "RiRNet", "AllCNNC", "RECORDS", "GROUPS", "Record", "ModelSpec", "build", "names", "record", "preprocess_input",
    "decode_predictions",
]
