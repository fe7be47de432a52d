"""tools/gpu/runner.py's state handling, which decides whether a GPU session's training comes back:
packing into volumes within the device tool's limits (small files first, a backup whole or not at
all), collecting here (what the device removed goes, what it could not bring back stays), and taking
the further copy of each run at a call's start. Plain files, no training: tools/gpu/dry_run.sh
(make gpu-dry-run) runs the whole path."""
import json

import pytest

from conftest import load_script

runner = load_script("tools/gpu/runner.py")


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

    manifest = runner.pack(live, ["camp", "wide"], out, volume_bytes=4000, total_bytes=10_000, max_volumes=2)
    assert set(manifest["left_out"]) == {"wide/rir18_wide/seed0/backup/training_metadata.json",
                                         "wide/rir18_wide/seed0/backup/weights-1-0.weights.h5"}
    assert not any(".lock" in f or "weights-0-0" in f for f in manifest["packed"])
    assert manifest["packed"].index("wide/rir18_wide/seed0/log.csv") < manifest["packed"].index(
        "camp/cnn32/seed0/model.keras")  # records first, weights after
    assert len(manifest["volumes"]) == 1

    runner.collect(out, here)
    rir = here / "camp" / "rir32" / "seed0"
    assert runner.backed_up(rir) == 2 and not (rir / "backup" / "weights-0-0.weights.h5").exists()
    cnn = here / "camp" / "cnn32" / "seed0"
    assert runner.finished(cnn) and not (cnn / "backup").exists()  # removed on the device: removed here
    wide = here / "wide" / "rir18_wide" / "seed0"
    assert len(runner.log_rows(wide)) == 1 and runner.backed_up(wide) == 0  # its older backup kept, consistent
    assert (wide / "backup" / "weights-0-0.weights.h5").read_bytes() == b"w" * 10


def test_a_call_continues_from_whichever_copy_got_further(tmp_path):
    tree, live = tmp_path / "tree", tmp_path / "live"
    make_run(tree / "camp" / "a" / "seed0", 3)
    make_run(live / "camp" / "a" / "seed0", 1)
    make_run(tree / "camp" / "b" / "seed0", 1)
    make_run(live / "camp" / "b" / "seed0", 2)
    make_run(tree / "camp" / "c" / "seed0", 2)
    (tree / "camp" / "campaign.json").write_text('{"from": "tree"}')
    runner.sync_in(tree, live)
    assert runner.backed_up(live / "camp" / "a" / "seed0") == 3
    assert runner.backed_up(live / "camp" / "b" / "seed0") == 2
    assert runner.backed_up(live / "camp" / "c" / "seed0") == 2
    assert not (live / "camp" / "a" / "seed0" / ".lock").exists()
    assert json.loads((live / "camp" / "campaign.json").read_text()) == {"from": "tree"}


@pytest.mark.parametrize("stage, recipe, precision, name", [
    ("table1", "paper", "float32", "table32-cifar10-paper-gpu"),
    ("wide10", "fast", "mixed_bfloat16", "table18wide-cifar10-fast-bf16-gpu"),
    ("wide100", "fast", "mixed_float16", "table18wide-cifar100-fast-fp16-gpu"),
])
def test_campaign_folders_name_table_data_recipe_and_precision(stage, recipe, precision, name):
    assert runner.campaign_name(stage, recipe, precision) == name
