#!/usr/bin/env python3
"""The lent-GPU runner: train, tune and measure on a machine with JAX and CUDA but no TensorFlow.

    python tools/gpu/runner.py run [options]          # there, through tools/gpu/run.sh (which installs first)
    python tools/gpu/runner.py collect FOLDER         # here: what a run brought back, into results/
    python tools/gpu/runner.py size [--carry PATH..]  # here: what a device call would send, against 64 MiB

The data travel in parts over several calls (tools/gpu/parts.py); run.sh joins them before `run`.

`run` works through its stages in the order given, each as far as the time budget allows, and
stops cleanly before the budget ends (the device tool kills a command after 10 minutes):

    table1   Table 1: cnn32, resnet32, resnet_init32 and rir32 on CIFAR-10 (official, lossless WebP), concurrently
    wide10   Table 2: the 18-layer-wide four on CIFAR-10 (official, lossless WebP), concurrently
    wide100  Table 3: the 18-layer-wide four on CIFAR-100 (official, lossless WebP), concurrently
    tune     a slice of the KerasTuner grid (trials per minute)
    bench    training throughput per model (images/s, RiR/ResNet time ratio)

A training stage runs one `rir-keras train` process per model, each with a share of the GPU's
memory (XLA_PYTHON_CLIENT_MEM_FRACTION), into ``RESULTS/CAMPAIGN/MODEL/seed0``: the folder format of
`rir-keras reproduce` (campaign.json, run.json, sessions.jsonl, log.csv, backup/, then model.keras,
results.json, curves.png), so `rir-keras reproduce --status` reads it and a rerun anywhere continues
it. A process is stopped right after an epoch's backup when the next epoch would not end before the
budget (a kill loses at most the epoch in progress: runs resume exactly at epoch granularity).

Where state lives. Training happens in ``--live`` (default ``.gpu/live``, git-ignored), which
survives between calls while the device machine stays warm. At start, each run there is replaced by
the copy in ``--results`` (the working tree's results/, sent with every call) where that copy got
further. At the end, what changed is packed into ``--out`` (the device tool's $OUT): at most six
``state-N.tar.gz`` of at most 15 MiB each and a manifest.json, smallest files first (settings, logs,
results), then weights where they fit (a 32-layer model's backup is about 4 MiB; an 18-layer-wide
one's, about 76 MiB, does not come back: its run must finish on one warm machine, and its records
come back either way; once finished, its weights alone come back in parts, one run's a call:
WEIGHTS_FILE). `collect` unpacks them here into results/, removing files the device removed
(a finished run's backup), so that the next call sends the state on.
"""
import argparse
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import parts  # noqa: E402  (tools/gpu/parts.py: the same splitter cuts the data going out and the weights coming back)

STAGES = ("table1", "wide10", "wide100", "tune", "bench")
TRAINING_STAGES = {  # stage: (paper table, dataset name under RIR_KERAS_DATA)
    "table1": ("32", "cifar10"),
    "wide10": ("18-wide", "cifar10"),
    "wide100": ("18-wide", "cifar100"),
}
PRECISION_TAGS = {"float32": "", "mixed_bfloat16": "-bf16", "mixed_float16": "-fp16"}
MIB = 2 ** 20
VOLUME_BYTES = 15 * MIB  # the device tool brings back files of at most 16 MiB, 64 MiB in all, 8 files
TOTAL_BYTES = 60 * MIB
MAX_VOLUMES = 6  # and manifest.json, summary.md
DEVICE_LIMIT = 64 * MIB
SKIPPED = (".lock", "tensorboard", "__pycache__")
BACKUP_POINTER = os.path.join("backup", "training_metadata.json")
# A finished 18-layer-wide run's weights alone (model.save_weights: no optimizer state), written on the
# device beside its model.keras, which does not come back (weights and SGD momentum: about 72 MiB). The
# weights (36.2 MiB) come back in parts (parts.split, a volume each at most), one run's whole or none
# per call; here, `collect` joins them and checks their SHA-256 (the plan stays as the receipt that
# tells the next call not to send them again). Git-ignored: it would make the tree too large to send.
WEIGHTS_FILE = "model.weights.h5"
WEIGHTS_PLAN = WEIGHTS_FILE + parts.PLAN_SUFFIX


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ----------------------------------------------------------------------------- run folders (no keras)


def read_json(path, default=None):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return default


