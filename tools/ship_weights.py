"""Ship a finished training run's weights as ``weights="cifar10"``, ``"cifar10_paper"`` or ``"cifar100"``.

    .venv/bin/python tools/ship_weights.py results/table32-cifar10/rir32/seed0
    .venv/bin/python tools/ship_weights.py results/table18wide-cifar100-fast-gpu/rir18_wide/seed0

RUN_FOLDER is a finished run of a training campaign (``rir-keras train`` / ``reproduce``, or the
lent GPU's runner): it holds ``results.json``, ``run.json`` and its weights, ``model.keras`` or,
where that did not come back from the GPU (an 18-layer-wide run: tools/gpu/README.md), the weights
alone in ``model.weights.h5`` (``tools/gpu/runner.py collect`` joined it, SHA-256 checked); and no
``backup/`` (a run still going). The script

1. checks the run: a model offered the weights name (``weights_store.shipping``: the 32-layer four take
   ``"cifar10"`` and ``"cifar10_paper"``, the 18-layer-wide four ``"cifar10"`` and ``"cifar100"``),
   trained on the official data of that name (the archive it measures on, by SHA-256) with seed 0
   for all its epochs, its final test accuracy measured on the full test split, with a recipe that
   names weights on its data (``weights_store.WEIGHTS_NAMES``): ``long`` and ``fast`` ship as
   ``"cifar10"`` on CIFAR-10 and ``"cifar100"`` on CIFAR-100 (``fast`` never replaces ``long``),
   ``paper`` as ``"cifar10_paper"``;
2. builds the model with the run's options, takes the weights of ``model.keras`` (the constructor
   checks that the file computes the same function) or of ``model.weights.h5`` (every variable's
   shape checked) and writes them alone, without optimizer state, as
   ``applications/weights/<model>-<weights name>-<sha256[:8]>.weights.h5``;
3. measures top-1 on the full test split with the model loaded through ``weights=NAME`` from a
   staging copy of the store (so the measured file is the shipped file, byte for byte), the way
   ``rir-keras evaluate --model MODEL --weights NAME --dataset cifar10`` (or ``cifar100``) measures it;
4. checks that it is the run's final test accuracy: image for image where the run was evaluated by
   this backend on this kind of machine; within `ENGINE_TOLERANCE` of the test images (5 of 10,000)
   where it was not (a GPU run with JAX, shipped here with TensorFlow: float rounding moves the odd
   image across a decision boundary), and within `LOW_PRECISION_TOLERANCE` (20 of 10,000) where the
   run computed in mixed precision (bfloat16 or float16) while ``weights=NAME`` computes in float32,
   as a user's model does by default; the entry keeping the run's own count too. Only then it
   writes the file and its manifest entry (``rir_keras.applications.pretrained.ENTRY_FIELDS``) into the
   store, with the top-1 with test-time flips measured beside it (``--tta flip``). Nothing in the
   store changes when a check fails.

**Seed 0's final weights only.** The weights shipped are the last epoch's of the seed-0 run: never
the best epoch, never the best of several seeds. Choosing among epochs or seeds by test accuracy
would make the shipped accuracy a selection on the test set, not a measurement; a run with another
seed is refused. Other seeds belong in docs/results.md (mean and standard deviation), not here.

Afterwards, regenerate the model cards of docs/models.md with
``.venv/bin/python benchmarks/model_table.py --cards --output docs/models.md`` and commit the store
and the docs together.
"""
import argparse
import datetime
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# CIFAR-10; CIFAR-100 as the GPU trained on it (tools/gpu/prepare.sh's lossless WebP copy), else as PNG.
os.environ.setdefault("RIR_KERAS_DATA", os.pathsep.join([
    os.path.join(os.path.dirname(REPO), "shared", "datasets", "cifar10"), os.path.join(REPO, ".devdata", "webp"),
    os.path.join(os.path.dirname(REPO), "shared", "datasets", "cifar100")]))

from rir_keras import data as datasets  # noqa: E402  (rir_keras before keras: dependencies.prefer_onednn)
import keras  # noqa: E402
import numpy as np  # noqa: E402

from rir_keras import preprocessing as preprocessing_lib  # noqa: E402
from rir_keras import runs  # noqa: E402
from rir_keras.applications import pretrained, registry, weights_store  # noqa: E402
from rir_keras.atomic import atomic_output, write_json  # noqa: E402

