"""The benchmarks' quiet-machine guard (benchmarks/quiet.py): it pauses the campaign, always resumes
it, and refuses to measure on a busy machine; the profile's variant forms of the shortcut compute what the
package's do. (What the benchmarks measure is never timed in tests.)"""
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from conftest import load_script


@pytest.fixture(scope="module")
def quiet():
    return load_script("benchmarks/quiet.py")


def state(pid):
    """The process state letter from /proc (T: stopped)."""
    return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.fixture
def campaign(tmp_path):
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    pid_file = tmp_path / "campaign.pid"
    pid_file.write_text(str(process.pid))
    yield process, pid_file
    process.kill()
    process.wait()


def test_a_campaign_that_leads_a_process_group_is_paused_whole(quiet, tmp_path):
    # `make campaign` runs its stages under a shell that leads a process group: the training
    # process is the shell's child, and it is the one that must stop.
    leader = subprocess.Popen(["sh", "-c", "sleep 60 & wait"], start_new_session=True)
    pid_file = tmp_path / "campaign.pid"
    pid_file.write_text(str(leader.pid))
    try:
        deadline = time.monotonic() + 10
        while not (children := pathlib.Path(f"/proc/{leader.pid}/task/{leader.pid}/children").read_text().split()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        child = int(children[0])
        with quiet.quiet_machine(pid_file, allow_busy=True, say=lambda m: None):
            assert state(leader.pid) == "T" and state(child) == "T"
        assert state(leader.pid) != "T" and state(child) != "T"
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()


def test_the_campaign_is_paused_during_a_section_and_resumed_after(quiet, campaign):
    process, pid_file = campaign
    with pytest.raises(KeyError):  # a section that fails still resumes the campaign
        with quiet.quiet_machine(pid_file, allow_busy=True, say=lambda m: None) as conditions:
            assert state(process.pid) == "T" and conditions.paused == process.pid
            raise KeyError("the section failed")
    assert state(process.pid) != "T"


def test_a_busy_machine_is_refused(quiet, campaign, monkeypatch):
    process, pid_file = campaign
    monkeypatch.setattr(quiet, "busy_cores", lambda seconds=3.0: 2.0)  # every core busy, as beside a test suite
    with pytest.raises(quiet.BusyMachine, match="stayed busy .* nothing measured"):
        with quiet.quiet_machine(pid_file, max_busy=0.5, wait_seconds=0, say=lambda m: None):
            pytest.fail("measured on a busy machine")
    assert state(process.pid) != "T"
    with quiet.quiet_machine(pid_file, wait_seconds=0, allow_busy=True, say=lambda m: None) as conditions:
        pass
    assert conditions.forced and "busy machine" in conditions.describe()


def test_a_benchmark_killed_mid_section_resumes_the_campaign(campaign):
    process, pid_file = campaign
    script = ("import sys, time; sys.path.insert(0, 'benchmarks'); import quiet\n"
              f"with quiet.quiet_machine({str(pid_file)!r}, allow_busy=True, say=lambda m: None):\n"
              "    print('measuring', flush=True); time.sleep(60)\n")
    bench = subprocess.Popen([sys.executable, "-c", script], cwd=pathlib.Path(__file__).parent.parent,
                             stdout=subprocess.PIPE, text=True)
    assert bench.stdout.readline().strip() == "measuring"
    assert state(process.pid) == "T"
    bench.terminate()  # SIGTERM, as `kill PID` sends
    assert bench.wait(timeout=30) != 0
    assert state(process.pid) != "T"


def test_time_to_accuracy_section_reads_the_campaigns_logs(tmp_path, monkeypatch):
    """Section 5 from two campaign folders: a mark reached (its epoch, the logged minutes until then),
    a finished run that never reached a mark, a run still going, runs not begun; each row names its
    campaign, the archive it recorded (or that it recorded none) and the precision it trained in."""
    import argparse
    import json

    monkeypatch.syspath_prepend(str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
    run = load_script("benchmarks/run.py")
    first, second = tmp_path / "first", tmp_path / "second"
    for folder, models in ((first, ["rir32", "resnet32"]), (second, ["cnn32"])):
        folder.mkdir()
        (folder / "campaign.json").write_text(json.dumps(
            {"table": "32", "family": "cifar10", "models": models, "seeds": [0, 1], "recipe": "fast",
             "dataset": "cifar10", "epochs": 3}))
    header = "epoch,accuracy,loss,seconds,val_accuracy,val_loss\n"
    finished, going = first / "rir32" / "seed0", second / "cnn32" / "seed0"
    settings = ({"config": {"epochs": 3}, "precision": "float32"},
                {"config": {"epochs": 3}, "data": {"file": "cifar10-webp.tar.gz", "sha256": "0" * 64}})
    for folder, rows, recorded in ((finished, ["0,0.5,1,600,0.80,1", "1,0.6,1,660,0.86,1", "2,0.7,1,540,0.88,1"],
                                    settings[0]),
                                   (going, ["0,0.5,1,120,0.93,1"], settings[1])):
        folder.mkdir(parents=True)
        (folder / "log.csv").write_text(header + "\n".join(rows) + "\n")
        (folder / "run.json").write_text(json.dumps(recorded))
    (going / "sessions.jsonl").write_text(json.dumps({"first_epoch": 0, "precision": "mixed_bfloat16"}) + "\n")
    (finished / "sessions.jsonl").write_text(json.dumps({"first_epoch": 0}) + "\n")  # from before it said
    (finished / "results.json").write_text(json.dumps({"test_accuracy": 0.88}))

    text = run.accuracy_section(None, argparse.Namespace(campaign_folder=[str(first), str(second)]))
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in text.splitlines()
             if line.startswith("| ") and "---" not in line and "seed |" not in line]
    rows = {tuple(row[:2]): row for row in cells}
    assert set(rows) == {("rir32", "0"), ("cnn32", "0")}
    assert rows["rir32", "0"][2:] == [f"`{first}`", "cifar10 (archive not recorded)", "float32", "fast", "3 of 3",
                                      "88.00 (final)", "epoch 2: 21 min logged, 20 at the median epoch",
                                      "not reached", "not reached", "30"]
    assert rows["cnn32", "0"][2:] == [f"`{second}`", "cifar10-webp.tar.gz", "mixed_bfloat16", "fast", "1 of 3",
                                      "93.00"] + ["epoch 1: 2 min logged, 2 at the median epoch"] * 3 + ["2"]
    assert "Runs planned but not begun: 4." in text  # rir32 and resnet32's seed 1, resnet32's seed 0, cnn32's seed 1


def test_the_profile_s_shortcut_variants_compute_the_package_s_shortcut_but_the_bound():
    # Section 4 times other forms of the shortcuts' channel mask; each must compute what the package's does,
    # except "no-mask", the bound on the mask's cost, which must not (or it would be the better form).
    import numpy as np

    from rir_keras import layers

    jobs = load_script("benchmarks/jobs.py")
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 8)).astype("float32")
    expected = np.asarray(layers.zero_channels_after(x, 3))
    assert np.all(expected[..., 3:] == 0) and np.all(expected[..., :3] == x[..., :3])
    for form in (jobs._full_mask, jobs._slice_and_pad):
        np.testing.assert_array_equal(np.asarray(form(x, 3)), expected)
    assert not np.array_equal(np.asarray(jobs._no_mask(x, 3)), expected)
    with pytest.raises(ValueError, match="kernels must be one of .* Received: kernels='masks'"):
        jobs._trace_with("masks", None, lambda: None)
