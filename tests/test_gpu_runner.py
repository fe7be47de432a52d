"""tools/gpu/: the transport of the runs' state (tools/gpu/transport.py), which decides whether a GPU
session's training comes back: packing into volumes within the device tool's limits (small files
first, a backup whole or not at all), collecting here (what the device removed goes, what it could
not bring back stays), and taking the further copy of each run at a call's start; that it runs
without Keras, as `collect` and `size` do here under a bare python3; and the runner's (tools/gpu/runner.py)
campaign folders and flags. Plain files, no training: tools/gpu/dry_run.sh (make gpu-dry-run) runs the
whole path."""
import io
import json
import os
import subprocess
import sys
import tarfile

import pytest

from conftest import REPO, load_script
from rir_keras import runs

runner = load_script("tools/gpu/runner.py")
transport = runner.transport
WEIGHTS_FILE = transport.WEIGHTS_FILE
# On PYTHONPATH as sitecustomize.py: a Python in which Keras and its backends cannot be found, as in the
# bare python3 that runs `runner.py collect` and `size` here.
HIDE_KERAS = """
import importlib.machinery, sys
class _PathFinderWithoutKeras(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname.partition(".")[0] in ("keras", "tensorflow", "jax", "jaxlib"):
            return None
        return super().find_spec(fullname, path, target)
sys.meta_path[:] = [_PathFinderWithoutKeras if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
"""


def make_run(folder, epochs_done, total=4, weights_bytes=1000, finished=False, stale=False):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.json").write_text(json.dumps({"config": {"epochs": total}}))
    (folder / "sessions.jsonl").write_text('{"first_epoch": 0}\n')
    (folder / "log.csv").write_text("epoch,loss,seconds\n" + "".join(f"{e},1.0,2.0\n" for e in range(epochs_done)))
    (folder / ".lock").write_text("123")
    if finished:
        (folder / "results.json").write_text("{}")
        (folder / "model.keras").write_bytes(b"m" * weights_bytes)
        return folder
    backup = folder / "backup"
    backup.mkdir()
    name = f"weights-{epochs_done}-0.weights.h5"
    (backup / name).write_bytes(b"w" * weights_bytes)
    (backup / "training_metadata.json").write_text(json.dumps({"epoch": epochs_done, "batch": 0, "weights": name}))
    if stale:  # a kill between the pointer's write and the old file's removal
        (backup / "weights-0-0.weights.h5").write_bytes(b"old")
    return folder


def test_pack_and_collect_bring_back_the_state_as_the_device_left_it(tmp_path):
    live, out, here = tmp_path / "live", tmp_path / "out", tmp_path / "results"
    make_run(live / "camp" / "rir32" / "seed0", 2, stale=True)
    make_run(live / "camp" / "cnn32" / "seed0", 4, finished=True)
    make_run(live / "wide" / "rir18_wide" / "seed0", 1, weights_bytes=5000)  # too big to come back
    (live / "camp" / "campaign.json").write_text("{}")
    # Here: the finished run still has the backup it had before the call, the wide run an older one.
    make_run(here / "camp" / "cnn32" / "seed0", 3)
    make_run(here / "wide" / "rir18_wide" / "seed0", 0, weights_bytes=10)

    manifest = transport.pack(live, ["camp", "wide"], out, volume_bytes=4000, total_bytes=10_000, max_volumes=2)
    assert set(manifest["left_out"]) == {"wide/rir18_wide/seed0/backup/training_metadata.json",
                                         "wide/rir18_wide/seed0/backup/weights-1-0.weights.h5"}
    assert not any(".lock" in f or "weights-0-0" in f for f in manifest["packed"])
    assert manifest["packed"].index("wide/rir18_wide/seed0/log.csv") < manifest["packed"].index(
        "camp/cnn32/seed0/model.keras")  # records first, weights after
    assert len(manifest["volumes"]) == 1

    transport.collect(out, here)
    rir = here / "camp" / "rir32" / "seed0"
    assert transport.restorable_epochs(rir) == 2 and not (rir / "backup" / "weights-0-0.weights.h5").exists()
    cnn = here / "camp" / "cnn32" / "seed0"
    assert runs.finished(cnn) and not (cnn / "backup").exists()  # removed on the device: removed here
    wide = here / "wide" / "rir18_wide" / "seed0"
    assert runs.read_log(wide / runs.LOG_FILE)["epoch"] == [0.0]
    assert transport.restorable_epochs(wide) == 0  # its older backup kept, consistent
    assert (wide / "backup" / "weights-0-0.weights.h5").read_bytes() == b"w" * 10


