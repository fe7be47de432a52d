"""Shipped trained weights (`WEIGHTS_NAMES`): ``weights="cifar10"`` (and ``"cifar10_paper"``, the
paper's recipe) for CNN32, ResNet32, ResNetInit32 and RiR32; ``"cifar10"`` and ``"cifar100"`` for
the four 18-layer-wide networks (registry.shipping says which models each name is offered for).

The store is the folder ``weights/`` inside this package (installed with it as package data). It
holds the weights files and ``manifest.json``, one record per (registry model, weights name)::

    {"rir32": {"cifar10": {"file": "rir32-cifar10-1a2b3c4d.weights.h5", "sha256": "1a2b3c4d...",
                           "spec": {"registry_name": "rir32", ...}, ...}}}

Each file holds the model's weights only (no optimizer state) and is named
``<registry name>-<weights name>-<first 8 hex digits of its SHA-256>.weights.h5``; the full SHA-256
is in its record and is checked every time the file is loaded, so a corrupted or missing file
raises ValueError instead of giving a silently wrong model. The record carries what torchvision's
weight enums carry (see `RECORD_FIELDS`): the model's spec (`registry.ModelSpec`: registry name,
constructor options, input shape, classes, preprocessing), the dataset, split and class names, the top-1 accuracy measured on the full test
split and the command that measured it (and, beside it, with test-time flips), the recipe,
epochs, seed, parameters, Keras and backend versions, date and machine. ``tools/ship_weights.py`` writes files and records from a finished
training run; ``benchmarks/model_table.py --cards --output docs/models.md`` writes them as model cards there.

Loading follows keras.applications: with ``include_top=True`` the classes must be the weights'
classes; ``include_top=False`` loads the body. Options that change the function the network
computes (`FUNCTION_OPTIONS`) must equal the record's; options that only change training
(weight decay, initializer), the model's name, its pooling and its input size are free.
``include_preprocessing=False`` is allowed too: the model then takes
``preprocess_input(images, preprocessing)`` with the record's ``preprocessing``.
"""
import dataclasses
import json
import os
import re
import textwrap

import numpy as np

from rir_keras import preprocessing as preprocessing_lib
from rir_keras.data import file_sha256 as sha256  # noqa: F401  (the store's files are checked by it)

# The folder of shipped weights and its manifest. Read at each call, so tests and
# tools/ship_weights.py can point it at another folder.
STORE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
MANIFEST = "manifest.json"

# The names ``weights=`` accepts besides None and a path, and what each one means, as torchvision
# names weights after how they were trained. "cifar10", the default, is the zoo's best: the `long`
# recipe's weights on the official CIFAR-10, or, until a model's `long` run has finished, its `fast`
# run's (its record says which recipe and which data); "cifar10_paper" the paper's recipe (82
# epochs, step decay), which trains on a lent GPU (tools/gpu/, stage table1); "cifar100" the same as
# "cifar10" on the official CIFAR-100 (the wide networks: the lent GPU's stage wide100 trains them with
# `fast`, as wide10 does for their "cifar10"). A weights name's ``recipes`` come best first: shipping
# never replaces weights of a better recipe by a worse one. ``archives``: the files of the official
# data, lossless, that ``source`` may resolve to under $RIR_KERAS_DATA (`rir_keras.data.resolve_source`).
_CIFAR10 = {
    "dataset": "CIFAR-10",  # the official data, lossless; older records say "CIFAR-10 (JPEG copy)"
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
    "cifar10": {**_CIFAR10, "recipes": ("long", "fast")},
    "cifar10_paper": {**_CIFAR10, "recipes": ("paper",)},
    "cifar100": {**_CIFAR100, "recipes": ("long", "fast")},
}
# Constructor options that change the function the network computes: they must equal the record's.
FUNCTION_OPTIONS = ("shortcut", "identity", "transient_ratio", "width_multiplier", "forget_gate", "preprocessing")
# Options that only change training (or the name): free when loading.
TRAINING_OPTIONS = ("weight_decay", "kernel_initializer")

