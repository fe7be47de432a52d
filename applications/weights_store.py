"""The store of shipped trained weights: its folder and manifest, the weights names, and how a
constructor's ``weights="cifar10"`` is checked and loaded.

`WEIGHTS_NAMES`: ``weights="cifar10"`` (and ``"cifar10_paper"``, the paper's recipe) for CNN32,
ResNet32, ResNetInit32 and RiR32; ``"cifar10"`` and ``"cifar100"`` for the four 18-layer-wide
networks (`shipping` says which models each name is offered for).

The store is the folder ``weights/`` inside this package (installed with it as package data). It
holds the weights files and ``manifest.json``, one entry per (registry model, weights name)::

    {"rir32": {"cifar10": {"file": "rir32-cifar10-1a2b3c4d.weights.h5", "sha256": "1a2b3c4d...",
                           "spec": {"registry_name": "rir32", ...}, ...}}}

Each file holds the model's weights only (no optimizer state) and is named
``<registry name>-<weights name>-<first 8 hex digits of its SHA-256>.weights.h5``; the full SHA-256
is in its entry and is checked every time the file is loaded, so a corrupted or missing file
raises ValueError instead of giving a silently wrong model. The entry carries what torchvision's
weight enums carry (see `ENTRY_FIELDS`): the model's spec (`registry.ModelSpec`: registry name,
constructor options, input shape, classes, preprocessing), the dataset, split and class names, the
top-1 accuracy measured on the full test split and the command that measured it (and, beside it,
with test-time flips), the recipe, epochs, seed, parameters, Keras and backend versions, date and
machine. ``tools/ship_weights.py`` writes files and entries from a finished training run;
``benchmarks/model_table.py --cards --output docs/models.md`` writes them as model cards there.

Loading follows keras.applications: with ``include_top=True`` the classes must be the weights'
classes; ``include_top=False`` loads the body. Options that change the function the network
computes (`FUNCTION_OPTIONS`) must equal the entry's; options that only change training
(weight decay, initializer), the model's name, its pooling and its input size are free.
``include_preprocessing=False`` is allowed too: the model then takes
``preprocess_input(images, preprocessing)`` with the entry's ``preprocessing``.

This module sits below the constructors (`rir_keras.applications.networks` asks it, and hands it
the constructor that rebuilds an entry's model); `rir_keras.applications.pretrained`, above the
registry, builds, measures and checks shipped weights by registry name.
"""
import dataclasses
import inspect
import json
import os
import re
from typing import Callable

import numpy as np

from rir_keras import preprocessing as preprocessing_lib
from rir_keras.data import file_sha256 as sha256  # noqa: F401  (the store's files are checked by it)
from rir_keras.weights_file import load_weights

# The folder of shipped weights and its manifest. Read at each call, so tests and
# tools/ship_weights.py can point it at another folder.
STORE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
MANIFEST = "manifest.json"

# The names ``weights=`` accepts besides None and a path, and what each one means, as torchvision
# names weights after how they were trained. "cifar10", the default, is the zoo's best: the `long`
# recipe's weights on the official CIFAR-10, or, until a model's `long` run has finished, its `fast`
# run's (its entry says which recipe and which data); "cifar10_paper" the paper's recipe (82
# epochs, step decay), which trains on a lent GPU (tools/gpu/, stage table1); "cifar100" the same as
# "cifar10" on the official CIFAR-100 (the wide networks: the lent GPU's stage wide100 trains them with
# `fast`, as wide10 does for their "cifar10"). A weights name's ``recipes`` come best first: shipping
# never replaces weights of a better recipe by a worse one. ``archives``: the files of the official
# data, lossless, that ``source`` may resolve to under $RIR_KERAS_DATA (`rir_keras.data.resolve_source`).
# ``models``: the registry models the training campaigns ship it for (`shipping`), shipped or not yet.
_TABLE1 = ("cnn32", "resnet32", "resnet_init32", "rir32")
_WIDE = ("cnn18_wide", "resnet18_wide", "resnet_init18_wide", "rir18_wide")
_CIFAR10 = {
    "dataset": "CIFAR-10",  # the official data, lossless; older entries say "CIFAR-10 (JPEG copy)"
    "source": "cifar10",  # the --dataset argument
    "archives": ("cifar10-webp.tar.gz",),
    "split": "test",
    "classes": list(preprocessing_lib.CIFAR10_CLASSES),
}
_CIFAR100 = {
    "dataset": "CIFAR-100",  # the official data, lossless (fine labels)
    "source": "cifar100",
    "archives": ("cifar100-webp.tar.gz", "cifar100-png.tar.gz"),  # the same pixels (tools/gpu/make_webp.py)
    "split": "test",
    "classes": list(preprocessing_lib.CIFAR100_CLASSES),
}
WEIGHTS_NAMES = {
    "cifar10": {**_CIFAR10, "recipes": ("long", "fast"), "models": _TABLE1 + _WIDE},
    "cifar10_paper": {**_CIFAR10, "recipes": ("paper",), "models": _TABLE1},  # the lent GPU's stage table1
    "cifar100": {**_CIFAR100, "recipes": ("long", "fast"), "models": _WIDE},  # the lent GPU's stage wide100
}
# Constructor options that change the function the network computes: they must equal the entry's.
FUNCTION_OPTIONS = ("shortcut", "identity", "transient_ratio", "width_multiplier", "forget_gate", "preprocessing")
# Options that only change training (or the name): free when loading.
TRAINING_OPTIONS = ("weight_decay", "kernel_initializer")

