"""The benchmarks' quiet-machine guard (benchmarks/quiet.py): it pauses the campaign, always resumes
it, and refuses to measure on a busy machine. (What the benchmarks measure is never timed in tests.)"""
import pathlib
import subprocess
import sys

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