HEAD = "logits"  # the classifier's layers (networks.HEADS) are named so: left out with include_top=False
FILE_PATTERN = re.compile(r"^(?P<name>[a-z0-9_]+)-(?P<weights>[a-z0-9_]+)-(?P<digest>[0-9a-f]{8})\.weights\.h5$")
EVALUATE_BATCH_SIZE = 256  # rir-keras evaluate's default

# Every field of a record, its type(s), and what it means (docs/models.md shows the same list).
RECORD_FIELDS = {
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
                                       "instead of it; null where not measured (older records)"),
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


def record(name, weights="cifar10", store=None):
    """The record of registry model ``name``'s ``weights``, or ``None``."""
    return read_manifest(store).get(name, {}).get(weights)


def records(store=None):
    """Every record of the store, sorted by model and weights name."""
    manifest = read_manifest(store)
    return [manifest[name][weights] for name in sorted(manifest) for weights in sorted(manifest[name])]


def file_name(name, weights, digest):
    """``<name>-<weights>-<digest[:8]>.weights.h5``."""
    return f"{name}-{weights}-{digest[:8]}.weights.h5"


@dataclasses.dataclass(frozen=True)
class Shipped:
    """A request for shipped weights, checked against the constructor's options: what a
    constructor passes on as ``weights`` in place of ``"cifar10"``. Load it with `load_into`."""

    name: str
    weights: str
    record: dict
    include_top: bool
    store: str

    @property
    def path(self):
        return os.path.join(self.store, self.record["file"])


def _same(option, ours, theirs):
    if option == "preprocessing":  # "cifar10" and its statistics written out are the same function
        ours, theirs = preprocessing_lib.resolve(ours), preprocessing_lib.resolve(_tuple(theirs))
        if ours is None or theirs is None:
            return ours is None and theirs is None
        return all(a.shape == b.shape and np.allclose(a, b, rtol=1e-6, atol=0) for a, b in zip(ours, theirs))
    return json.loads(json.dumps(ours)) == json.loads(json.dumps(theirs))


def _tuple(value):
    return tuple(value) if isinstance(value, list) else value


def _registry():
    from rir_keras.applications import registry  # the registry builds on the constructors, which import this

    return registry


def spec(entry):
    """The `registry.ModelSpec` of a manifest record."""
    return _registry().ModelSpec.from_dict(entry["spec"], source="the weights record's spec")


def request(name, arguments, store=None):
    """What a constructor of registry model ``name`` loads for ``arguments`` (its call's arguments).

    ``arguments["weights"]`` other than a weights name (None, a path) comes back unchanged. A
    weights name comes back as a `Shipped` once checked: it must be shipped for ``name``, the
    options in `FUNCTION_OPTIONS` must equal the record's and, with ``include_top``, ``classes``
    too. Raises a one-line ValueError naming the first thing that differs.
    """
    weights = arguments.get("weights")
    if not (isinstance(weights, str) and weights in WEIGHTS_NAMES):
        return weights
    store = store or STORE
    found = record(name, weights, store)
    if found is None:
        raise unavailable(name, weights, store)
    trained = {**_registry().record(name).defaults, **spec(found).constructor_options()}
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
    return Shipped(name=name, weights=weights, record=found, include_top=bool(include_top), store=store)