HEAD = "logits"  # the classifier's layers (networks.HEADS) are named so: left out with include_top=False
FILE_PATTERN = re.compile(r"^(?P<name>[a-z0-9_]+)-(?P<weights>[a-z0-9_]+)-(?P<digest>[0-9a-f]{8})\.weights\.h5$")

# Every field of an entry, its type(s), and what it means (docs/models.md shows the same list).
ENTRY_FIELDS = {
    "weights": (str, "the weights name the constructors take, e.g. `weights=\"cifar10\"`"),
    "file": (str, "the weights file in the store, `<registry name>-<weights>-<sha256[:8]>.weights.h5`"),
    "sha256": (str, "SHA-256 of the file, checked at every load"),
    "spec": (dict, "the model the weights belong to (`registry.ModelSpec`): registry name, constructor "
                   "options, input shape, classes, preprocessing; `pretrained.build` builds it"),
    "dataset": (str, "the data trained and measured on: CIFAR-10 or CIFAR-100 (the official data), or "
                     "CIFAR-10 (JPEG copy)"),
    "dataset_sha256": ((str, type(None)), "SHA-256 of the dataset archive measured on"),
    "train_split": (str, "the split trained on"),
    "train_images": (int, "images trained on"),
    "split": (str, "the split measured on"),
    "test_images": (int, "images measured on: the full split"),
    "classes": (list, "the class names, in label order"),
    "top1": (float, "top-1 accuracy measured on the full split, through `weights=...` (correct / test_images)"),
    "correct": (int, "images classified correctly"),
    "command": (str, "the command that measured `top1`"),
    "top1_flip": ((float, type(None)), "top-1 with test-time flips (each image's and its mirror's predictions "
                                       "averaged; `rir-keras evaluate ... --tta flip`), beside `top1`, never "
                                       "instead of it; null where not measured (older entries)"),
    "correct_flip": ((int, type(None)), "images classified correctly with test-time flips; null where not measured"),
    "recipe": (str, "the training recipe (`rir_keras.recipes`): one of those its weights name stands for"),
    "config": (dict, "every training setting of the run"),
    "epochs": (int, "epochs trained: the final epoch's weights, never one chosen by test accuracy"),
    "seed": (int, "the training seed (always 0: seeds are never chosen by test accuracy)"),
    "parameters": (int, "parameters of the model (batch-norm moving statistics included)"),
    "trainable_parameters": (int, "trainable parameters"),
    "keras_version": (str, "Keras version of the measurement"),
    "backend": (str, "Keras backend of the measurement"),
    "backend_version": (str, "version of that backend"),
    "date": (str, "date of the measurement (UTC, ISO 8601)"),
    "machine": (str, "the machine that measured"),
    "training": (dict, "how the run went: backend, machine, wall time, the run's folder, and its own final "
                       "count of correct images where another backend or machine measured a different one"),
}


def _received(name, value):
    return f"Received: {name}={value!r}"