STORE = os.path.join(REPO, "applications", "weights")  # the repository's store, whatever is installed
ENGINE_TOLERANCE = 0.0005  # share of the test images another backend or machine may score differently
# The same for a run that evaluated itself in mixed precision, measured here in float32: bfloat16 keeps
# 8 significant bits of each activation. The `long` runs of RiR-32, ResNet-32 and ResNet Init-32
# (mixed_bfloat16) scored 0, 0 and 9 of 10,000 test images differently in float32; a wrong file
# differs by hundreds.
LOW_PRECISION_TOLERANCE = 0.002
WEIGHTS_FILES = ("model.keras", "model.weights.h5")  # a run's weights: the model, else the weights alone (GPU)


class ShipError(Exception):
    """A check failed: nothing was shipped."""


def read_run(folder):
    """``(results, settings)`` of the finished run in ``folder``; ShipError if it is not one."""
    def read(name):
        with open(os.path.join(folder, name), encoding="utf-8") as handle:
            return json.load(handle)

    if not os.path.isfile(os.path.join(folder, "results.json")):
        raise ShipError(f"{folder} holds no results.json: not a finished run")
    weights_file(folder)
    if os.path.isdir(os.path.join(folder, "backup")):
        raise ShipError(f"{folder} still holds backup/: the run has not finished")
    settings = read("run.json") if os.path.isfile(os.path.join(folder, "run.json")) else {}
    return read("results.json"), settings


def weights_file(folder):
    """The run's weights: the first of `WEIGHTS_FILES` it holds; ShipError if none."""
    for name in WEIGHTS_FILES:
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    raise ShipError(f"{folder} holds no {' or '.join(WEIGHTS_FILES)}: not a finished run (or its weights are still "
                    "on the GPU machine: tools/gpu/README.md)")


def weights_name(results, settings):
    """The weights name the run's recipe ships as on its data; ShipError for a recipe and data that name none."""
    recipe = recipe_name(results, settings)
    family = datasets.dataset_family(str(results.get("dataset", "")))
    weights = weights_store.weights_for_recipe(recipe, family)
    if weights is None:
        known = ", ".join(f"{' and '.join(meaning['recipes'])} on {meaning['source']} as {name!r}"
                          for name, meaning in weights_store.WEIGHTS_NAMES.items())
        raise ShipError(f"the run's recipe is {recipe!r} on {results.get('dataset')!r}: only named recipes ship, "
                        f"on their data ({known})")
    return weights


def check_run(results, settings, weights):
    """Refuse a run that is not the campaign's seed-0, full-length run of a model taking ``weights``."""
    try:
        name = registry.ModelSpec.from_dict(results.get("spec"), source="results.json's spec").registry_name
    except ValueError as error:
        raise ShipError(str(error)) from error
    if name not in weights_store.shipping(weights):
        raise ShipError(f"model {name!r}: weights={weights!r} is offered for {', '.join(weights_store.shipping(weights))}")
    config = results.get("config", {})
    seeds = {config.get("seed"), settings.get("config", {}).get("seed", config.get("seed"))}
    if seeds != {0}:
        raise ShipError(f"the run's seed is {sorted(seeds, key=str)}: only seed 0's final weights ship "
                        "(never a seed chosen by test accuracy)")
    epochs = len(results.get("history", {}).get("epoch", []))
    if epochs != config.get("epochs"):
        raise ShipError(f"the run logged {epochs} epochs of {config.get('epochs')}: ship a finished run's final epoch")
    base = os.path.basename(str(results.get("dataset", "")).rstrip("/")).lower()
    official = weights_store.WEIGHTS_NAMES[weights]
    if datasets.dataset_family(base) != official["source"] or "mini" in base:
        raise ShipError(f"the run trained on {results.get('dataset')!r}, not the full {official['dataset']}")
    return name


def recipe_name(results, settings):
    recipe = results.get("recipe", settings.get("recipe"))
    return recipe.get("name") if isinstance(recipe, dict) else recipe


def backend_version():
    name = keras.backend.backend()
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def command(name, weights, dataset, batch_size):
    text = f"rir-keras evaluate --model {name} --weights {weights} --dataset {dataset}"
    return text if batch_size == pretrained.EVALUATE_BATCH_SIZE else f"{text} --batch-size {batch_size}"


def tolerance(results):
    """The share of the test images on which the shipped weights, measured here in float32, may
    disagree with the run's own final evaluation: none where the run was evaluated by this process's
    backend on this kind of machine in float32."""
    if results.get("precision", "float32") != "float32":
        return LOW_PRECISION_TOLERANCE
    same_engine = results.get("backend") == keras.backend.backend() and results.get("machine") == runs.machine()
    return 0.0 if same_engine else ENGINE_TOLERANCE


