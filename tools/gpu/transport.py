"""The runs' state between here and the lent GPU machine: what a device call sends, and what it brings back.

A device call sends the working tree (tracked and untracked-not-ignored files) and the paths it
carries, 64 MiB in all (`tree_bytes`, `print_size`: ``runner.py size``), and brings back at most
eight files of at most 16 MiB from ``$OUT``. The run folders travel both ways:

- *In*, at a call's start (`sync_in`): the working tree's ``results/`` came with the call; each run
  there that got further than the machine's own copy in its live folder (`standing`: finished, then
  the epochs its backup holds) replaces that copy, so a fresh machine continues from the committed or
  collected state.
- *Back*, at a call's end (`pack`): what the stages worked on, into at most `MAX_VOLUMES`
  ``state-N.tar.gz`` of at most `VOLUME_BYTES` and a ``manifest.json``; settings, logs and results
  first, then weights where they fit. A unit comes back whole or not at all: a run's backup (pointer
  and the weights it names, `rir_keras.runs.backup_files`), a model file, or a finished wide run's
  weights alone (`WEIGHTS_FILE`) in parts (`parts.split`), one run's a call.
- *Here* (`collect`: ``runner.py collect``): the volumes are unpacked into ``results/``, files the
  device removed (a finished run's backup) are removed here too, and weights that came in parts are
  joined, their SHA-256 checked (`join_weights`).

The run folders are read and written with `rir_keras.runs` and `rir_keras.atomic`, which need no
Keras: ``collect`` and ``size`` run here under a bare ``python3``, where rir_keras is not installed
and is taken from this source tree (``rir_keras/__init__.py`` then registers no layers). On the GPU
machine, run.sh has installed rir_keras first, and that copy is used.
"""
import datetime
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
if importlib.util.find_spec("rir_keras") is None:  # a bare python3 here: the source tree, last (never shadowing)
    sys.path.append(os.path.dirname(os.path.dirname(HERE)))
import parts  # noqa: E402  (tools/gpu/parts.py: the same splitter cuts the data going out and the weights coming back)
from rir_keras import runs  # noqa: E402
from rir_keras.atomic import write_json  # noqa: E402

MIB = 2 ** 20
VOLUME_BYTES = 15 * MIB  # the device tool brings back files of at most 16 MiB, 64 MiB in all, 8 files
TOTAL_BYTES = 60 * MIB
MAX_VOLUMES = 6  # and manifest.json, summary.md
DEVICE_LIMIT = 64 * MIB  # what a call sends: the working tree and what it carries
SKIPPED = (".lock", "tensorboard", "__pycache__")
# A finished 18-layer-wide run's weights alone (model.save_weights: no optimizer state), written on the
# device beside its model.keras, which does not come back (weights and SGD momentum: about 72 MiB). The
# weights (36.2 MiB) come back in parts (parts.split, a volume each at most), one run's whole or none
# per call; here, `collect` joins them and checks their SHA-256 (the plan stays as the receipt that
# tells the next call not to send them again). Git-ignored: it would make the tree too large to send.
WEIGHTS_FILE = "model.weights.h5"
WEIGHTS_PLAN = WEIGHTS_FILE + parts.PLAN_SUFFIX


# ----------------------------------------------------------------------------- the state a call brings in


def restorable_epochs(run):
    """The epochs a copy of ``run`` continues from: those its backup holds where the backup is whole
    (`rir_keras.runs.backup_files`), else 0."""
    return runs.backed_up_epochs(run) if runs.backup_files(run) else 0


def standing(run):
    """How far a run got, comparable: (finished, epochs its backup holds)."""
    return (runs.finished(run), restorable_epochs(run))