def write_json(value, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(value, handle, indent=2)
        handle.write("\n")
    os.replace(temporary, path)


def backed_up(run):
    """Epochs the run's backup holds (0 without one)."""
    pointer = read_json(os.path.join(run, BACKUP_POINTER), {})
    weights = pointer.get("weights")
    if not weights or not os.path.isfile(os.path.join(run, "backup", weights)):
        return 0
    return int(pointer.get("epoch", 0))


def finished(run):
    return os.path.isfile(os.path.join(run, "results.json")) and not os.path.isdir(os.path.join(run, "backup"))


def total_epochs(run):
    return (read_json(os.path.join(run, "run.json"), {}).get("config") or {}).get("epochs")


def epochs_done(run):
    """Finished epochs: a finished run's logged ones, else those its backup holds."""
    return len(log_rows(run)) if finished(run) else backed_up(run)


def standing(run):
    """How far a run got, comparable: (finished, epochs its backup holds)."""
    return (finished(run), backed_up(run))


def log_rows(run):
    """The rows of the run's log.csv, as dicts (the last row of an epoch wins)."""
    import csv

    path = os.path.join(run, "log.csv")
    if not os.path.isfile(path):
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("epoch") not in (None, "", "epoch")]
    return list({int(float(row["epoch"])): row for row in rows}.values())


def run_folders(root):
    """Every run folder (one holding run.json) under ``root``."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(s for s in subfolders if s not in SKIPPED)
        if "run.json" in files:
            found.append(folder)
            subfolders[:] = [s for s in subfolders if s == "backup"]
    return found


def copy_tree(source, target):
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(*SKIPPED))


def sync_in(tree, live):
    """Bring ``live`` up to the copy in ``tree`` (the working tree sent with the call) where that copy
    got further: per run folder, by (finished, epochs backed up); other files only where live lacks them."""
    if not os.path.isdir(tree):
        return
    for run in run_folders(tree):
        relative = os.path.relpath(run, tree)
        mine = os.path.join(live, relative)
        if not os.path.isdir(mine) or standing(run) > standing(mine):
            copy_tree(run, mine)
            log(f"state: {relative} from the working tree (finished={finished(run)}, epochs={backed_up(run)})")
    runs = [os.path.relpath(r, tree) for r in run_folders(tree)]
    for folder, subfolders, files in os.walk(tree):
        relative = os.path.relpath(folder, tree)
        subfolders[:] = [s for s in subfolders if s not in SKIPPED
                         and not any(os.path.normpath(os.path.join(relative, s)) == r for r in runs)]
        for name in files:
            target = os.path.join(live, relative, name)
            if not os.path.exists(target):
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.copy2(os.path.join(folder, name), target)


# ----------------------------------------------------------------------------- packing and collecting


def weights_unit(root, run, part_bytes, tree=None):
    """``(unit, names)`` for a run folder holding WEIGHTS_FILE: the files that bring its weights back
    (the plan and the parts of ``parts.split``, each at most ``part_bytes``), relative to ``root``, or
    none where ``tree`` (the state sent with the call) holds them already (its plan has their SHA-256);
    and the names of the run's files they stand for (model.keras among them: it stays here)."""
    digest = parts.sha256(os.path.join(run, WEIGHTS_FILE))
    received = read_json(os.path.join(tree, os.path.relpath(run, root), WEIGHTS_PLAN), {}) if tree else {}
    unit = []
    if received.get("sha256") != digest:
        plan = parts.split(os.path.join(run, WEIGHTS_FILE), run, part_bytes)
        unit = [os.path.relpath(os.path.join(run, name), root) for name in
                [WEIGHTS_PLAN] + [part["file"] for part in plan["parts"]]]
    names = {name for name in os.listdir(run) if name.startswith(WEIGHTS_FILE)} | {"model.keras"}
    return unit, names


def pack_units(root, folders, part_bytes=VOLUME_BYTES, tree=None):
    """``(units, runs)``: the files under ``root/folder`` for each folder, grouped into units that come
    back whole or not at all (a run's backup: pointer and the weights it names; model.keras; a run's
    WEIGHTS_FILE in parts, in place of its model.keras: `weights_unit`), and per run folder the files
    it holds on this machine."""
    units, runs = [], {}
    for rank, name in enumerate(folders):
        top = os.path.join(root, name)
        if not os.path.isdir(top):
            continue
        run_set = set(run_folders(top))
        for folder, subfolders, files in os.walk(top):
            subfolders[:] = sorted(s for s in subfolders if s not in SKIPPED)
            if any(folder.startswith(run + os.sep) for run in run_set):
                continue  # a run's backup/: packed with its run
            is_run = folder in run_set
            if is_run:
                relative_run = os.path.relpath(folder, root)
                held = []
                backup = os.path.join(folder, "backup")
                pointer = read_json(os.path.join(folder, BACKUP_POINTER), {})
                if pointer.get("weights") and os.path.isfile(os.path.join(backup, pointer["weights"])):
                    members = [BACKUP_POINTER, os.path.join("backup", pointer["weights"])]
                    units.append((1, rank, [os.path.join(relative_run, m) for m in members]))
                    held += members
                subfolders[:] = []
            handled = set()
            if is_run and WEIGHTS_FILE in files:
                unit, handled = weights_unit(root, folder, part_bytes, tree)
                if unit:
                    units.append((1, rank, unit))
                held += sorted(name for name in handled if os.path.isfile(os.path.join(folder, name)))
            for file in sorted(files):
                if file in SKIPPED or ".tmp" in file or file in handled or handled and file.startswith(WEIGHTS_FILE):
                    continue
                relative = os.path.relpath(os.path.join(folder, file), root)
                big = os.path.getsize(os.path.join(folder, file)) > MIB or file.endswith((".keras", ".h5"))
                units.append((1 if big else 0, rank, [relative]))
                if is_run:
                    held.append(file)
            if is_run:
                runs[relative_run] = sorted(held)
    units.sort(key=lambda unit: (unit[0], unit[1]))
    return [unit[2] for unit in units], runs