def shipping(weights):
    """The registry names the training campaigns ship ``weights`` for (shipped or not yet)."""
    return WEIGHTS_NAMES[weights]["models"]


def weights_for_recipe(recipe, dataset="cifar10"):
    """The weights name that ships runs of ``recipe`` on ``dataset`` (a `WEIGHTS_NAMES` source: "long"
    and "fast" on "cifar10" -> "cifar10", on "cifar100" -> "cifar100"), or None."""
    return next((name for name, meaning in WEIGHTS_NAMES.items()
                 if recipe in meaning["recipes"] and meaning["source"] == dataset), None)


def manifest_path(store=None):
    return os.path.join(store or STORE, MANIFEST)


def read_manifest(store=None):
    """The manifest of ``store`` (default: the package's) as a dict; ``{}`` when it has none."""
    path = manifest_path(store)
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def entry(name, weights="cifar10", store=None):
    """The manifest entry of registry model ``name``'s ``weights``, or ``None``."""
    return read_manifest(store).get(name, {}).get(weights)


def entries(store=None):
    """Every entry of the store, sorted by model and weights name."""
    manifest = read_manifest(store)
    return [manifest[name][weights] for name in sorted(manifest) for weights in sorted(manifest[name])]


def file_name(name, weights, digest):
    """``<name>-<weights>-<digest[:8]>.weights.h5``."""
    return f"{name}-{weights}-{digest[:8]}.weights.h5"


@dataclasses.dataclass(frozen=True)
class Shipped:
    """A request for shipped weights, checked against the constructor's options: what a
    constructor passes on as ``weights`` in place of ``"cifar10"``. Load it with `load_into`, which
    rebuilds the entry's model with ``constructor``."""

    name: str
    weights: str
    entry: dict
    include_top: bool
    store: str
    constructor: Callable

    @property
    def path(self):
        return os.path.join(self.store, self.entry["file"])


def _same(option, ours, theirs):
    if option == "preprocessing":  # "cifar10" and its statistics written out are the same function
        ours, theirs = preprocessing_lib.resolve(ours), preprocessing_lib.resolve(_tuple(theirs))
        if ours is None or theirs is None:
            return ours is None and theirs is None
        return all(a.shape == b.shape and np.allclose(a, b, rtol=1e-6, atol=0) for a, b in zip(ours, theirs))
    return json.loads(json.dumps(ours)) == json.loads(json.dumps(theirs))


def _tuple(value):
    return tuple(value) if isinstance(value, list) else value


def spec_options(spec):
    """The constructor options of a model spec in its stored form (``registry.ModelSpec.to_dict``): its
    options, input shape, classes and preprocessing. `registry.ModelSpec.constructor_options` is this."""
    return {**spec["options"], "input_shape": tuple(spec["input_shape"]), "classes": spec["classes"],
            "preprocessing": _tuple(spec["preprocessing"])}


def trained_options(entry):
    """The constructor options a manifest entry's model was built with."""
    return spec_options(entry["spec"])


def keyword_defaults(constructor):
    """The default of every keyword of ``constructor`` (`registry.Record.defaults` starts from these)."""
    return {p.name: p.default for p in inspect.signature(constructor).parameters.values()
            if p.default is not inspect.Parameter.empty}


def request(name, arguments, constructor, store=None):
    """What ``constructor``, of registry model ``name``, loads for ``arguments`` (its call's arguments).

    ``arguments["weights"]`` other than a weights name (None, a path) comes back unchanged. A
    weights name comes back as a `Shipped` once checked: it must be shipped for ``name``, the
    options in `FUNCTION_OPTIONS` must equal the entry's and, with ``include_top``, ``classes``
    too. Raises a one-line ValueError naming the first thing that differs.
    """
    weights = arguments.get("weights")
    if not (isinstance(weights, str) and weights in WEIGHTS_NAMES):
        return weights
    store = store or STORE
    found = entry(name, weights, store)
    if found is None:
        raise unavailable(name, weights, store)
    trained = {**keyword_defaults(constructor), **trained_options(found)}
    for option in FUNCTION_OPTIONS:
        if option in arguments and not _same(option, arguments[option], trained.get(option)):
            raise ValueError(f"weights={weights!r} for {name} were trained with {option}={trained.get(option)!r}: "
                             f"build it with that, or weights=None. {_received(option, arguments[option])}")
    include_top = arguments.get("include_top", True)
    if include_top and arguments.get("classes") != trained["classes"]:
        raise ValueError(f"weights={weights!r} for {name} classify {trained['classes']} classes: with "
                         f"include_top=True, classes must be {trained['classes']} (or include_top=False). "
                         f"{_received('classes', arguments.get('classes'))}")
    shape, channels = arguments.get("input_shape"), (trained.get("input_shape") or (None, None, 3))[-1]
    if shape is not None and len(tuple(shape)) == 3 and tuple(shape)[-1] != channels:
        raise ValueError(f"weights={weights!r} for {name} take images of {channels} channels. "
                         f"{_received('input_shape', shape)}")
    return Shipped(name=name, weights=weights, entry=found, include_top=bool(include_top), store=store,
                   constructor=constructor)


