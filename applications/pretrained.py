"""Shipped trained weights by registry name: build a model with them, measure them, check the store.

    from rir_keras.applications import pretrained
    model = pretrained.build("rir32", "cifar10")  # RiR32(weights="cifar10"), built as its entry says

The constructors take ``weights="cifar10"`` themselves (`rir_keras.applications.weights_store`
checks and loads it); this module sits above the registry, which it needs to rebuild an entry's
model by name. ``tools/ship_weights.py`` ships a finished run; docs/models.md shows the model cards.
"""
import os

from rir_keras import test_time, training
from rir_keras.applications import registry
from rir_keras.applications import weights_store
# The store's public names, here too: what a weights name means, an entry and its fields.
from rir_keras.applications.weights_store import ENTRY_FIELDS, WEIGHTS_NAMES, entries, entry  # noqa: F401

EVALUATE_BATCH_SIZE = 256  # rir-keras evaluate's default


def spec(entry):
    """The `registry.ModelSpec` of a manifest entry."""
    return registry.ModelSpec.from_dict(entry["spec"], source="the weights entry's spec")


def build(name, weights="cifar10", **overrides):
    """Registry model ``name`` with its shipped ``weights``, built with the options of its entry
    (``overrides`` change any of them, e.g. ``include_top=False``): what
    ``rir-keras evaluate --model NAME --weights cifar10`` evaluates. Raises ValueError where
    ``name`` has no such weights (not shipped yet, or not offered)."""
    if not (isinstance(weights, str) and weights in WEIGHTS_NAMES):
        raise ValueError(f"weights must be one of {sorted(WEIGHTS_NAMES)}. Received: weights={weights!r}")
    found = entry(name, weights)
    if found is None:
        registry.record(name)  # an unknown model is named as such
        raise weights_store.unavailable(name, weights)
    return spec(found).build(**{**overrides, "weights": weights})


def measure(model, data, batch_size=EVALUATE_BATCH_SIZE, tta="none"):
    """``(correct, images)``: top-1 of ``model`` on ``data`` (an ``ImageData`` of raw images), scored
    as ``rir-keras evaluate [--tta TTA]`` scores (``training.compile_for_evaluation``, then
    ``training.evaluate`` in batches of ``batch_size``). An entry's ``top1`` is ``correct / images``
    of this, its ``top1_flip`` the same with ``tta="flip"``."""
    return training.score(test_time.with_tta(model, tta), data, batch_size)["correct"], len(data)


def check_manifest(store=None):
    """Check the store: every entry well formed and consistent with its place in the manifest,
    every file it names present with its SHA-256 and its hashed name, and no weights file without a
    entry. Returns the number of entries; raises ValueError listing every problem."""
    store = store or weights_store.STORE
    problems = []
    manifest = weights_store.read_manifest(store)
    if not isinstance(manifest, dict):
        raise ValueError(f"{weights_store.manifest_path(store)} must hold a JSON object. Received: {type(manifest).__name__}")
    named = set()
    count = 0
    for name, by_weights in manifest.items():
        if not isinstance(by_weights, dict):
            problems.append(f"{name}: must map weights names to entries")
            continue
        for weights, listed in by_weights.items():
            count += 1
            where = f"{name}/{weights}"
            if weights not in WEIGHTS_NAMES:
                problems.append(f"{where}: unknown weights name (known: {sorted(WEIGHTS_NAMES)})")
            if not isinstance(listed, dict):
                problems.append(f"{where}: an entry must be a JSON object")
                continue
            for field, (kind, _) in ENTRY_FIELDS.items():
                if field not in listed:
                    problems.append(f"{where}: field {field!r} is missing")
                elif not isinstance(listed[field], kind) or isinstance(listed[field], bool) and kind is int:
                    problems.append(f"{where}: field {field!r} has type {type(listed[field]).__name__}")
            if problems and problems[-1].startswith(where):
                continue
            try:
                model = spec(listed)
            except ValueError as error:
                problems.append(f"{where}: {error}")
                continue
            if model.registry_name != name or listed["weights"] != weights:
                problems.append(f"{where}: the entry says {model.registry_name}/{listed['weights']}")
            if listed["file"] != weights_store.file_name(name, weights, listed["sha256"]):
                problems.append(f"{where}: file {listed['file']!r} should be named {weights_store.file_name(name, weights, listed['sha256'])!r}")
            if listed["recipe"] not in WEIGHTS_NAMES.get(weights, {}).get("recipes", (listed["recipe"],)):
                problems.append(f"{where}: recipe {listed['recipe']!r}, but {weights!r} names the weights of "
                                f"{' or '.join(WEIGHTS_NAMES[weights]['recipes'])}")
            if listed["seed"] != 0:
                problems.append(f"{where}: seed {listed['seed']}: only seed 0's weights ship")
            if listed["test_images"] < 1 or listed["correct"] / listed["test_images"] != listed["top1"]:
                problems.append(f"{where}: top1 {listed['top1']} is not correct / test_images")
            if listed["correct_flip"] is None and listed["top1_flip"] is None:
                pass  # not measured
            elif listed["correct_flip"] is None or listed["correct_flip"] / listed["test_images"] != listed["top1_flip"]:
                problems.append(f"{where}: top1_flip {listed['top1_flip']} is not correct_flip / test_images")
            if model.classes != len(listed["classes"]):
                problems.append(f"{where}: the spec's classes differ from the {len(listed['classes'])} class names")
            if f"--model {name}" not in listed["command"] or f"--weights {weights}" not in listed["command"]:
                problems.append(f"{where}: the command does not evaluate --model {name} --weights {weights}")
            path = os.path.join(store, listed["file"])
            named.add(listed["file"])
            if not os.path.isfile(path):
                problems.append(f"{where}: file {listed['file']} is missing")
            elif weights_store.sha256(path) != listed["sha256"]:
                problems.append(f"{where}: file {listed['file']} does not have the entry's SHA-256")
    if os.path.isdir(store):
        for stray in sorted(set(os.listdir(store)) - named - {weights_store.MANIFEST}):
            problems.append(f"{stray}: in the store without an entry")
    if problems:
        raise ValueError(f"{weights_store.manifest_path(store)}: " + "; ".join(problems))
    return count