def unavailable(name, weights, store=None):
    """The ValueError for ``weights`` asked of registry model ``name`` (or of a constructor with no
    registry name: ``name=None``) that the store has no record for."""
    campaign = _registry().shipping(weights)
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
    """Raise ValueError unless ``shipped``'s file exists and has the SHA-256 of its record."""
    path, expected = shipped.path, shipped.record["sha256"]
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
    checked against. The file is verified first; then the model built as the record says (its top
    included) loads the file, and ``model`` takes each of its layers' weights by layer name, so
    ``include_top=False`` gets the body. A bare weights name (a constructor with no shipped weights)
    raises `unavailable`."""
    if not isinstance(shipped, Shipped):
        raise unavailable(None, shipped)
    from rir_keras.applications import networks

    verify(shipped)
    source = spec(shipped.record).build(include_top=True, weights=None)
    try:
        networks._load_weights(source, shipped.path)  # checks every stored shape against the model's
    except ValueError as error:
        raise ValueError(f"weights={shipped.weights!r} for {shipped.name}: the file does not fit the model its "
                         f"record describes ({error}). {_received('weights', shipped.weights)}") from error
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


def build(name, weights="cifar10", **overrides):
    """Registry model ``name`` with its shipped ``weights``, built with the options of its record
    (``overrides`` change any of them, e.g. ``include_top=False``): what
    ``rir-keras evaluate --model NAME --weights cifar10`` evaluates. Raises ValueError where
    ``name`` has no such weights (not shipped yet, or not offered)."""
    if not (isinstance(weights, str) and weights in WEIGHTS_NAMES):
        raise ValueError(f"weights must be one of {sorted(WEIGHTS_NAMES)}. {_received('weights', weights)}")
    found = record(name, weights)
    if found is None:
        _registry().record(name)  # an unknown model is named as such
        raise unavailable(name, weights)
    return spec(found).build(**{**overrides, "weights": weights})


def measure(model, data, batch_size=EVALUATE_BATCH_SIZE, tta="none"):
    """``(correct, images)``: top-1 of ``model`` on ``data`` (an ``ImageData`` of raw images), scored
    as ``rir-keras evaluate [--tta TTA]`` scores (``training.compile_for_evaluation``, then
    ``training.evaluate`` in batches of ``batch_size``). A record's ``top1`` is ``correct / images``
    of this, its ``top1_flip`` the same with ``tta="flip"``."""
    from rir_keras import test_time, training

    return training.score(test_time.with_tta(model, tta), data, batch_size)["correct"], len(data)


def check_manifest(store=None):
    """Check the store: every record well formed and consistent with its place in the manifest,
    every file it names present with its SHA-256 and its hashed name, and no weights file without a
    record. Returns the number of records; raises ValueError listing every problem."""
    store = store or STORE
    problems = []
    manifest = read_manifest(store)
    if not isinstance(manifest, dict):
        raise ValueError(f"{manifest_path(store)} must hold a JSON object. Received: {type(manifest).__name__}")
    named = set()
    count = 0
    for name, by_weights in manifest.items():
        if not isinstance(by_weights, dict):
            problems.append(f"{name}: must map weights names to records")
            continue
        for weights, entry in by_weights.items():
            count += 1
            where = f"{name}/{weights}"
            if weights not in WEIGHTS_NAMES:
                problems.append(f"{where}: unknown weights name (known: {sorted(WEIGHTS_NAMES)})")
            if not isinstance(entry, dict):
                problems.append(f"{where}: a record must be a JSON object")
                continue
            for field, (kind, _) in RECORD_FIELDS.items():
                if field not in entry:
                    problems.append(f"{where}: field {field!r} is missing")
                elif not isinstance(entry[field], kind) or isinstance(entry[field], bool) and kind is int:
                    problems.append(f"{where}: field {field!r} has type {type(entry[field]).__name__}")
            if problems and problems[-1].startswith(where):
                continue
            try:
                model = spec(entry)
            except ValueError as error:
                problems.append(f"{where}: {error}")
                continue
            if model.registry_name != name or entry["weights"] != weights:
                problems.append(f"{where}: the record says {model.registry_name}/{entry['weights']}")
            if entry["file"] != file_name(name, weights, entry["sha256"]):
                problems.append(f"{where}: file {entry['file']!r} should be named {file_name(name, weights, entry['sha256'])!r}")
            if entry["recipe"] not in WEIGHTS_NAMES.get(weights, {}).get("recipes", (entry["recipe"],)):
                problems.append(f"{where}: recipe {entry['recipe']!r}, but {weights!r} names the weights of "
                                f"{' or '.join(WEIGHTS_NAMES[weights]['recipes'])}")
            if entry["seed"] != 0:
                problems.append(f"{where}: seed {entry['seed']}: only seed 0's weights ship")
            if entry["test_images"] < 1 or entry["correct"] / entry["test_images"] != entry["top1"]:
                problems.append(f"{where}: top1 {entry['top1']} is not correct / test_images")
            if entry["correct_flip"] is None and entry["top1_flip"] is None:
                pass  # not measured
            elif entry["correct_flip"] is None or entry["correct_flip"] / entry["test_images"] != entry["top1_flip"]:
                problems.append(f"{where}: top1_flip {entry['top1_flip']} is not correct_flip / test_images")
            if model.classes != len(entry["classes"]):
                problems.append(f"{where}: the spec's classes differ from the {len(entry['classes'])} class names")
            if f"--model {name}" not in entry["command"] or f"--weights {weights}" not in entry["command"]:
                problems.append(f"{where}: the command does not evaluate --model {name} --weights {weights}")
            path = os.path.join(store, entry["file"])
            named.add(entry["file"])
            if not os.path.isfile(path):
                problems.append(f"{where}: file {entry['file']} is missing")
            elif sha256(path) != entry["sha256"]:
                problems.append(f"{where}: file {entry['file']} does not have the record's SHA-256")
    if os.path.isdir(store):
        for stray in sorted(set(os.listdir(store)) - named - {MANIFEST}):
            problems.append(f"{stray}: in the store without a record")
    if problems:
        raise ValueError(f"{manifest_path(store)}: " + "; ".join(problems))
    return count


def _percent(value):
    return f"{100 * value:.2f}"


def _wrap(text, indent=""):
    return textwrap.fill(text, 100, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)


def _recipe(name):
    """A recipe's name and its settings in words."""
    from rir_keras import recipes

    return f"`{name}` ({recipes.RECIPES[name].summary})" if name in recipes.RECIPES else (name or "hand-set")