def unavailable(name, weights, store=None):
    """The ValueError for ``weights`` asked of registry model ``name`` (or of a constructor with no
    registry name: ``name=None``) that the store has no entry for."""
    campaign = shipping(weights)
    if name in campaign:
        return ValueError(f"weights={weights!r} for {name} are not available yet: its training campaign "
                          f"(recipe {' or '.join(WEIGHTS_NAMES[weights]['recipes'])}) has not finished (see docs/results.md). "
                          f"{_received('weights', weights)}")
    shipped = sorted({model for model, by_weights in read_manifest(store).items() if weights in by_weights}
                     | set(campaign))
    which = f"{name}" if name else "this constructor"
    return ValueError(f"weights={weights!r} is not offered for {which}: only for the registry models "
                      f"{', '.join(shipped)}. {_received('weights', weights)}")


def is_requested(weights):
    """Whether ``weights`` asks for shipped weights: a `Shipped`, or a weights name such as "cifar10"."""
    return isinstance(weights, Shipped) or (isinstance(weights, str) and weights in WEIGHTS_NAMES)


def verify(shipped):
    """Raise ValueError unless ``shipped``'s file exists and has the SHA-256 of its entry."""
    path, expected = shipped.path, shipped.entry["sha256"]
    where = f"weights={shipped.weights!r} for {shipped.name}"
    if not os.path.isfile(path):
        raise ValueError(f"{where}: the weights file {path} is missing (the manifest names it); reinstall "
                         f"rir_keras. {_received('weights', shipped.weights)}")
    actual = sha256(path)
    if actual != expected:
        raise ValueError(f"{where}: the weights file {path} is corrupted: its SHA-256 is {actual}, the manifest's "
                         f"{expected}; reinstall rir_keras. {_received('weights', shipped.weights)}")


def load_into(model, shipped):
    """Load ``shipped`` (a `Shipped` from `request`) into ``model``, built with the options it was
    checked against. The file is verified first; then the model built as the entry says (its top
    included, by ``shipped.constructor``) loads the file, and ``model`` takes each of its layers'
    weights by layer name, so ``include_top=False`` gets the body. A bare weights name (a
    constructor with no shipped weights) raises `unavailable`."""
    if not isinstance(shipped, Shipped):
        raise unavailable(None, shipped)
    verify(shipped)
    source = shipped.constructor(**trained_options(shipped.entry), include_top=True, weights=None)
    try:
        load_weights(source, shipped.path)  # checks every stored shape against the model's
    except ValueError as error:
        raise ValueError(f"weights={shipped.weights!r} for {shipped.name}: the file does not fit the model its "
                         f"entry describes ({error}). {_received('weights', shipped.weights)}") from error
    ours = {layer.name: layer for layer in model.layers}
    for layer in source.layers:
        if not layer.weights:
            continue
        target = ours.get(layer.name)
        if target is None:
            if shipped.include_top or not layer.name.startswith(HEAD):
                raise ValueError(f"weights={shipped.weights!r} for {shipped.name}: the model has no layer "
                                 f"{layer.name!r}. {_received('weights', shipped.weights)}")
            continue  # the head, left out with include_top=False
        try:
            target.set_weights(layer.get_weights())
        except ValueError as error:
            raise ValueError(f"weights={shipped.weights!r} for {shipped.name}: layer {layer.name!r} differs "
                             f"({error}). {_received('weights', shipped.weights)}") from error
    return model