def ship(folder, test_data, *, store=STORE, dataset="cifar10", dataset_sha256=None,
         batch_size=pretrained.EVALUATE_BATCH_SIZE, replace=False, check=check_run):
    """Ship the run in ``folder``, measured on ``test_data`` (the full test split), under the weights
    name of its recipe; returns its manifest entry."""
    results, settings = read_run(folder)
    weights = weights_name(results, settings)
    name = check(results, settings, weights)
    if results.get("test_images") != len(test_data):
        raise ShipError(f"the run's final test accuracy is on {results.get('test_images')} images, the test split "
                        f"has {len(test_data)}: ship a run measured on the full test split")
    manifest = weights_store.read_manifest(store)
    previous = manifest.get(name, {}).get(weights)
    if previous and not replace:
        raise ShipError(f"{name} already has weights={weights!r} ({previous['file']}); pass --replace to replace them")
    recipes = weights_store.WEIGHTS_NAMES[weights]["recipes"]
    recipe = recipe_name(results, settings)
    if previous and previous["recipe"] in recipes and recipes.index(previous["recipe"]) < recipes.index(recipe):
        raise ShipError(f"{name}'s weights={weights!r} come from the {previous['recipe']!r} recipe, which ranks "
                        f"before {recipe!r} ({', '.join(recipes)}): not replaced")
    trained_on = results.get("data", {})
    if dataset_sha256 is not None and trained_on.get("sha256") != dataset_sha256:
        raise ShipError(f"the run trained on {trained_on.get('file', results.get('dataset'))!r} (SHA-256 "
                        f"{trained_on.get('sha256')}), not on the data measured on (SHA-256 {dataset_sha256}): "
                        "weights ship trained and measured on the same, official data")
    # Every option the run set, and the defaults of those that decide or describe the weights.
    trained = registry.ModelSpec.from_dict(results["spec"])
    defaults = registry.record(name).defaults
    options = {**{key: defaults[key] for key in (*weights_store.FUNCTION_OPTIONS, *weights_store.TRAINING_OPTIONS,
                                                 "include_preprocessing") if key in defaults},
               **trained.options}
    options.pop("preprocessing", None)
    spec = registry.ModelSpec(name, options, tuple(test_data.image_shape), test_data.num_classes,
                              trained.preprocessing)
    source = spec.build(weights=weights_file(folder))
    if "preprocessing" in results and \
            json.loads(json.dumps(preprocessing_lib.model_preprocessing(source))) != results["preprocessing"]:
        raise ShipError(f"the model's preprocessing differs from the run's {results['preprocessing']!r}")
    staging = tempfile.mkdtemp(prefix="ship-weights-")
    try:
        temporary = os.path.join(staging, "weights.weights.h5")
        source.save_weights(temporary)  # an uncompiled model: weights only, no optimizer state
        digest = weights_store.sha256(temporary)
        file = weights_store.file_name(name, weights, digest)
        os.replace(temporary, os.path.join(staging, file))
        trainable = sum(int(np.prod(weight.shape)) for weight in source.trainable_weights)
        history = results.get("history", {})
        seconds = [s for s in history.get("seconds", []) if s == s]
        run_folder = os.path.relpath(os.path.abspath(folder), REPO)
        entry = {
            "spec": spec.to_dict(), "weights": weights, "file": file, "sha256": digest,
            "dataset": weights_store.WEIGHTS_NAMES[weights]["dataset"], "dataset_sha256": dataset_sha256,
            "train_split": results.get("train_split", "train"), "train_images": results.get("train_images"),
            "split": weights_store.WEIGHTS_NAMES[weights]["split"], "test_images": len(test_data),
            "classes": list(test_data.class_names),
            "command": command(name, weights, dataset, batch_size), "recipe": recipe_name(results, settings),
            "config": results.get("config", {}), "epochs": len(history.get("epoch", [])),
            "seed": results["config"]["seed"], "parameters": source.count_params(), "trainable_parameters": trainable,
            "keras_version": keras.__version__, "backend": keras.backend.backend(),
            "backend_version": backend_version(), "date": datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
            "machine": runs.machine(),
            "training": {key: value for key, value in {
                "backend": results.get("backend"), "machine": results.get("machine"),
                "processor": results.get("processor"), "precision": results.get("precision"),
                "hours": round(sum(seconds) / 3600, 2) if seconds else None, "run": run_folder,
            }.items() if value is not None},
        }
        if list(test_data.class_names) != weights_store.WEIGHTS_NAMES[weights]["classes"]:
            raise ShipError(f"the test split's classes {test_data.class_names} are not {weights}'s")
        # Measure the staged store: the file, the manifest entry and the loading path that ship.
        staged = json.loads(json.dumps(manifest))
        staged.setdefault(name, {})[weights] = {**entry, "top1": 0.0, "correct": 0}
        write_json(staged, weights_store.manifest_path(staging))
        shipped_store, weights_store.STORE = weights_store.STORE, staging
        try:
            model = pretrained.build(name, weights)
            correct, images = pretrained.measure(model, test_data, batch_size)
        finally:
            weights_store.STORE = shipped_store
        expected = int(round(results["test_accuracy"] * results["test_images"]))
        allowed = int(tolerance(results) * images)
        if abs(correct - expected) > allowed:
            raise ShipError(f"weights={weights!r} scores {correct} of {images} test images, the run's final "
                            f"evaluation {expected} ({results.get('backend')} on {results.get('machine')}, "
                            f"{results.get('precision', 'float32')}; {allowed} may differ): nothing shipped (try --batch-size "
                            f"{results['config'].get('batch_size')}, the run's)")
        entry.update(top1=correct / images, correct=correct)
        correct_flip, _ = pretrained.measure(model, test_data, batch_size, tta="flip")
        entry.update(top1_flip=correct_flip / images, correct_flip=correct_flip)
        if correct != expected:
            entry["training"]["correct"] = expected  # the run's own count, on its backend and machine
        # Only now touch the store: the file first, then the manifest that names it.
        target = os.path.join(store, file)
        with atomic_output(target) as temporary:
            shutil.copyfile(os.path.join(staging, file), temporary)
        if weights_store.sha256(target) != digest:
            raise ShipError(f"{target} was not written intact")
        manifest.setdefault(name, {})[weights] = entry
        write_json(manifest, weights_store.manifest_path(store))
        if previous and previous["file"] != file and os.path.isfile(os.path.join(store, previous["file"])):
            os.remove(os.path.join(store, previous["file"]))  # replaced: keep the store to what ships
        pretrained.check_manifest(store)
        return entry
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("run_folder", help="a finished run of a campaign, e.g. results/table32-cifar10/rir32/seed0")
    parser.add_argument("--dataset",
                        help="the official data to measure on; default: the weights name's (cifar10 or cifar100), "
                             "under $RIR_KERAS_DATA (default ../shared/datasets/cifar10, .devdata/webp, "
                             "../shared/datasets/cifar100)")
    parser.add_argument("--batch-size", type=int, default=pretrained.EVALUATE_BATCH_SIZE,
                        help="the evaluation batch size (written into the entry's command when not the default)")
    parser.add_argument("--store", default=STORE, help="the store to ship into")
    parser.add_argument("--replace", action="store_true", help="replace weights already shipped for the model")
    args = parser.parse_args(argv)
    try:
        weights = weights_name(*read_run(args.run_folder))
    except ShipError as error:
        print(f"ship_weights: {error}", file=sys.stderr)
        return 1
    official = weights_store.WEIGHTS_NAMES[weights]
    args.dataset = args.dataset or official["source"]
    source = datasets.resolve_source(args.dataset)
    if source.startswith(datasets.TFDS_PREFIX) or os.path.basename(source) not in official["archives"]:
        parser.error(f"--dataset must resolve to {' or '.join(official['archives'])}, the official "
                     f"{official['dataset']} (weights={weights!r}); it resolves to {source!r}. "
                     f"Received: --dataset={args.dataset!r}")
    test_data = datasets.load_split(source, weights_store.WEIGHTS_NAMES[weights]["split"])
    try:
        entry = ship(args.run_folder, test_data, store=args.store, dataset=args.dataset,
                     dataset_sha256=weights_store.sha256(source), batch_size=args.batch_size, replace=args.replace)
    except ShipError as error:
        print(f"ship_weights: {error}", file=sys.stderr)
        return 1
    print(f"shipped {entry['spec']['registry_name']} weights={entry['weights']!r}: {entry['file']}, top-1 "
          f"{100 * entry['top1']:.2f}% ({entry['correct']} of {entry['test_images']}), measured by: {entry['command']}\n"
          "Now: .venv/bin/python benchmarks/model_table.py --cards --output docs/models.md, and commit "
          "applications/weights/ with it.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
