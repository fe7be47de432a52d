"""The training campaign: recipes, a run continued from a copy of its folder after a real kill ends
with the weights of an uninterrupted run, settings that would mix two runs are refused, finished
training is never lost, and `reproduce --status` tells where each model stands."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from rir_keras import recipes, runs, training
from rir_keras.backup import EpochBackup
from rir_keras.applications import RiRNet
from rir_keras.commands.main import main
from rir_keras.data import load_split

TINY_FLAGS = ["--width-multiplier", "0.125", "--batch-size", "32", "--no-jit", "--train-limit", "128",
              "--test-limit", "64"]


@pytest.fixture
def cli_env(data_dir, monkeypatch):
    monkeypatch.setenv("RIR_KERAS_DATA", str(data_dir))
    return {**os.environ, "RIR_KERAS_DATA": str(data_dir), "TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.fixture(scope="module")
def mini(data_dir):
    archive = data_dir / "cifar10-png-mini.tar.gz"
    return load_split(archive, "train").subset(slice(0, 64)), load_split(archive, "test").subset(slice(0, 32))


# -- recipes ---------------------------------------------------------------------------------------

def test_paper_recipe_is_the_papers():
    paper = recipes.get("paper")
    config = paper.config()
    assert (config.epochs, config.batch_size, config.learning_rate, config.momentum) == (82, 128, 0.1, 0.9)
    assert config.decay_epochs == (42, 62) and config.decay_factor == 0.1 and config.schedule == "step"
    assert paper.weight_decay == 1e-4 and config.augment


def test_fast_recipe_warms_up_then_follows_a_cosine_to_zero():
    config = recipes.get("fast").config()
    assert config.nesterov and config.label_smoothing == 0.1 and config.schedule == "cosine"
    steps = 10
    schedule = training.learning_rate_schedule(config, steps)
    rate = lambda step: float(keras.ops.convert_to_numpy(schedule(step)))  # noqa: E731
    warmup = config.warmup_epochs * steps
    assert rate(0) < rate(warmup // 2) < rate(warmup)
    assert rate(warmup) == pytest.approx(0.1)
    middle = warmup + (config.epochs * steps - warmup) // 2
    assert rate(middle) == pytest.approx(0.05, rel=1e-3)
    assert rate(config.epochs * steps) == pytest.approx(0.0, abs=1e-7)


def test_a_recipe_makes_its_config_with_overrides():
    fast = recipes.get("fast")
    assert fast.config() == training.TrainConfig(**fast.training)
    shorter = fast.config(epochs=10, seed=3, batch_size=None)  # None: the recipe's
    assert (shorter.epochs, shorter.seed, shorter.batch_size, shorter.learning_rate) == (10, 3, 128, 0.1)
    assert shorter.warmup_epochs == 1 and recipes.get("long").config(epochs=50).warmup_epochs == 1  # its share
    assert fast.config(epochs=10, warmup_epochs=0).warmup_epochs == 0  # given: kept
    assert recipes.get("paper").config(epochs=41).decay_epochs == (21, 31)  # the paper's steps, scaled
    with pytest.raises(ValueError, match="learning_rat is not a training setting.*Received: learning_rat=0.2"):
        fast.config(learning_rat=0.2)
    with pytest.raises(ValueError, match="Received: epochs=0"):
        fast.config(epochs=0)


def test_unknown_recipe_is_named():
    with pytest.raises(ValueError, match="Received: recipe='slow'"):
        recipes.get("slow")


def test_label_smoothing_is_the_smoothed_cross_entropy():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], "float32")
    labels = np.array([0, 2])
    loss = training.SparseCrossentropy(label_smoothing=0.3)(labels, probabilities)
    targets = np.eye(3)[labels] * 0.7 + 0.1
    expected = np.mean(-np.sum(targets * np.log(probabilities), axis=-1))
    assert float(keras.ops.convert_to_numpy(loss)) == pytest.approx(expected, rel=1e-5)


# -- a run's folder --------------------------------------------------------------------------------

def log_epochs(path):
    return len(runs.read_log(path).get("epoch", []))


def start(command, output, env, log):
    """The command writing to ``output``, its stderr in the file ``log``: runs beside the test."""
    with open(log, "w") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command + ["--output", str(output)], env=env, stdout=subprocess.DEVNULL,
                                stderr=handle)


def finished(process, log):
    assert process.wait(timeout=300) == 0, log.read_text()[-3000:]


def test_a_run_killed_and_continued_from_a_copy_ends_with_the_uninterrupted_weights(cli_env, tmp_path):
    command = [sys.executable, "-m", "rir_keras.commands.main", "reproduce", "--table", "32", "--models", "rir32",
               "--seeds", "0", "--dataset", "cifar10-png-mini", "--recipe", "fast", "--epochs", "4", "--verbose", "0",
               *TINY_FLAGS]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    # The uninterrupted run and the one to be killed run side by side (each is mostly start-up).
    uninterrupted = start(command, whole, cli_env, tmp_path / "whole.log")
    process = start(command, cut, cli_env, tmp_path / "cut.log")
    deadline = time.monotonic() + 240
    run = cut / "rir32" / "seed0"
    while not runs.backed_up_epochs(run) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # a real kill, at whatever instant after the first backup it lands
    process.wait()
    finished_before = runs.backed_up_epochs(run)
    assert 1 <= finished_before < 4, "the kill should land mid-run"

    # The committed state, checked out on another machine: with TensorFlow (the CPU campaign), and
    # with JAX (the GPU machines have no TensorFlow), whose kernels round differently: its float
    # drift grows over the continued epochs to a few 1e-3 on AVX2 CPUs and up to 2.4e-2 on AVX512
    # ones, where a wrong state differs by ~1.
    tolerances = {"tensorflow": 1e-5, "jax": 5e-2}
    resumed = {}
    for backend in tolerances:
        copy = tmp_path / "elsewhere" / backend
        shutil.copytree(cut, copy)
        resumed[backend] = start(command, copy, {**cli_env, "KERAS_BACKEND": backend}, tmp_path / f"{backend}.log")
    finished(uninterrupted, tmp_path / "whole.log")
    reference = keras.saving.load_model(whole / "rir32" / "seed0" / "model.keras", compile=False).get_weights()
    for backend, tolerance in tolerances.items():
        finished(resumed[backend], tmp_path / f"{backend}.log")
        run = tmp_path / "elsewhere" / backend / "rir32" / "seed0"
        results = json.loads((run / "results.json").read_text())
        assert results["epochs_this_run"] == 4 - finished_before and results["recipe"] == "fast"
        assert results["history"]["epoch"] == [0.0, 1.0, 2.0, 3.0] and results["backend"] == backend
        assert [session["backend"] for session in runs.sessions(run)] == ["tensorflow", backend]
        continued = keras.saving.load_model(run / "model.keras", compile=False).get_weights()
        for expected, actual in zip(reference, continued):
            np.testing.assert_allclose(actual, expected, rtol=tolerance, atol=tolerance, err_msg=backend)
        assert not (run / "backup").exists()  # removed only after the outputs were written


def test_changed_settings_are_refused_by_name(cli_env, tmp_path, capsys):
    args = ["train", "--model", "rir32", "--dataset", "cifar10-png-mini", "--epochs", "1", "--steps-per-epoch", "1",
            "--output", str(tmp_path), *TINY_FLAGS]
    assert main(args) == 0
    assert main(args[:-len(TINY_FLAGS)] + ["--learning-rate", "0.2", *TINY_FLAGS]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "learning_rate=0.1 (now 0.2)" in error[0] and "--restart" in error[0]
    assert main(args[:-len(TINY_FLAGS)] + ["--learning-rate", "0.2", "--restart", *TINY_FLAGS]) == 0
    assert json.loads((tmp_path / "run.json").read_text())["config"]["learning_rate"] == 0.2


def test_a_kill_between_log_row_and_backup_leaves_one_row_per_epoch(mini, tmp_path, monkeypatch):
    train, test = mini
    config = training.TrainConfig(epochs=3, batch_size=32, jit_compile=False)
    backup = EpochBackup.on_epoch_end

    def killed_at_second_backup(self, epoch, logs=None):
        if epoch == 1:  # the CSV logger has written epoch 1's row: the backup of it never comes
            raise KeyboardInterrupt("killed while backing up")
        backup(self, epoch, logs)

    with monkeypatch.context() as patch:
        patch.setattr(EpochBackup, "on_epoch_end", killed_at_second_backup)
        with pytest.raises(runs.TrainingStopped, match="keeps 1 finished epochs of 3"):
            training.train(RiRNet(blocks_per_stage=(1, 1, 1), widths=(8, 8, 8)), train, test, config, tmp_path,
                           verbose=0)
    assert runs.backed_up_epochs(tmp_path) == 1 and log_epochs(tmp_path / "log.csv") == 2
    training.train(RiRNet(blocks_per_stage=(1, 1, 1), widths=(8, 8, 8)), train, test, config, tmp_path, verbose=0)
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert [float(row.split(",")[0]) for row in rows[1:]] == [0, 1, 2]  # epoch 1 once, not twice


def test_a_kill_after_the_last_epoch_loses_nothing(mini, tmp_path, monkeypatch):
    train, test = mini
    config = training.TrainConfig(epochs=2, batch_size=32, jit_compile=False)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing the model")

    with monkeypatch.context() as patch:
        patch.setattr(training, "save_model", killed)
        with pytest.raises(runs.TrainingStopped, match="^interrupted: .* keeps 2 finished epochs of 2; run the same"):
            training.train(RiRNet(blocks_per_stage=(1, 1, 1), widths=(8, 8, 8)), train, test, config, tmp_path,
                           verbose=0)
    assert (tmp_path / "backup").is_dir() and log_epochs(tmp_path / "log.csv") == 2
    results = training.train(RiRNet(blocks_per_stage=(1, 1, 1), widths=(8, 8, 8)), train, test, config, tmp_path,
                             verbose=0)
    assert results["epochs_this_run"] == 0 and len(results["history"]["epoch"]) == 2
    assert (tmp_path / "model.keras").is_file() and not (tmp_path / "backup").exists()


def test_status_prints_each_models_progress_and_an_eta(cli_env, tmp_path, capsys):
    assert main(["reproduce", "--table", "32", "--models", "cnn32", "--seeds", "0", "--dataset", "cifar10-png-mini",
                 "--recipe", "fast", "--epochs", "1", "--steps-per-epoch", "1", "--verbose", "0",
                 "--output", str(tmp_path), *TINY_FLAGS]) == 0
    capsys.readouterr()
    # The campaign's plan holds two seeds of two models; one run has finished.
    plan = json.loads((tmp_path / "campaign.json").read_text())
    plan.update(models=["cnn32", "rir32"], seeds=[0, 1])
    (tmp_path / "campaign.json").write_text(json.dumps(plan))
    assert main(["reproduce", "--status", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = {tuple(cell.strip() for cell in line.strip("|").split("|")[:2]): line
            for line in out.splitlines() if line.startswith("| ") and "seed" not in line and "---" not in line}
    assert set(rows) == {("cnn32", "0"), ("cnn32", "1"), ("rir32", "0"), ("rir32", "1")}
    assert "1/1" in rows["cnn32", "0"] and "finished" in rows["cnn32", "0"]
    assert "0/1" in rows["rir32", "1"]
    # One step of a tiny model stays far under 90%: finished, it never will; not started, it may yet.
    assert "not reached" in rows["cnn32", "0"] and "not reached" not in rows["rir32", "1"]
    assert "left" in out and "ETA" in out and "90% reached" in out


def test_status_of_a_folder_without_a_campaign_is_an_error(tmp_path, capsys):
    assert main(["reproduce", "--status", str(tmp_path / "nothing")]) == 2
    assert "Received: --status=" in capsys.readouterr().err



def test_time_to_accuracy_adds_up_the_logged_epochs_until_the_mark(tmp_path):
    from rir_keras.commands.campaign import time_to_accuracy

    (tmp_path / "log.csv").write_text("epoch,accuracy,loss,seconds,val_accuracy,val_loss\n"
                                      "0,0.5,1.0,600.0,0.85,1.0\n1,0.6,0.9,500.0,0.90,0.9\n2,0.7,0.8,400.0,0.95,0.8\n")
    assert time_to_accuracy(tmp_path) == (2, 1100.0)
    assert time_to_accuracy(tmp_path, target=0.96) is None
    assert time_to_accuracy(tmp_path / "missing") is None


# -- committing the campaign's state (tools/campaign_commit.py) ----------------------------------

def test_campaign_commits_amend_within_a_session_and_never_carry_a_replaced_backup(tmp_path, monkeypatch):
    from conftest import load_script

    tool = load_script("tools/campaign_commit.py")
    repo, campaign = tmp_path, tmp_path / "results" / "c"
    for key, value in {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                       "GIT_COMMITTER_EMAIL": "t@t"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(repo)
    git = lambda *args: subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,  # noqa: E731
                                       text=True).stdout
    run = campaign / "rir32" / "seed0"
    (run / "backup").mkdir(parents=True)
    (campaign / "campaign.json").write_text(json.dumps({"table": "32", "models": ["rir32"], "seeds": [0]}))
    (run / "run.json").write_text(json.dumps({"config": {"epochs": 30}}))

    def finish_epoch(epoch, keep_stray=False):
        (run / "backup" / f"weights-{epoch}.weights.h5").write_bytes(os.urandom(1000))
        (run / "backup" / runs.BACKUP_POINTER).write_text(json.dumps({"epoch": epoch,
                                                                       "weights": f"weights-{epoch}.weights.h5"}))
        (run / "backup" / f"weights-{epoch - 1}.weights.h5").unlink(missing_ok=True)
        if keep_stray:  # the next epoch's file, half written at the moment of the commit
            (run / "backup" / f"weights-{epoch + 1}.weights.h5").write_bytes(b"half")
        rows = "".join(f"{e},0.5,1.0,400.0,0.{50 + e},1.0\n" for e in range(epoch))
        (run / "log.csv").write_text("epoch,accuracy,loss,seconds,val_accuracy,val_loss\n" + rows)

    # A campaign-state commit of an earlier session: it may have landed, so it is never amended.
    git("init", "-q", "-b", "main")
    finish_epoch(1)
    monkeypatch.setenv("GIT_COMMITTER_DATE", "2020-01-01T00:00:00Z")
    git("add", "-A")
    git("commit", "-q", "-m", f"{tool.PREFIX} earlier session")
    monkeypatch.delenv("GIT_COMMITTER_DATE")
    pid_file = repo / "results" / "campaign.pid"
    pid_file.write_text("1")
    os.utime(pid_file, (time.time() - 60, time.time() - 60))
    # A second campaign folder that has not started yet is passed too, as `make campaign-commit` does.
    flags = ["--repo", str(repo), "--campaign", "results/c", "results/not-started", "--pid-file", "results/campaign.pid"]
    commits = lambda: git("log", "--format=%s").splitlines()  # noqa: E731
    tree = lambda: set(git("ls-tree", "-r", "--name-only", "HEAD").split())  # noqa: E731

    finish_epoch(2, keep_stray=True)
    assert tool.main(flags) == 0
    assert len(commits()) == 2 and commits()[0] == f"{tool.PREFIX} c: rir32 seed 0 2/30 (51.00%)"
    backups = {p for p in tree() if "/backup/weights-" in p}
    assert backups == {"results/c/rir32/seed0/backup/weights-2.weights.h5"}  # not the half-written one

    finish_epoch(3)  # the same session: the commit of epoch 2 is amended, its backup never lands
    assert tool.main(flags) == 0
    assert len(commits()) == 2 and "3/30" in commits()[0]
    assert "results/c/rir32/seed0/backup/weights-3.weights.h5" in tree()
    assert not any("weights-2" in line for line in git("log", "--name-only", "--format=").split())

    (repo / "code.py").write_text("x = 1\n")  # other work in between: the next state is a new commit
    git("add", "code.py")
    git("commit", "-q", "-m", "Some code")
    finish_epoch(4)
    assert tool.main(flags) == 0
    assert commits()[:2] == [f"{tool.PREFIX} c: rir32 seed 0 4/30 (53.00%)", "Some code"]
    assert tool.main([*flags, "--check"]) == 0
    assert tool.session_commits(os.path.getmtime(pid_file))[-1][1].startswith(f"{tool.PREFIX} c: rir32")


def write_campaign(folder, table, models, seeds, finished):
    """A campaign folder as `reproduce` leaves it: its plan, and results.json for the runs in
    ``finished`` (``{(model, seed): (test accuracy, results fields)}``); the other runs have not ended."""
    folder.mkdir(parents=True)
    (folder / "campaign.json").write_text(json.dumps({"table": table, "models": models, "seeds": seeds,
                                                      "recipe": "fast", "dataset": "cifar10", "family": "cifar10",
                                                      "epochs": 3}))
    for (model, seed), (accuracy, fields) in finished.items():
        run = folder / model / f"seed{seed}"
        run.mkdir(parents=True)
        (run / "results.json").write_text(json.dumps({
            "test_accuracy": accuracy, "history": {"epoch": [0, 1, 2]}, "recipe": "fast", "wall_seconds": 3600,
            "machines": ["AMD EPYC (2 cores)"], **fields}))


def test_compare_sets_campaigns_side_by_side_model_by_model(tmp_path, capsys):
    official = {"data": {"file": "cifar10-webp.tar.gz", "sha256": "0" * 64}, "precision": "mixed_bfloat16"}
    write_campaign(tmp_path / "old", "32", ["rir32", "cnn32"], [0, 1],
                   {("rir32", 0): (0.87, {"precision": "float32"}), ("rir32", 1): (0.89, {"precision": "float32"}),
                    ("cnn32", 0): (0.84, {"precision": "float32"})})
    write_campaign(tmp_path / "new", "32", ["rir32", "resnet32"], [0],
                   {("rir32", 0): (0.91, official)})  # resnet32 has not finished
    assert main(["reproduce", "--compare", str(tmp_path / "old"), str(tmp_path / "new")]) == 0
    rows = [[cell.strip() for cell in line.strip("|").split("|")]
            for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line]
    header, rows = rows[0], rows[1:]
    assert header[:4] == ["model", "campaign", "data", "precision"] and "test accuracy (%)" in header
    cell = lambda row, name: row[header.index(name)]  # noqa: E731
    # The paper's order (CNN before RiR), then each campaign in the order given; unfinished runs left out.
    old, new = f"`{tmp_path / 'old'}`", f"`{tmp_path / 'new'}`"
    assert [(row[0], row[1]) for row in rows] == [("cnn32", old), ("rir32", old), ("rir32", new)]
    assert cell(rows[1], "test accuracy (%)") == "88.00 ± 1.41" and cell(rows[1], "seeds") == "2"
    assert cell(rows[1], "data") == "cifar10 (archive not recorded)" and cell(rows[1], "precision") == "float32"
    assert cell(rows[2], "test accuracy (%)") == "91.00" and cell(rows[2], "difference") == "-1.97"
    assert cell(rows[2], "data") == "cifar10-webp.tar.gz" and cell(rows[2], "precision") == "mixed_bfloat16"


def test_compare_refuses_a_folder_without_a_campaign_and_campaigns_of_two_tables(tmp_path, capsys):
    write_campaign(tmp_path / "a", "32", ["rir32"], [0], {})
    write_campaign(tmp_path / "b", "18-wide", ["rir18_wide"], [0], {})
    assert main(["reproduce", "--compare", str(tmp_path / "a"), str(tmp_path / "nothing")]) == 2
    assert f"Received: --compare='{tmp_path / 'nothing'}'" in capsys.readouterr().err
    assert main(["reproduce", "--compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    assert capsys.readouterr().err.strip().endswith("Received: --compare with tables 18-wide, 32")