def test_a_call_continues_from_whichever_copy_got_further(tmp_path):
    tree, live = tmp_path / "tree", tmp_path / "live"
    make_run(tree / "camp" / "a" / "seed0", 3)
    make_run(live / "camp" / "a" / "seed0", 1)
    make_run(tree / "camp" / "b" / "seed0", 1)
    make_run(live / "camp" / "b" / "seed0", 2)
    make_run(tree / "camp" / "c" / "seed0", 2)
    (tree / "camp" / "campaign.json").write_text('{"from": "tree"}')
    transport.sync_in(tree, live)
    assert transport.restorable_epochs(live / "camp" / "a" / "seed0") == 3
    assert transport.restorable_epochs(live / "camp" / "b" / "seed0") == 2
    assert transport.restorable_epochs(live / "camp" / "c" / "seed0") == 2
    assert not (live / "camp" / "a" / "seed0" / ".lock").exists()
    assert json.loads((live / "camp" / "campaign.json").read_text()) == {"from": "tree"}


@pytest.mark.parametrize("stage, recipe, precision, name", [
    ("table1", "paper", "float32", "table32-cifar10-paper-gpu"),
    ("wide10", "fast", "mixed_bfloat16", "table18wide-cifar10-fast-bf16-gpu"),
    ("wide100", "fast", "mixed_float16", "table18wide-cifar100-fast-fp16-gpu"),
])
def test_campaign_folders_name_table_data_recipe_and_precision(stage, recipe, precision, name):
    assert runner.campaign_name(stage, recipe, precision) == name


def test_wide_weights_come_back_in_parts_one_run_per_call_and_are_joined_by_sha256(tmp_path):
    """A finished wide run's weights alone (transport.WEIGHTS_FILE) come back cut into parts over several volumes
    (parts.split), one run's whole or none per call, in place of its model.keras; `collect` joins them
    and checks their SHA-256; the next call sends only the weights not here yet, and the joined file
    (git-ignored, so never sent) stays here."""
    live, here = tmp_path / "live", tmp_path / "results"
    weights = {}
    for model in ("rir18_wide", "cnn18_wide"):
        run = make_run(live / "wide" / model / "seed0", 2, total=2, weights_bytes=9000, finished=True)
        weights[model] = bytes(range(256)) * 20 + model.encode()  # 5,130 bytes: 3 parts of at most 2,000
        (run / WEIGHTS_FILE).write_bytes(weights[model])
    limits = dict(volume_bytes=2000, total_bytes=7000, max_volumes=6)

    first = transport.pack(live, ["wide"], tmp_path / "out1", tree=here, **limits)
    assert not any(f.endswith("model.keras") for f in first["packed"])  # too large on a GPU: the weights stand in
    came = [f for f in first["packed"] if WEIGHTS_FILE in f]
    assert sorted(came) == [f"wide/cnn18_wide/seed0/{WEIGHTS_FILE}{suffix}"
                            for suffix in (".part1", ".part2", ".part3", ".parts.json")]
    assert len(first["volumes"]) >= 3 and all(WEIGHTS_FILE in f or "model.keras" in f for f in first["left_out"])
    transport.collect(tmp_path / "out1", here)
    cnn = here / "wide" / "cnn18_wide" / "seed0"
    assert (cnn / WEIGHTS_FILE).read_bytes() == weights["cnn18_wide"]
    assert not any(".part" in name and not name.endswith(".json") for name in map(str, cnn.iterdir()))

    second = transport.pack(live, ["wide"], tmp_path / "out2", tree=here, **limits)  # the next call on the warm machine
    assert {f for f in second["packed"] if WEIGHTS_FILE in f} == {
        f"wide/rir18_wide/seed0/{WEIGHTS_FILE}{suffix}" for suffix in (".part1", ".part2", ".part3", ".parts.json")}
    transport.collect(tmp_path / "out2", here)
    assert (here / "wide" / "rir18_wide" / "seed0" / WEIGHTS_FILE).read_bytes() == weights["rir18_wide"]
    assert (cnn / WEIGHTS_FILE).read_bytes() == weights["cnn18_wide"]  # kept: never sent, never removed
    third = transport.pack(live, ["wide"], tmp_path / "out3", tree=here, **limits)
    assert not any(WEIGHTS_FILE in f for f in third["packed"] + third["left_out"])