def _training(training):
    """Where and how long a record's run trained, in words."""
    if not training:
        return "unrecorded"
    where = " on ".join(filter(None, [" ".join(filter(None, [training.get("backend"), training.get("precision")])),
                                      training.get("machine")]))
    hours = f"{training['hours']} h of wall time" if "hours" in training else ""
    run = f"log in `{training['run']}`" if "run" in training else ""
    own = f"its own final evaluation there: {training['correct']:,} correct" if "correct" in training else ""
    return "; ".join(filter(None, [where, hours, run, own]))


def model_cards(store=None):
    """docs/models.md's section "Shipped weights (model cards)", written from the manifest."""
    from rir_keras.reporting import markdown_table

    paragraphs = [
        "Written by `benchmarks/model_table.py --cards` from `applications/weights/manifest.json`; "
        "`tools/ship_weights.py RUN_FOLDER` ships a finished run of the training campaign "
        "(issue 14), seed 0's final epoch only: no weights are chosen by test accuracy.",
        "; ".join(f"{', '.join(f'`{_registry().record(n).constructor.__name__}`' for n in _registry().shipping(name))} "
                  f"take `weights=\"{name}\"` ({meaning['dataset']}, recipe "
                  f"{' or '.join(f'`{r}`' for r in meaning['recipes'])})" for name, meaning in WEIGHTS_NAMES.items())
        + "; or `rir_keras.applications.pretrained.build(\"rir32\", \"cifar10\")`, which builds the model with its "
        "record's options. `\"cifar10\"`, the default, and `\"cifar100\"` hold the best recipe's weights that have "
        "finished (the `long` recipe's where its run has finished, else the `fast` recipe's), each card says which, "
        "and on which data. The weights ship inside "
        "the package in `applications/weights/`. The file is "
        "checked against the SHA-256 of its record at every load (a corrupted or missing file "
        "raises ValueError). As in keras.applications, `include_top=True` needs the weights' "
        "classes, and `include_top=False` loads the body. Options that change the function "
        f"({', '.join(f'`{o}`' for o in FUNCTION_OPTIONS)}) must equal the record's; "
        f"{', '.join(f'`{o}`' for o in TRAINING_OPTIONS)}, the name, pooling and input size are free. "
        "`include_preprocessing=False` gives the model without its normalization layer: feed it "
        "`preprocess_input(images, preprocessing)` with the record's `preprocessing`.",
    ]
    shipped = records(store)
    if shipped:
        example = spec(shipped[-1])
        constructor = _registry().record(example.registry_name).constructor.__name__
        defaults = _registry().record(example.registry_name).defaults
        different = "".join(f", {option}={getattr(example, option)!r}" for option in ("classes", "preprocessing")
                            if getattr(example, option) != defaults[option])  # CIFAR-100's
        paragraphs.append(
            f"```python\nfrom rir_keras.applications import {constructor}\n\n"
            f"model = {constructor}(weights=\"{shipped[-1]['weights']}\"{different})  # "
            f"{'x'.join(map(str, example.input_shape[:2]))} RGB images, pixel values 0-255, in; "
            f"{example.classes} class probabilities out\n```")
    waiting = {weights: [name for name in _registry().shipping(weights) if record(name, weights, store) is None]
               for weights in WEIGHTS_NAMES}
    if any(waiting.values()):
        paragraphs.append(
            f"**{'None has' if not shipped else 'Not all have'} shipped yet.** Still in training (see "
            "docs/results.md): " + "; ".join(f"`weights=\"{weights}\"` for {', '.join(f'`{n}`' for n in names)}"
                                            for weights, names in waiting.items() if names)
            + ". Until a model's weights ship, asking for them raises a ValueError saying its training campaign "
            "has not finished.")
    lines = ["## Shipped weights (model cards)", ""]
    for paragraph in paragraphs:
        lines += [paragraph if paragraph.startswith("```") else _wrap(paragraph), ""]
    for entry in shipped:
        model = spec(entry)
        reported = _registry().record(model.registry_name).cite(WEIGHTS_NAMES[entry["weights"]]["source"])
        versus = f"; the paper reports {reported} on the original {WEIGHTS_NAMES[entry['weights']]['dataset']}" \
            if reported else ""
        training = entry.get("training", {})
        lines += [
            f"### `{model.registry_name}`, `weights=\"{entry['weights']}\"`",
            "",
            markdown_table(("field", "value"), [
                ("top-1", f"**{_percent(entry['top1'])}%** ({entry['correct']:,} of {entry['test_images']:,} "
                          f"{entry['split']} images of {entry['dataset']}){versus}"),
                ("measured by", f"`{entry['command']}`"),
                ("with test-time flips", "not measured" if entry["top1_flip"] is None else
                 f"{_percent(entry['top1_flip'])}% ({entry['correct_flip']:,}; `{entry['command']} --tta flip`), "
                 "beside the single-view figure above"),
                ("measured on", f"{entry['machine']}; keras {entry['keras_version']}, {entry['backend']} "
                                f"{entry['backend_version']}; {entry['date']}"),
                ("recipe", f"{_recipe(entry['recipe'])}; seed {entry['seed']}, {entry['train_images']:,} "
                           f"{entry['train_split']} images; the last epoch's weights ({entry['epochs']} of {entry['epochs']})"),
                ("trained on", _training(training)),
                ("options", ", ".join(f"{key}={value!r}" for key, value in sorted(model.options.items())) or "defaults"),
                ("input", f"{'x'.join(map(str, model.input_shape))} images, {model.classes} classes"),
                ("parameters", f"{entry['parameters']:,} ({entry['trainable_parameters']:,} trainable)"),
                ("preprocessing", f"{model.preprocessing!r}, inside the model"),
                ("file", f"`{entry['file']}`, SHA-256 `{entry['sha256']}`"),
            ]),
            "",
        ]
    lines += ["Record fields (`rir_keras.applications.pretrained.RECORD_FIELDS`):", ""]
    lines += [_wrap(f"- `{field}`: {meaning}", "  ") for field, (_, meaning) in RECORD_FIELDS.items()]
    return "\n".join(lines) + "\n"