def run_folders(root):
    """Every run folder (one holding run.json) under ``root``."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(s for s in subfolders if s not in SKIPPED)
        if runs.SETTINGS_FILE in files:
            found.append(folder)
            subfolders[:] = [s for s in subfolders if s == runs.BACKUP_FOLDER]
    return found


def copy_tree(source, target):
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(*SKIPPED))


def sync_in(tree, live, say=print):
    """Bring ``live`` up to the copy in ``tree`` (the working tree sent with the call) where that copy
    got further: per run folder, by `standing`; other files only where live lacks them. Says (``say``)
    which runs it took."""
    if not os.path.isdir(tree):
        return
    for run in run_folders(tree):
        relative = os.path.relpath(run, tree)
        mine = os.path.join(live, relative)
        if not os.path.isdir(mine) or standing(run) > standing(mine):
            copy_tree(run, mine)
            say(f"state: {relative} from the working tree (finished={runs.finished(run)}, "
                f"epochs={restorable_epochs(run)})")
    found = [os.path.relpath(r, tree) for r in run_folders(tree)]
    for folder, subfolders, files in os.walk(tree):
        relative = os.path.relpath(folder, tree)
        subfolders[:] = [s for s in subfolders if s not in SKIPPED
                         and not any(os.path.normpath(os.path.join(relative, s)) == r for r in found)]
        for name in files:
            target = os.path.join(live, relative, name)
            if not os.path.exists(target):
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.copy2(os.path.join(folder, name), target)


# ----------------------------------------------------------------------------- packing there, collecting here


def weights_unit(root, run, part_bytes, tree=None):
    """``(unit, names)`` for a run folder holding WEIGHTS_FILE: the files that bring its weights back
    (the plan and the parts of ``parts.split``, each at most ``part_bytes``), relative to ``root``, or
    none where ``tree`` (the state sent with the call) holds them already (its plan has their SHA-256);
    and the names of the run's files they stand for (model.keras among them: it stays here)."""
    digest = parts.sha256(os.path.join(run, WEIGHTS_FILE))
    received = runs.read_json(os.path.join(tree, os.path.relpath(run, root), WEIGHTS_PLAN), {}) if tree else {}
    unit = []
    if received.get("sha256") != digest:
        plan = parts.split(os.path.join(run, WEIGHTS_FILE), run, part_bytes)
        unit = [os.path.relpath(os.path.join(run, name), root) for name in
                [WEIGHTS_PLAN] + [part["file"] for part in plan["parts"]]]
    names = {name for name in os.listdir(run) if name.startswith(WEIGHTS_FILE)} | {"model.keras"}
    return unit, names


def pack_units(root, folders, part_bytes=VOLUME_BYTES, tree=None):
    """``(units, runs)``: the files under ``root/folder`` for each folder, grouped into units that come
    back whole or not at all (a run's backup: `rir_keras.runs.backup_files`; model.keras; a run's
    WEIGHTS_FILE in parts, in place of its model.keras: `weights_unit`), and per run folder the files
    it holds on this machine."""
    units, held_by_run = [], {}
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
                members = runs.backup_files(folder)
                if members:
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
                held_by_run[relative_run] = sorted(held)
    units.sort(key=lambda unit: (unit[0], unit[1]))
    return [unit[2] for unit in units], held_by_run


def pack(root, folders, out, volume_bytes=VOLUME_BYTES, total_bytes=TOTAL_BYTES, max_volumes=MAX_VOLUMES,
         tree=None):
    """Pack ``root/folder`` for each of ``folders`` into ``out``: state-N.tar.gz volumes and
    manifest.json (see the module's docstring); weights that ``tree`` holds already stay out. A unit
    comes back whole or not at all, each of its files in the first volume with room (a run's weights
    in parts span volumes). Returns the manifest."""
    units, held_by_run = pack_units(root, folders, volume_bytes, tree)
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
                "folders": list(folders), "volumes": names, "runs": held_by_run, "packed": packed,
                "left_out": left_out}
    write_json(manifest, os.path.join(out, "manifest.json"))
    return manifest


def collect(source, results):
    """Unpack what a run brought back (``source``: the folder with manifest.json and state-N.tar.gz)
    into ``results``: per run folder, files the device no longer holds are removed first (those it
    held but could not bring back are kept as they are here; WEIGHTS_FILE, never sent, always), then
    the volumes are extracted, and weights that came in parts are joined, their SHA-256 checked."""
    manifest = runs.read_json(os.path.join(source, "manifest.json"), None)
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
        backup = runs.BACKUP_FOLDER + os.sep
        keep_backup = any(name.startswith(os.path.join(run, backup)) for name in left_out)
        for folder, subfolders, files in os.walk(local):
            subfolders[:] = [s for s in subfolders if s not in SKIPPED]
            for file in files:
                relative = os.path.relpath(os.path.join(folder, file), local)
                if (file in SKIPPED or relative in keep or relative == WEIGHTS_FILE
                        or os.path.join(run, relative) in left_out
                        or (keep_backup and relative.startswith(backup))):
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


# ----------------------------------------------------------------------------- the size of a device call


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