def pack(root, folders, out, volume_bytes=VOLUME_BYTES, total_bytes=TOTAL_BYTES, max_volumes=MAX_VOLUMES,
         tree=None):
    """Pack ``root/folder`` for each of ``folders`` into ``out``: state-N.tar.gz volumes and
    manifest.json (see the module's docstring); weights that ``tree`` holds already stay out. A unit
    comes back whole or not at all, each of its files in the first volume with room (a run's weights
    in parts span volumes). Returns the manifest."""
    units, runs = pack_units(root, folders, volume_bytes, tree)
    volumes, filled, packed, left_out = [], [], [], []
    for unit in units:
        placed, room = [list(volume) for volume in volumes], list(filled)
        for f in unit:
            size = os.path.getsize(os.path.join(root, f))
            index = next((i for i, used in enumerate(room) if used + size <= volume_bytes), len(room))
            if index == len(room):
                placed.append([])
                room.append(0)
            placed[index].append(f)
            room[index] += size
        if len(placed) > max_volumes or max(room, default=0) > volume_bytes or sum(room) > total_bytes:
            left_out += unit
            continue
        volumes, filled = placed, room
        packed += unit
    os.makedirs(out, exist_ok=True)
    names = []
    for index, members in enumerate(v for v in volumes if v):
        name = f"state-{index + 1}.tar.gz"
        with tarfile.open(os.path.join(out, name), "w:gz", compresslevel=6) as archive:
            for member in members:
                archive.add(os.path.join(root, member), arcname=member, recursive=False)
        names.append(name)
    manifest = {"created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "folders": list(folders), "volumes": names, "runs": runs, "packed": packed, "left_out": left_out}
    write_json(manifest, os.path.join(out, "manifest.json"))
    return manifest


def collect(source, results):
    """Unpack what a run brought back (``source``: the folder with manifest.json and state-N.tar.gz)
    into ``results``: per run folder, files the device no longer holds are removed first (those it
    held but could not bring back are kept as they are here; WEIGHTS_FILE, never sent, always), then
    the volumes are extracted, and weights that came in parts are joined, their SHA-256 checked."""
    manifest = read_json(os.path.join(source, "manifest.json"))
    if manifest is None:
        raise SystemExit(f"collect: error: no manifest.json in {source}")
    left_out = set(manifest["left_out"])
    removed = 0
    for run, held in manifest["runs"].items():
        local = os.path.join(results, run)
        if not os.path.isdir(local):
            continue
        keep = set(held)
        # A backup that stayed on the device: the one here stays whole (its pointer names its own weights).
        keep_backup = any(name.startswith(os.path.join(run, "backup") + os.sep) for name in left_out)
        for folder, subfolders, files in os.walk(local):
            subfolders[:] = [s for s in subfolders if s not in SKIPPED]
            for file in files:
                relative = os.path.relpath(os.path.join(folder, file), local)
                if (file in SKIPPED or relative in keep or relative == WEIGHTS_FILE
                        or os.path.join(run, relative) in left_out
                        or (keep_backup and relative.startswith("backup" + os.sep))):
                    continue
                os.remove(os.path.join(folder, file))
                removed += 1
        for folder, _, _ in sorted(os.walk(local), reverse=True):  # folders left empty (a finished run's backup/)
            if folder != local and not os.listdir(folder):
                os.rmdir(folder)
    extracted = 0
    base = os.path.realpath(results)
    for name in manifest["volumes"]:
        with tarfile.open(os.path.join(source, name), "r:gz") as archive:
            for member in archive.getmembers():
                target = os.path.realpath(os.path.join(results, member.name))
                if not member.isfile() or not target.startswith(base + os.sep):
                    raise SystemExit(f"collect: error: unexpected member {member.name!r} in {name}")
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with archive.extractfile(member) as reader, open(target + ".part", "wb") as writer:
                    shutil.copyfileobj(reader, writer)
                os.replace(target + ".part", target)
                extracted += 1
    print(f"collect: {extracted} files from {len(manifest['volumes'])} volumes into {results}, {removed} removed "
          f"(gone on the device); folders: {', '.join(manifest['folders'])}")
    for plan in (name for name in manifest["packed"] if os.path.basename(name) == WEIGHTS_PLAN):
        join_weights(os.path.join(results, os.path.dirname(plan)))
    waiting = sorted(os.path.dirname(name) for name in left_out if os.path.basename(name) == WEIGHTS_PLAN)
    if waiting:
        print(f"collect: the weights of {len(waiting)} finished runs wait on the device for the next call "
              f"(a call brings {TOTAL_BYTES // MIB} MiB at most): {', '.join(waiting)}")
    names = [name for name in manifest["left_out"] if os.path.dirname(name) not in waiting]
    if names:
        print(f"collect: {len(names)} files stayed on the device (too large to bring back): "
              + ", ".join(names[:6]) + (" ..." if len(names) > 6 else ""))
    return manifest


def join_weights(run):
    """Join the parts of ``run``'s WEIGHTS_FILE (`parts.assemble`: all there, SHA-256 checked), or remove
    them and their plan (the receipt) and stop with an error, so that the next call sends them again."""
    try:
        missing = parts.assemble(run, say=lambda line: print(f"collect: {run}: {line}"))
    except ValueError as error:
        missing = [str(error)]
    if missing:
        for name in os.listdir(run):
            if name.startswith(WEIGHTS_FILE + ".part"):
                os.remove(os.path.join(run, name))
        raise SystemExit(f"collect: error: {run}: the weights did not come back whole ({'; '.join(missing)}); "
                         "the next call sends them again")


# ----------------------------------------------------------------------------- size of a device call


def tree_bytes(carry=()):
    """Bytes a device call sends: tracked and untracked-not-ignored files, and the carried paths."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.split(b"\0")
    tree = sum(os.path.getsize(p) for p in (f.decode() for f in listed if f) if os.path.isfile(p))
    carried = {}
    for path in carry:
        if os.path.isfile(path):
            carried[path] = os.path.getsize(path)
        else:
            carried[path] = sum(os.path.getsize(os.path.join(f, n)) for f, _, ns in os.walk(path) for n in ns)
    return tree, carried


def print_size(carry, part_mib=False):
    tree, carried = tree_bytes(carry)
    total = tree + sum(carried.values())
    if part_mib:  # what one more carried file may hold, with 1 MiB to spare (tools/gpu/parts.py)
        print(max(1, int((DEVICE_LIMIT - total) / MIB) - 1))
        return 0 if total < DEVICE_LIMIT - 2 * MIB else 1
    print(f"working tree {tree / MIB:.1f} MiB" + "".join(f" + {p} {b / MIB:.1f} MiB" for p, b in carried.items())
          + f" = {total / MIB:.1f} MiB of the {DEVICE_LIMIT // MIB} MiB a call may send")
    return 0 if total <= DEVICE_LIMIT else 1


# ----------------------------------------------------------------------------- the stages


class Budget:
    def __init__(self, started, seconds, margin):
        self.deadline = started + seconds  # when everything must have stopped, packing excluded
        self.margin = margin

    def left(self):
        return self.deadline - self.margin - time.time()


def campaign_name(stage, recipe, precision):
    table, dataset = TRAINING_STAGES[stage]
    family = "cifar100" if dataset.startswith("cifar100") else "cifar10"
    label = "table32" if table == "32" else "table18wide"
    return f"{label}-{family}-{recipe}{PRECISION_TAGS[precision]}-gpu"


def table_models(table):
    from rir_keras.applications import registry

    order = ("rir", "resnet_init", "resnet", "cnn")  # the CPU campaign's order: RiR and ResNet first
    return sorted(registry.group_members(table), key=lambda n: next(i for i, p in enumerate(order) if n.startswith(p)))


def python_command(*args):
    # -P: not the working directory first on sys.path, where the source tree's rir_keras (without its
    # applications and tuning subpackages, which setup.py maps from other folders) would shadow the installed one.
    return [sys.executable, "-P", "-m", "rir_keras.commands.main", *args]


class Runner:
    def __init__(self, args, child_env):
        self.args = args
        self.env = child_env
        self.budget = Budget(args.started, args.budget, args.margin)
        self.live = os.path.join(args.live, "results")
        self.logs = os.path.join(args.live, "logs")
        os.makedirs(self.live, exist_ok=True)
        os.makedirs(self.logs, exist_ok=True)
        self.touched = []  # folders under results/ this call worked on
        self.notes = []  # lines for summary.md

    def note(self, line):
        log(line)
        self.notes.append(line)

    def environment(self, memory_fraction):
        return {**self.env, "XLA_PYTHON_CLIENT_MEM_FRACTION": f"{memory_fraction:.3f}"}

    def touch(self, name):
        if name not in self.touched:
            self.touched.append(name)
        sync_in(os.path.join(self.args.results, name), os.path.join(self.live, name))

    # -- training --------------------------------------------------------------------------------

    def no_archive(self, stage, dataset):
        """Say so, and True, where ``dataset`` has no archive under RIR_KERAS_DATA (tensorflow-datasets, the
        fallback, is not on the GPU machine)."""
        from rir_keras import data

        if not data.resolve_source(dataset).startswith(data.TFDS_PREFIX):
            return False
        self.note(f"{stage}: skipped: no archive for {dataset!r} under RIR_KERAS_DATA="
                  f"{os.environ.get(data.DATA_ENV_VAR)!r} (carry .devdata/; tools/gpu/README.md)")
        return True

    def train_stage(self, stage):
        from rir_keras import data, recipes

        args = self.args
        table, dataset = TRAINING_STAGES[stage]
        recipe, precision = (args.recipe, args.precision) if stage == "table1" else (args.wide_recipe,
                                                                                      args.wide_precision)
        chosen = resolve_precision(precision, "--precision" if stage == "table1" else "--wide-precision")
        precision = chosen.policy
        name = campaign_name(stage, recipe, precision)
        if self.no_archive(stage, dataset):
            return
        self.touch(name)
        folder = os.path.join(self.live, name)
        models = args.models or table_models(table)
        plan = {"table": table, "models": models, "seeds": [0], "recipe": recipe, "dataset": dataset,
                "family": data.dataset_family(dataset) or "",
                "epochs": args.epochs or recipes.get(recipe).training["epochs"]}
        write_json(plan, os.path.join(folder, "campaign.json"))
        runs = {model: os.path.join(folder, model, "seed0") for model in models}
        pending = [model for model in models if not finished(runs[model])]
        if not pending:
            self.note(f"{stage}: {name} finished earlier")
            self.weights_alone(stage, runs)
            return self.report(name, plan)
        if self.budget.left() < args.min_stage_seconds:
            self.note(f"{stage}: skipped, {self.budget.left():.0f} s left (less than --min-stage-seconds)")
            return
        flags = ["--dataset", dataset, "--recipe", recipe, "--seed", "0", "--precision", precision, "--verbose", "2"]
        if args.epochs:
            flags += ["--epochs", str(args.epochs)]
        flags += args.train_args.split()
        share = args.memory / len(pending)
        self.note(f"{stage}: {name}: training {', '.join(pending)} concurrently, {share:.0%} of GPU memory each, "
                  f"{precision} ({chosen.reason}), {self.budget.left():.0f} s left")
        processes = {}
        for model in pending:
            output = open(os.path.join(self.logs, f"{name}-{model}.log"), "a", encoding="utf-8")
            command = python_command("train", "--model", model, "--output", runs[model], *flags)
            output.write(f"\n$ {' '.join(command)}\n")
            output.flush()
            processes[model] = (subprocess.Popen(command, env=self.environment(share), stdout=output,
                                                 stderr=subprocess.STDOUT, start_new_session=True), output)
        self.watch(stage, processes, runs)
        self.weights_alone(stage, runs)
        self.report(name, plan)

    def weights_alone(self, stage, runs):
        """Write WEIGHTS_FILE beside the model.keras of each finished run of a wide stage that has none
        (Table 1's model.keras, about 4 MiB, comes back whole)."""
        if TRAINING_STAGES[stage][0] == "32":
            return
        from rir_keras.commands.flags import load_model_file

        for model, run in runs.items():
            target, source = os.path.join(run, WEIGHTS_FILE), os.path.join(run, "model.keras")
            if not finished(run) or os.path.isfile(target):
                continue
            if not os.path.isfile(source):
                self.note(f"{stage} {model}: no model.keras on this machine: its weights cannot come back")
                continue
            partial = os.path.join(run, "model.tmp.weights.h5")
            load_model_file(source).save_weights(partial)  # uncompiled: the weights alone
            os.replace(partial, target)
            self.note(f"{stage} {model}: weights alone in {WEIGHTS_FILE} ({os.path.getsize(target) / MIB:.1f} MiB, "
                      f"SHA-256 {parts.sha256(target)[:16]}...), to come back in parts")

    def watch(self, stage, processes, runs):
        """Wait for the processes; stop each right after a backup when its next epoch would end past the
        budget (or after --stop-after-epochs more epochs), kill what still runs when the budget ends."""
        args = self.args
        first = {model: epochs_done(runs[model]) for model in processes}
        seen = dict(first)
        stopped = set()
        while any(process.poll() is None for process, _ in processes.values()):
            time.sleep(0.25)
            for model, (process, _) in processes.items():
                if process.poll() is not None:
                    continue
                epochs = epochs_done(runs[model])
                if epochs > seen[model]:
                    seen[model] = epochs
                    rows = log_rows(runs[model])
                    seconds = [float(r["seconds"]) for r in rows if r.get("seconds")]
                    last = rows[-1] if rows else {}
                    total = total_epochs(runs[model])
                    log(f"{stage} {model}: epoch {epochs}/{total}, {seconds[-1] if seconds else float('nan'):.1f} s, "
                        f"val_accuracy {float(last.get('val_accuracy', 'nan')):.4f}")
                    if total and epochs >= total:
                        continue  # writing its model and results: let it finish
                    recent = sorted(seconds[-3:])
                    estimate = recent[len(recent) // 2] if recent else 0.0
                    too_late = self.budget.left() < 1.15 * estimate + 5
                    enough = args.stop_after_epochs and epochs - first[model] >= args.stop_after_epochs
                    if too_late or enough:
                        why = "the next epoch would end past the budget" if too_late else "--stop-after-epochs"
                        log(f"{stage} {model}: stopped after epoch {epochs} ({why})")
                        stopped.add(model)
                        # SIGKILL, right after the backup: nothing finished is lost, and it stops at once.
                        # SIGTERM is now handled in Python (rir_keras.commands.main), and a short epoch could end first.
                        os.killpg(process.pid, signal.SIGKILL)
                if self.budget.left() <= 0 and process.poll() is None:
                    log(f"{stage} {model}: killed at the budget's end, mid-epoch (resumes from epoch {epochs})")
                    stopped.add(model)
                    os.killpg(process.pid, signal.SIGKILL)
        for model, (process, output) in processes.items():
            output.close()
            total = total_epochs(runs[model])
            state = "finished" if finished(runs[model]) else f"at epoch {epochs_done(runs[model])}/{total}"
            if process.returncode != 0 and model not in stopped:
                self.note(f"{stage} {model}: FAILED (exit {process.returncode}), {state}; its log's end:")
                self.notes.append("```\n" + tail(output.name, 25) + "\n```")
                print(tail(output.name, 25), flush=True)
            else:
                self.note(f"{stage} {model}: {state} ({epochs_done(runs[model]) - first[model]} epochs this call)")

    def report(self, name, plan):
        """results.md (finished models beside the paper) and the status table, as `reproduce` writes them."""
        from rir_keras import reporting
        from rir_keras.commands import campaign

        folder = os.path.join(self.live, name)
        reporting.write_text(campaign.results_table(folder, plan), os.path.join(folder, "results.md"))
        status = campaign.status(folder)
        print(status, flush=True)
        self.notes.append("```\n" + status.replace(self.live + os.sep, "results/").strip() + "\n```")

    # -- tuning ------------------------------------------------------------------------------------

    def tune_stage(self):
        args = self.args
        if self.no_archive("tune", "cifar10"):
            return
        self.touch("gpu-tune")
        directory = os.path.join(self.live, "gpu-tune")
        project = f"{args.tune_model}-{args.tune_grid}-{args.tune_recipe}-e{args.tune_epochs}"
        before = completed_trials(os.path.join(directory, project))
        if before >= args.tune_trials:
            self.note(f"tune: {project}: {before} trials done earlier")
            return
        if self.budget.left() < args.min_stage_seconds:
            self.note(f"tune: skipped, {self.budget.left():.0f} s left")
            return
        command = python_command("tune", "--model", args.tune_model, "--grid", args.tune_grid,
                                 "--max-trials", str(args.tune_trials), "--epochs", str(args.tune_epochs),
                                 "--recipe", args.tune_recipe, "--dataset", "cifar10", "--directory", directory,
                                 "--project-name", project, "--verbose", "2", *args.train_args.split())
        workers = max(1, args.tune_workers)
        roles = [("single", None)] if workers == 1 else [("chief", "chief")] + [
            (f"worker{i}", f"worker{i}") for i in range(1, workers + 1)]
        port = free_port() if workers > 1 else None
        self.note(f"tune: {project}: {before} of {args.tune_trials} trials done; {workers} trainer(s), "
                  f"{self.budget.left():.0f} s left")
        processes = []
        start = time.time()
        for role, tuner_id in roles:
            env = self.environment(args.memory / workers)
            if tuner_id:
                env.update(KERASTUNER_TUNER_ID=tuner_id, KERASTUNER_ORACLE_IP="127.0.0.1",
                           KERASTUNER_ORACLE_PORT=str(port))
            if role == "chief":
                env["JAX_PLATFORMS"] = "cpu"  # the chief hands out trials and trains nothing
            output = open(os.path.join(self.logs, f"tune-{project}-{role}.log"), "a", encoding="utf-8")
            processes.append((role, subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT,
                                                     start_new_session=True), output))
            if role == "chief":
                time.sleep(3)  # let it listen before the workers call
        while any(p.poll() is None for _, p, _ in processes) and self.budget.left() > 0:
            time.sleep(1)
            if workers > 1 and all(p.poll() is not None for r, p, _ in processes if r != "chief"):
                break  # the workers are done: the chief has nothing left to hand out
        for role, process, output in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            output.close()
        minutes = (time.time() - start) / 60
        after = completed_trials(os.path.join(directory, project))
        rate = (after - before) / minutes if minutes else 0.0
        record = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "machine": device_name(), "project": project, "trainers": workers, "trials_before": before,
                  "trials_after": after, "minutes": round(minutes, 2), "trials_per_minute": round(rate, 3),
                  "epochs_per_trial": args.tune_epochs}
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "throughput.jsonl"), "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        self.note(f"tune: {after - before} trials in {minutes:.1f} min ({rate:.2f} trials/min, {workers} trainer(s)), "
                  f"{after} of {args.tune_trials} done")
        for role, process, output in processes:
            if process.returncode not in (0, -signal.SIGKILL):
                self.note(f"tune {role}: exit {process.returncode}; its log's end:")
                self.notes.append("```\n" + tail(output.name, 25) + "\n```")
                print(tail(output.name, 25), flush=True)

    # -- throughput ------------------------------------------------------------------------------------

    def bench_stage(self):
        args = self.args
        self.touch("gpu-bench")
        if self.budget.left() < args.min_stage_seconds:
            self.note(f"bench: skipped, {self.budget.left():.0f} s left")
            return
        output = os.path.join(self.logs, "bench.log")
        command = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "throughput.py"),
                   "--output", os.path.join(self.live, "gpu-bench"), "--batch-size", str(args.bench_batch),
                   "--steps", str(args.bench_steps), "--width-multiplier", str(args.bench_width),
                   "--precisions", *args.bench_precisions.split(","), "--models", *args.bench_models.split(",")]
        self.note(f"bench: {args.bench_models} at batch {args.bench_batch}, {self.budget.left():.0f} s left")
        with open(output, "a", encoding="utf-8") as handle:
            process = subprocess.Popen(command, env=self.environment(args.memory), stdout=handle,
                                       stderr=subprocess.STDOUT, start_new_session=True)
            while process.poll() is None and self.budget.left() > 0:
                time.sleep(1)
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        text = tail(output, 40)
        print(text, flush=True)
        self.note(f"bench: exit {process.returncode}")
        self.notes.append("```\n" + tail(output, 20) + "\n```")


