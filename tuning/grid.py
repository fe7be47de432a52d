"""The hyperparameter grid as data: named presets and user files (YAML or JSON), validated.

A grid file maps hyperparameter names to the non-empty list of values to try::

    learning_rate: [0.1, 0.01]
    optimizer: [sgd, adam]
    shortcut: [identity, projection]

Names not in the file keep the value the command line (or the constructor) gives them. Every
error names the file and the key: ``paper.yaml: optimizer: ... Received: optimizer='nadam'``.
"""
import json
import os
import re
from importlib import resources

import keras
import yaml

from rir_keras.layers import IDENTITY_PLACEMENTS, SHORTCUTS
from rir_keras.training import OPTIMIZERS

PRESET_PACKAGE = "rir_keras.tuning"
PRESET_FOLDER = "presets"

# Hyperparameters passed to the model's constructor, and those that shape the training.
MODEL_HYPERPARAMETERS = ("weight_decay", "kernel_initializer", "shortcut", "identity", "transient_ratio")
FIT_HYPERPARAMETERS = ("learning_rate", "optimizer", "momentum", "batch_size")


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _initializer(value):
    if not isinstance(value, str):
        return False
    try:
        keras.initializers.get(value)
    except ValueError:
        return False
    return True


# name: (check, what a value must be)
CHECKS = {
    "learning_rate": (lambda v: _number(v) and v > 0, "a number > 0"),
    "optimizer": (lambda v: v in OPTIMIZERS, f"one of {', '.join(OPTIMIZERS)}"),
    "momentum": (lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "batch_size": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "a positive integer"),
    "weight_decay": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "kernel_initializer": (_initializer, "the name of a Keras initializer (e.g. he_normal, glorot_uniform)"),
    "shortcut": (lambda v: v in SHORTCUTS, f"one of {', '.join(SHORTCUTS)}"),
    "identity": (lambda v: v in IDENTITY_PLACEMENTS, f"one of {', '.join(IDENTITY_PLACEMENTS)}"),
    "transient_ratio": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
}
HYPERPARAMETERS = tuple(CHECKS)
FLOATS = ("learning_rate", "momentum", "weight_decay", "transient_ratio")


class _Loader(yaml.SafeLoader):
    """YAML with YAML 1.2 floats: PyYAML alone reads ``1e-4`` (no dot) as a string."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),  # 1e-4, 1e4, 1.5e4
    list("-+0123456789"),
)


def read_yaml(text):
    """``text`` read as YAML, with YAML 1.2 floats (``1e-4`` is a number)."""
    return yaml.load(text, Loader=_Loader)


def preset_names():
    """The named grids shipped in ``tuning/presets``."""
    folder = resources.files(PRESET_PACKAGE) / PRESET_FOLDER
    return sorted(entry.name[:-5] for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def preset_path(name):
    return str(resources.files(PRESET_PACKAGE) / PRESET_FOLDER / f"{name}.yaml")


def load_grid(source):
    """The grid ``{name: [values]}`` of a preset name (``"paper"``) or a ``.yaml``/``.yml``/``.json`` file.

    Raises:
        ValueError: an unknown preset or file type, a file that does not parse, an unknown
            hyperparameter, an empty or non-list value, a duplicate value or a bad value.
        FileNotFoundError: a path that does not exist.
    """
    source = os.fspath(source)
    if source in preset_names():
        path = preset_path(source)
    elif os.path.splitext(source)[1].lower() in (".yaml", ".yml", ".json"):
        path = source
        if not os.path.isfile(path):
            raise FileNotFoundError(f"grid file not found. Received: grid={source!r}")
    else:
        raise ValueError(f"grid must be a preset ({', '.join(preset_names())}) or a .yaml, .yml or .json file. "
                         f"Received: grid={source!r}")
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    kind = "JSON" if path.lower().endswith(".json") else "YAML"
    try:
        raw = json.loads(text) if kind == "JSON" else read_yaml(text)
    except (ValueError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: not valid {kind} ({error}). Received: grid={source!r}") from error
    return validate_grid(raw, origin=path)


def validate_grid(raw, origin="<grid>"):
    """Check a grid mapping and return it with floats as floats (so ``0`` and ``1e-4`` mix)."""
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{origin}: a grid is a non-empty mapping of hyperparameter names to lists of values. "
                         f"Received: {type(raw).__name__} {raw!r}")
    grid = {}
    for key, values in raw.items():
        if key not in CHECKS:
            raise ValueError(f"{origin}: {key}: unknown hyperparameter; known: {', '.join(HYPERPARAMETERS)}. "
                             f"Received: {key}={values!r}")
        if not isinstance(values, list) or not values:
            raise ValueError(f"{origin}: {key}: must be a non-empty list of values. Received: {key}={values!r}")
        check, requirement = CHECKS[key]
        for value in values:
            if not check(value):
                raise ValueError(f"{origin}: {key}: each value must be {requirement}. Received: {key}={value!r}")
        if key in FLOATS:
            values = [float(v) for v in values]
        if len(set(values)) != len(values):
            raise ValueError(f"{origin}: {key}: values must not repeat. Received: {key}={values!r}")
        grid[key] = values
    return grid


def grid_size(grid):
    """Number of points of the grid: the product of its lists' lengths."""
    size = 1
    for values in grid.values():
        size *= len(values)
    return size
