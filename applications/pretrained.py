"""Shipped trained weights by registry name: build a model with them, measure them, check the store.

    from rir_keras.applications import pretrained
    model = pretrained.build("rir32", "cifar10")  # RiR32(weights="cifar10"), built as its record says

The constructors take ``weights="cifar10"`` themselves (`rir_keras.applications.weights_store`
checks and loads it); this module sits above the registry, which it needs to rebuild a record's
model by name. ``tools/ship_weights.py`` ships a finished run; docs/models.md shows the model cards.
"""
import os

from rir_keras import test_time, training
from rir_keras.applications import registry
from rir_keras.applications import weights_store
# The store's public names, here too: what a weights name means, a record and its fields.
from rir_keras.applications.weights_store import RECORD_FIELDS, WEIGHTS_NAMES, record, records  # noqa: F401

EVALUATE_BATCH_SIZE = 256  # rir-keras evaluate's default


def spec(entry):
    """The `registry.ModelSpec` of a manifest record."""
    return registry.ModelSpec.from_dict(entry["spec"], source="the weights record's spec")


def build(name, weights="cifar10", **overrides):
    """Registry model ``name`` with its shipped ``weights``, built with the options of its record
    (``overrides`` change any of them, e.g. ``include_top=False``): what
    ``rir-keras evaluate --model NAME --weights cifar10`` evaluates. Raises ValueError where
    ``name`` has no such weights (not shipped yet, or not offered)."""
    if not (isinstance(weights, str) and weights in WEIGHTS_NAMES):
        raise ValueError(f"weights must be one of {sorted(WEIGHTS_NAMES)}. Received: weights={weights!r}")
    found = record(name, weights)
    if found is None:
        registry.record(name)  # an unknown model is named as such
        raise weights_store.unavailable(name, weights)
    return spec(found).build(**{**overrides, "weights": weights})


def measure(model, data, batch_size=EVALUATE_BATCH_SIZE, tta="none"):
    """``(correct, images)``: top-1 of ``model`` on ``data`` (an ``ImageData`` of raw images), scored
    as ``rir-keras evaluate [--tta TTA]`` scores (``training.compile_for_evaluation``, then
    ``training.evaluate`` in batches of ``batch_size``). A record's ``top1`` is ``correct / images``
    of this, its ``top1_flip`` the same with ``tta="flip"``."""
    return training.score(test_time.with_tta(model, tta), data, batch_size)["correct"], len(data)


def check_manifest(store=None):
    """Check the store: every record well formed and consistent with its place in the manifest,
    every file it names present with its SHA-256 and its hashed name, and no weights file without a
    record. Returns the number of records; raises ValueError listing every problem."""
    store = store or weights_store.STORE
    problems = []
    manifest = weights_store.read_manifest(store)
    if not isinstance(manifest, dict):
        raise ValueError(f"{weights_store.manifest_path(store)} must hold a JSON object. Received: {type(manifest).__name__}")
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
            if entry["file"] != weights_store.file_name(name, weights, entry["sha256"]):
                problems.append(f"{where}: file {entry['file']!r} should be named {weights_store.file_name(name, weights, entry['sha256'])!r}")
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
            elif weights_store.sha256(path) != entry["sha256"]:
                problems.append(f"{where}: file {entry['file']} does not have the record's SHA-256")
    if os.path.isdir(store):
        for stray in sorted(set(os.listdir(store)) - named - {weights_store.MANIFEST}):
            problems.append(f"{stray}: in the store without a record")
    if problems:
        raise ValueError(f"{weights_store.manifest_path(store)}: " + "; ".join(problems))
    return count