def completed_trials(project):
    if not os.path.isdir(project):
        return 0
    count = 0
    for name in os.listdir(project):
        trial = read_json(os.path.join(project, name, "trial.json"), {}) if name.startswith("trial_") else {}
        count += trial.get("status") == "COMPLETED"
    return count


def free_port():
    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        return handle.getsockname()[1]


def tail(path, lines):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:]).rstrip()
    except OSError:
        return ""


def gpu_devices():
    """The GPUs as `rir_keras.runs.accelerators` lists them, without initializing them in this process
    (nvidia-smi); empty where there is none."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        return []
    devices = []
    for line in out:
        name, _, capability = (part.strip() for part in line.rpartition(","))
        try:
            devices.append({"name": name, "platform": "gpu", "compute_capability": float(capability)})
        except ValueError:
            devices.append({"name": line.strip(), "platform": "gpu", "compute_capability": None})
    return devices


def device_name():
    """The accelerator in words, without initializing it in this process (nvidia-smi), else the CPU."""
    devices = gpu_devices()
    if devices:
        return f"{len(devices)} x {devices[0]['name']}"
    from rir_keras.runs import machine

    return machine()


def resolve_precision(requested, flag):
    """``--precision``'s `rir_keras.precision.Choice` on the trainers' GPU (this process does not use it)."""
    from rir_keras import precision

    return precision.resolve(requested, devices=gpu_devices(), argument=flag)


def run(args):
    stages = [s for s in args.stages.split(",") if s and s not in args.skip.split(",")]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise SystemExit(f"runner: error: unknown stage(s) {unknown}; stages are {', '.join(STAGES)}")
    if not 0 < args.volume_mib <= VOLUME_BYTES / MIB:
        raise SystemExit(f"runner: error: --volume-mib must be > 0 and at most {VOLUME_BYTES // MIB}. "
                         f"Received: --volume-mib={args.volume_mib}")
    child_env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
                 "JAX_COMPILATION_CACHE_DIR": os.path.abspath(os.path.join(args.live, "jax-cache")),
                 "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
    child_env.setdefault("KERAS_BACKEND", "jax")
    # This process only orchestrates and writes reports: it must not take the GPU from the trainers.
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ.setdefault("KERAS_BACKEND", "jax")
    runner = Runner(args, child_env)
    runner.note(f"runner: {device_name()}; stages {', '.join(stages)}; budget {args.budget:.0f} s from the "
                f"command's start, {runner.budget.left():.0f} s left")
    try:
        for stage in stages:
            if runner.budget.left() <= 0:
                runner.note(f"{stage}: not started, the budget is spent")
                continue
            if stage in TRAINING_STAGES:
                runner.train_stage(stage)
            elif stage == "tune":
                runner.tune_stage()
            else:
                runner.bench_stage()
    finally:
        manifest = pack(runner.live, runner.touched, args.out, volume_bytes=int(args.volume_mib * MIB),
                        tree=args.results)
        weights = [os.path.dirname(f) for f in manifest["packed"] if os.path.basename(f) == WEIGHTS_PLAN]
        waiting = [os.path.dirname(f) for f in manifest["left_out"] if os.path.basename(f) == WEIGHTS_PLAN]
        runner.note(f"packed {len(manifest['packed'])} files into {', '.join(manifest['volumes']) or 'nothing'} "
                    f"under {args.out}" + (f"; the weights of {', '.join(weights)}" if weights else "")
                    + (f"; left on the device: {len(manifest['left_out'])} files" if manifest["left_out"] else "")
                    + (f" (the weights of {len(waiting)} runs: the next call brings them)" if waiting else ""))
        with open(os.path.join(args.out, "summary.md"), "w", encoding="utf-8") as handle:
            handle.write("\n".join(runner.notes) + "\n")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="runner.py", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    go = commands.add_parser("run", help="train, tune and measure on the GPU machine (via tools/gpu/run.sh)",
                             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    go.add_argument("--stages", default=",".join(STAGES), help="comma-separated, run in this order")
    go.add_argument("--skip", default="", help="comma-separated stages to leave out")
    go.add_argument("--budget", type=float, default=540,
                    help="seconds from --started until everything has stopped (the device tool allows 600)")
    go.add_argument("--started", type=float, default=time.time(), help="the command's start (epoch seconds)")
    go.add_argument("--margin", type=float, default=15, help="seconds kept for packing the state")
    go.add_argument("--volume-mib", type=float, default=VOLUME_BYTES / MIB,
                    help="the largest state-N.tar.gz, in MiB (at most 6 a call): the device tool brings back files of "
                         "at most 16 MiB; smaller in dry runs, to cut a tiny model's weights into several volumes")
    go.add_argument("--out", default=os.environ.get("OUT") or os.path.join(".gpu", "out"),
                    help="where the state goes back ($OUT)")
    go.add_argument("--results", default="results", help="the state sent with the call (the working tree's)")
    go.add_argument("--live", default=os.path.join(".gpu", "live"), help="the state on this machine")
    go.add_argument("--recipe", default="paper", help="table1's recipe")
    go.add_argument("--precision", default="float32",
                    help="table1's precision, or auto: rir_keras.precision's choice for the GPU (from nvidia-smi's "
                         "compute capability); the precision chosen names the campaign folder")
    go.add_argument("--wide-recipe", default="fast", help="the 18-layer-wide stages' recipe")
    go.add_argument("--wide-precision", default="float32",
                    help="the 18-layer-wide stages' precision, or auto (mixed_bfloat16 gave NaN validation losses on CPU "
                         "under jax 0.11.2 in the dry run: check the bench and a short run before choosing it)")
    go.add_argument("--models", nargs="+", help="train only these models of each table")
    go.add_argument("--epochs", type=int, help="override every recipe's epochs (dry runs)")
    go.add_argument("--train-args", default="", help="more flags for every train and tune command (dry runs)")
    go.add_argument("--stop-after-epochs", type=int, help="stop each run after this many epochs (dry runs)")
    go.add_argument("--memory", type=float, default=0.8, help="share of GPU memory for all trainers together")
    go.add_argument("--min-stage-seconds", type=float, default=90, help="start no stage with less time left")
    go.add_argument("--tune-model", default="rir32")
    go.add_argument("--tune-grid", default="paper")
    go.add_argument("--tune-recipe", default="paper")
    go.add_argument("--tune-epochs", type=int, default=10, help="epochs per trial")
    go.add_argument("--tune-trials", type=int, default=16, help="trials in all (earlier calls count)")
    go.add_argument("--tune-workers", type=int, default=4, help="concurrent trainers (KerasTuner's chief/workers)")
    go.add_argument("--bench-models", default="rir32,resnet32,resnet_init32,cnn32,rir18_wide,resnet18_wide")
    go.add_argument("--bench-precisions", default="float32,mixed_bfloat16")
    go.add_argument("--bench-batch", type=int, default=128)
    go.add_argument("--bench-steps", type=int, default=50, help="timed training steps per repeat")
    go.add_argument("--bench-width", type=float, default=1.0, help="width multiplier (dry runs)")
    go.set_defaults(func=run)
    back = commands.add_parser("collect", help="unpack what a run brought back into results/")
    back.add_argument("source", help="the folder holding manifest.json and state-N.tar.gz (the call's files_at)")
    back.add_argument("--results", default="results")
    back.set_defaults(func=lambda a: collect(a.source, a.results) and 0)
    size = commands.add_parser("size", help="what a device call would send, against its 64 MiB limit")
    size.add_argument("--carry", nargs="*", default=[], help="the paths the call carries")
    size.add_argument("--part-mib", action="store_true",
                      help="print only the MiB one more carried file may hold (the part size of tools/gpu/parts.py)")
    size.set_defaults(func=lambda a: print_size(a.carry, a.part_mib))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