def test_weights_that_do_not_join_to_their_sha256_are_refused_and_sent_again(tmp_path):
    live, here, out = tmp_path / "live", tmp_path / "results", tmp_path / "out"
    run = make_run(live / "wide" / "rir18_wide" / "seed0", 2, total=2, finished=True)
    (run / WEIGHTS_FILE).write_bytes(b"x" * 5000)
    manifest = transport.pack(live, ["wide"], out, tree=here, volume_bytes=2000)
    for name in manifest["volumes"]:  # a part damaged on the way
        with tarfile.open(out / name) as archive:
            members = [(member, archive.extractfile(member).read()) for member in archive.getmembers()]
        with tarfile.open(out / name, "w:gz") as archive:
            for member, data in members:
                archive.addfile(member, io.BytesIO(b"y" * len(data) if member.name.endswith(".part2") else data))
    with pytest.raises(SystemExit, match="collect: error: .*rir18_wide/seed0: the weights did not come back whole"):
        transport.collect(out, here)
    assert not any(WEIGHTS_FILE in p.name for p in (here / "wide" / "rir18_wide" / "seed0").iterdir())
    again = transport.pack(live, ["wide"], tmp_path / "again", tree=here, volume_bytes=2000)  # no receipt: sent again
    assert f"wide/rir18_wide/seed0/{WEIGHTS_FILE}.parts.json" in again["packed"]


def test_volume_mib_is_checked_by_name():
    with pytest.raises(SystemExit, match=r"--volume-mib must be > 0 and at most 15. Received: --volume-mib=0.0$"):
        runner.main(["run", "--volume-mib", "0", "--stages", "bench"])


def test_the_run_folder_modules_and_collect_work_without_keras(tmp_path):
    """rir_keras.runs and rir_keras.atomic import in a Python without Keras (``import rir_keras``
    then registers no layers, and their names say what is missing), and so do `runner.py collect`
    and `size`, which run here under a bare python3."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(HIDE_KERAS)
    env = {**os.environ, "PYTHONPATH": str(hide)}
    check = """
import sys
import rir_keras.runs, rir_keras.atomic
from rir_keras.dependencies import MissingDependency
try:
    import keras
except ModuleNotFoundError:
    pass
else:
    sys.exit("keras can still be imported: the test would prove nothing")
loaded = sorted({name.partition(".")[0] for name in sys.modules} & {"keras", "tensorflow", "jax"})
assert not loaded, loaded
try:
    rir_keras.RiRConv2D
except MissingDependency as error:
    print(error)
"""
    done = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("rir_keras.RiRConv2D needs Keras, which is not installed")

    live, out, here = tmp_path / "live", tmp_path / "out", tmp_path / "results"
    make_run(live / "camp" / "rir32" / "seed0", 2)
    transport.pack(live, ["camp"], out)
    script = str(REPO / "tools" / "gpu" / "runner.py")
    collected = subprocess.run([sys.executable, script, "collect", str(out), "--results", str(here)], env=env,
                               capture_output=True, text=True, timeout=60)
    assert collected.returncode == 0, collected.stderr[-3000:]
    assert transport.restorable_epochs(here / "camp" / "rir32" / "seed0") == 2
    size = subprocess.run([sys.executable, script, "size", "--part-mib"], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert size.stdout.strip().isdigit(), size.stderr[-3000:]
