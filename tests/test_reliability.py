"""What a user can count on after a bad flag, a broken file, a divergence or Ctrl-C (docs/reliability.md).

Each test reproduces one failure of the reliability issue: the command ends with one line naming
what was wrong, exit status 2, and nothing half-written. (Kills during training and tuning are
tested with real processes in test_campaign.py, test_training.py and test_tuning.py.)
"""
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from rir_keras import __version__, atomic, interrupts, runs, training
from rir_keras.backup import restore_backup
from rir_keras.applications import RiRNet
from rir_keras.commands import flags
from rir_keras.commands.main import build_parser, in_flags, main
from rir_keras.data import load_arrays, load_split

TINY = dict(blocks_per_stage=(1, 1, 1), widths=(8, 8, 8))
TRAIN = ["train", "--model", "rir32", "--dataset", "cifar10-png-mini", "--width-multiplier", "0.125", "--no-jit",
         "--batch-size", "32", "--train-limit", "64", "--test-limit", "32", "--epochs", "1"]


@pytest.fixture(scope="module")
def mini(data_dir):
    archive = data_dir / "cifar10-png-mini.tar.gz"
    return load_split(archive, "train").subset(slice(0, 64)), load_split(archive, "test").subset(slice(0, 32))


@pytest.fixture
def cli_env(data_dir, monkeypatch):
    monkeypatch.setenv("RIR_KERAS_DATA", str(data_dir))


def one_error_line(capsys, *fragments):
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if ": error: " in line]
    assert len(errors) == 1 and errors[0] == lines[-1], lines
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


# -- numbers -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("flag, value, requirement", [
    ("--learning-rate", "nan", "a number > 0"),
    ("--learning-rate", "inf", "a number > 0"),
    ("--momentum", "5", "a number in [0, 1)"),
    ("--width-multiplier", "0", "a number > 0"),
    ("--transient-ratio", "1.5", "a number in [0, 1]"),
    ("--weight-decay", "-1e-4", "a number >= 0"),
    ("--weight-decay", "nan", "a number >= 0"),
    ("--decay-factor", "10", "a number in (0, 1]"),
    ("--label-smoothing", "1", "a number in [0, 1)"),
    ("--epochs", "0", "an integer >= 1"),
    ("--train-limit", "0", "an integer >= 1"),
    ("--seed", "-1", "an integer >= 0"),
])
def test_numeric_flags_are_checked_before_any_work(cli_env, tmp_path, capsys, flag, value, requirement):
    output = tmp_path / "run"
    assert main([*TRAIN, f"{flag}={value}", "--output", str(output)]) == 2
    one_error_line(capsys, f"{flag} must be {requirement}", f"Received: {flag}=")
    assert not output.exists()  # refused before the data was read or the folder made


def test_every_subcommand_checks_its_numbers(cli_env, tmp_path, capsys):
    for command in (["evaluate", str(tmp_path / "m.keras"), "--limit", "0"],
                    ["analyze", str(tmp_path / "m.keras"), "--batch-size", "0"],
                    ["export", "--model", "rir32", "--weights", "w.h5", "--output", str(tmp_path / "x"),
                     "--top-k", "0"],
                    ["reproduce", "--seeds", "0", "-2", "--output", str(tmp_path / "r")]):
        assert main(command) == 2
        one_error_line(capsys, "must be", "Received: --")


def test_the_command_line_says_the_flags_where_the_library_names_parameters():
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    aliases = flags.LIBRARY_NAMES
    assert in_flags("choose a batch_size divisible by 2. Received: batch_size=15", train) == \
        "choose a --batch-size divisible by 2. Received: --batch-size=15"
    assert in_flags("start over with restart=True, or drop it with steps_per_epoch=2.", train) == \
        "start over with --restart, or drop it with --steps-per-epoch=2."
    assert in_flags("mode must be one of none, auto. Received: mode='mirrored'", train, aliases) == \
        "mode must be one of none, auto. Received: --distribute='mirrored'"
    assert in_flags("timeout=3 of model_file='a.keras'; already --batch-size=4, include_top=True", train, aliases) == \
        "--distribute-timeout=3 of model_file='a.keras'; already --batch-size=4, include_top=True"


def test_every_help_says_a_flags_default_where_it_has_one_and_never_none():
    commands = build_parser()._subparsers._group_actions[0].choices
    for name, parser in commands.items():
        text = " ".join(parser.format_help().split())
        assert "(default: None)" not in text and "(default: False)" not in text, name
        for group in parser._action_groups:  # a flag without help sits in a group whose title says its default
            for action in group._group_actions:
                assert action.help or "defaults:" in (group.title or ""), (name, action.option_strings)
    train = " ".join(commands["train"].format_help().split())
    assert "--seed SEED the run's random seed (initial weights, data order, augmentation) (default: 0)" in train
    assert "--recipe {fast,long,paper}" in train and "(default: paper)" in train
    analyze = " ".join(commands["analyze"].format_help().split())
    assert "--output OUTPUT folder for the report (default: runs/analysis)" in analyze
    assert "the shipped weights of --model (default: cifar10; docs/models.md has their cards) --output" in analyze


def test_version_is_the_packages_and_the_distributions(capsys):
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out.strip() == f"rir-keras {__version__}"
    setup_py = (Path(__file__).parent.parent / "setup.py").read_text()
    assert f'version="{__version__}"' in setup_py


def test_a_library_error_comes_out_in_flags(cli_env, tmp_path, capsys):
    assert main(["train", "--model", "rir32", "--distribute", "none", "--output", str(tmp_path),
                 "--warmup-epochs", "1", "--recipe", "paper", "--epochs", "2"]) == 2
    one_error_line(capsys, "--warmup-epochs needs --schedule='cosine'", "Received: --warmup-epochs=1")


def test_a_limit_beyond_the_data_is_a_warning(mini, capsys):
    train, _ = mini
    assert len(flags.sample(train, 1000, seed=0, flag="--train-limit")) == len(train)
    assert "--train-limit=1000 is more than the 64 images there are" in capsys.readouterr().err


# -- divergence and Ctrl-C -----------------------------------------------------------------------

class _AtEpoch(keras.callbacks.Callback):
    """Calls ``action(model)`` as epoch ``epoch`` begins."""

    def __init__(self, epoch, action):
        super().__init__()
        self.epoch, self.action = epoch, action

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            self.action(self.model)


def _poison(model):
    """Makes the loss NaN, as a divergence does: the classifier's kernel set to NaN."""
    kernel = model.get_layer("logits").kernel
    kernel.assign(np.full(kernel.shape, np.nan, "float32"))


def _interrupt(model):
    raise KeyboardInterrupt  # what Ctrl-C raises in the training loop


def test_a_divergence_ends_with_a_message_and_keeps_the_last_good_backup(mini, tmp_path):
    train, test = mini
    config = training.TrainConfig(epochs=3, batch_size=32, jit_compile=False)
    with pytest.raises(runs.TrainingStopped, match=r"^training diverged: the loss is not finite in epoch 2 .*"
                                                   r"keeps the last good epoch, 1: start over with restart=True"):
        training.train(RiRNet(**TINY), train, test, config, tmp_path, verbose=0, callbacks=[_AtEpoch(1, _poison)])
    assert runs.backed_up_epochs(tmp_path) == 1  # the NaN epoch was not backed up
    backup = RiRNet(**TINY)
    training.compile_model(backup, config, 2)
    restore_backup(backup, tmp_path / "backup")
    assert all(np.isfinite(w).all() for w in backup.get_weights())
    results = training.train(RiRNet(**TINY), train, test, config, tmp_path, verbose=0)  # resumes from epoch 1
    assert results["history"]["epoch"] == [0, 1, 2] and np.isfinite(results["test_loss"])


def test_ctrl_c_says_where_the_run_resumes_from(mini, tmp_path):
    train, test = mini
    config = training.TrainConfig(epochs=3, batch_size=32, jit_compile=False)
    with pytest.raises(runs.TrainingStopped, match=r"^interrupted: .* keeps 1 finished epochs of 3; run the same "
                                                   r"command again to continue"):
        training.train(RiRNet(**TINY), train, test, config, tmp_path, verbose=0, callbacks=[_AtEpoch(1, _interrupt)])
    assert runs.backed_up_epochs(tmp_path) == 1


def test_the_command_line_prints_a_stopped_run_as_one_line(cli_env, tmp_path, capsys, monkeypatch):
    def stopped(*args, **kwargs):
        raise runs.TrainingStopped("interrupted: runs/x keeps 3 finished epochs of 30; run the same command again")

    monkeypatch.setattr(training, "train", stopped)
    assert main([*TRAIN, "--output", str(tmp_path / "run")]) == 2
    one_error_line(capsys, "rir-keras train: error: interrupted: runs/x keeps 3 finished epochs")


# -- data that does not fit the model --------------------------------------------------------------

def test_a_class_only_the_test_split_has_is_refused(tmp_path, capsys):
    from PIL import Image

    for split, classes in (("train", ("cat",)), ("test", ("cat", "dog"))):
        for name in classes:
            (tmp_path / "data" / split / name).mkdir(parents=True)
            Image.fromarray(np.zeros((8, 8, 3), "uint8")).save(tmp_path / "data" / split / name / "0.png")
    assert main(["train", "--model", "rir32", "--dataset", str(tmp_path / "data"), "--output",
                 str(tmp_path / "run")]) == 2
    one_error_line(capsys, "has no images of class dog, which another split has", "Received: --train-split='train'")
    assert not (tmp_path / "run").exists()


def test_a_test_split_of_another_image_size_is_refused_before_training(mini, tmp_path):
    train, _ = mini
    other = load_arrays(np.zeros((4, 16, 16, 3), "uint8"), np.arange(4), [str(i) for i in range(10)])
    with pytest.raises(ValueError, match=r"takes images of shape \(32, 32, 3\); the test data has \(16, 16, 3\)"):
        training.train(RiRNet(**TINY), train, other, training.TrainConfig(epochs=1, batch_size=32), tmp_path)
    assert not os.listdir(tmp_path)  # nothing written


def test_a_model_scored_on_data_with_other_classes_is_refused(mini):
    _, test = mini
    hundred = load_arrays(test.images, test.labels, [f"class{i}" for i in range(100)])
    with pytest.raises(ValueError, match="classifies 10 classes; the data has 100. Received: data with 100 classes$"):
        training.score(RiRNet(**TINY), hundred)


def test_evaluate_and_analyze_refuse_a_model_of_other_classes(tmp_path, capsys, data_dir):
    path = tmp_path / "model.keras"
    RiRNet(**TINY, classes=100, preprocessing="cifar100").save(path)
    for command in ("evaluate", "analyze"):
        assert main([command, str(path), "--dataset", str(data_dir / "cifar10-png-mini.tar.gz"), "--limit", "8"]) == 2
        one_error_line(capsys, "classifies 100 classes; the data has 10")


# -- files --------------------------------------------------------------------------------------------

def test_a_file_that_is_not_a_model_is_named_as_such(tmp_path, capsys):
    path = tmp_path / "notes.keras"
    path.write_text("not a zip")
    for command in (["evaluate", str(path)], ["analyze", str(path)], ["export", str(path), "--output",
                                                                        str(tmp_path / "out")]):
        assert main(command) == 2
        one_error_line(capsys, "is not a .keras model", f"Received: model_file={str(path)!r}")
    assert not (tmp_path / "out").exists()


def test_export_under_a_file_is_one_line(tmp_path, capsys):
    model = tmp_path / "model.keras"
    RiRNet(**TINY).save(model)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["export", str(model), "--format", "keras", "--output", str(blocker / "model.keras")]) == 2
    one_error_line(capsys, "rir-keras export: error:", "Not a directory")


def test_a_killed_write_leaves_nothing_the_next_write_keeps(tmp_path):
    target = tmp_path / "model"
    leftover = tmp_path / ".model.tmp-deadbeef"  # what a killed export leaves beside its target
    leftover.mkdir()
    (leftover / "partial.pb").write_bytes(b"x")
    with atomic.atomic_output(target) as temporary:
        os.makedirs(temporary)
    assert target.is_dir() and not leftover.exists()


def test_model_file_is_readable_by_all(mini, tmp_path):
    train, test = mini
    mask = os.umask(0o022)
    try:
        training.train(RiRNet(**TINY), train, test, training.TrainConfig(epochs=1, batch_size=32, jit_compile=False),
                       tmp_path, verbose=0)
    finally:
        os.umask(mask)
    for name in ("model.keras", "results.json", "log.csv"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


def test_a_second_process_on_one_output_folder_is_refused(cli_env, tmp_path, capsys):
    folder = tmp_path / "run"
    with runs.exclusive(folder):  # another open file description: flock refuses it as it would another process
        assert main([*TRAIN, "--output", str(folder)]) == 2
    one_error_line(capsys, f"another process (pid {os.getpid()}) is training in {folder}")
    assert not (folder / "run.json").exists()


# -- a full disk ------------------------------------------------------------------------------------

class SmallDisk:
    """A real file system of a few hundred KiB (a tmpfs) at ``path``, to fill; needs root to mount."""

    def __init__(self, path, size):
        self.path = path
        path.mkdir()
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                 capture_output=True, text=True)
        if mounted.returncode:
            pytest.skip(f"a full disk needs a small file system, and mounting a tmpfs failed here (root only): "
                        f"{mounted.stderr.strip()}")

    def resize(self, size):
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True)

    def fill(self):
        """Leave no byte free (a file as large as the free space)."""
        free = os.statvfs(self.path).f_bavail * os.statvfs(self.path).f_frsize
        with open(self.path / "filler", "wb") as handle:
            os.posix_fallocate(handle.fileno(), 0, free)

    def unmount(self):
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path):
    disks = []
    yield lambda size: disks.append(SmallDisk(tmp_path / f"disk{len(disks)}", size)) or disks[-1]
    for disk in disks:
        disk.unmount()


def rir_keras(*args, data_dir=None, **kwargs):
    """``rir-keras ARGS`` in a process of its own, as a user runs it (a crash of h5py or TensorFlow ends
    that process, not the tests)."""
    env = {**os.environ, **({"RIR_KERAS_DATA": str(data_dir)} if data_dir else {})}
    return subprocess.run([sys.executable, "-m", "rir_keras.commands.main", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=600, **kwargs)


def no_leftovers(folder):
    """No temporary file beside any target, no weights file the backup pointer does not name."""
    left = [str(p) for p in folder.rglob(".*.tmp-*")]
    backup = folder / "backup"
    if backup.is_dir():
        pointer = backup / runs.BACKUP_POINTER
        named = runs.read_json(pointer)["weights"] if pointer.is_file() else None
        left += [str(p) for p in backup.iterdir() if p.name.startswith("weights-") and p.name != named]
    assert not left, left


def test_a_disk_full_at_the_first_backup_is_one_line_not_a_crash(small_disk, data_dir):
    # As the issue met it: RiR-32 on a 3 MiB tmpfs; its first backup (3.9 MiB) does not fit. h5py
    # crashed the process (segmentation fault, 1,177 lines of "Exception ignored").
    disk = small_disk("3m")
    output = disk.path / "run"
    done = rir_keras(*TRAIN[:5], "--no-jit", "--batch-size", "32", "--train-limit", "32", "--test-limit", "32",
                     "--epochs", "2", "--output", output, data_dir=data_dir)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1].startswith(
        "rir-keras train: error: the disk is full: No space left on device (the backup of epoch 1 needs about"), \
        done.stderr[-3000:]
    assert f"{output} keeps 0 finished epochs of 2; free space on it, then run the same command again" in done.stderr
    assert "Exception ignored" not in done.stderr
    no_leftovers(output)


def test_a_disk_full_mid_run_stops_with_one_line_and_the_run_resumes_once_space_is_freed(small_disk, data_dir):
    disk = small_disk("1200k")  # the first backup of this RiR-32 (width x0.25, 0.55 MiB) fits, the second not
    output = disk.path / "run"
    command = [*TRAIN[:5], "--width-multiplier", "0.25", "--no-jit", "--batch-size", "32", "--train-limit", "64",
               "--test-limit", "32", "--epochs", "3", "--output", output]
    done = rir_keras(*command, data_dir=data_dir)
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("rir-keras train: error: the disk is full: No space left on device") and \
        f"{output} keeps 1 finished epochs of 3; free space on it, then run the same command again to continue" \
        in last, done.stderr[-3000:]
    assert runs.backed_up_epochs(output) == 1
    no_leftovers(output)
    disk.resize("8m")  # space freed
    done = rir_keras(*command, data_dir=data_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{output}: resuming from epoch 2 of 3 (1 finished)" in done.stdout
    assert runs.read_json(output / "results.json")["history"]["epoch"] == [0, 1, 2]
    no_leftovers(output)


@pytest.mark.parametrize("when", ["epoch", "end"])
def test_every_file_a_run_writes_stops_it_with_one_line_on_a_full_disk(small_disk, mini, when):
    # The log row and TensorBoard's events (the disk fills as epoch 2 begins), the model, results and
    # plot (it fills after the last epoch): the run stops naming the disk, nothing is half-written,
    # and the same call continues once space is freed.
    train, test = mini
    disk = small_disk("4m")
    output = disk.path / "run"
    config = training.TrainConfig(epochs=2, batch_size=32, jit_compile=False)

    class Fill(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if when == "epoch" and epoch == 1:
                disk.fill()

        def on_train_end(self, logs=None):
            if when == "end":
                disk.fill()

    kept = 1 if when == "epoch" else 2
    with pytest.raises(runs.TrainingStopped, match=rf"^the disk is full: No space left on device.*: {output} keeps "
                                                   rf"{kept} finished epochs of 2; free space on it"):
        training.train(RiRNet(**TINY), train, test, config, output, verbose=0, callbacks=[Fill()])
    os.remove(disk.path / "filler")
    no_leftovers(output)
    results = training.train(RiRNet(**TINY), train, test, config, output, verbose=0)
    assert results["history"]["epoch"] == [0, 1] and results["resumed"]
    assert {"model.keras", "results.json", "curves.png", "log.csv"} <= set(os.listdir(output))
    no_leftovers(output)


# -- signals ----------------------------------------------------------------------------------------

def start_rir_keras(*args, data_dir):
    env = {**os.environ, "RIR_KERAS_DATA": str(data_dir)}
    return subprocess.Popen([sys.executable, "-m", "rir_keras.commands.main", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def test_sigterm_stops_training_as_ctrl_c_does_and_the_rerun_says_where_it_resumes(tmp_path, data_dir):
    # What a scheduler or `docker stop` sends: the run ended silently, exit status 143, mid-progress-bar.
    output = tmp_path / "run"
    command = [*TRAIN[:-2], "--epochs", "100", "--verbose", "2", "--output", output]
    process = start_rir_keras(*command, data_dir=data_dir)
    deadline = time.monotonic() + 300
    while runs.backed_up_epochs(output) < 1 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    kept = runs.backed_up_epochs(output)
    assert process.returncode == 2 and 1 <= kept < 100, err[-3000:]
    assert err.strip().splitlines()[-1] == (f"rir-keras train: error: interrupted: {output} keeps {kept} finished "
                                            f"epochs of 100; run the same command again to continue from there")
    no_leftovers(output)
    process = start_rir_keras(*command, data_dir=data_dir)
    first = next((line for line in process.stdout if "resuming" in line or "Epoch" in line), "")
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert first.strip() == f"{output}: resuming from epoch {kept + 1} of 100 ({kept} finished)", first
    assert process.returncode == 2 and "rir-keras train: error: interrupted: " in err.strip().splitlines()[-1], err[-3000:]


# -- the console ------------------------------------------------------------------------------------

def test_a_command_prints_no_tensorflow_start_up_log_unless_asked(tmp_path, data_dir):
    # Every command printed 6-8 lines of TensorFlow's C++ log first (absl, oneDNN, cudart_stub, and
    # "failed call to cuInit" on a machine without a GPU), TF_CPP_MIN_LOG_LEVEL=3 or not.
    model = tmp_path / "model.keras"
    RiRNet(**TINY).save(model)
    command = [sys.executable, "-m", "rir_keras.commands.main", "evaluate", model, "--dataset",
               data_dir / "cifar10-png-mini.tar.gz", "--limit", "8"]
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    for level in (None, "3", "0"):
        env = environ if level is None else {**environ, "TF_CPP_MIN_LOG_LEVEL": level}
        done = subprocess.run(list(map(str, command)), capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0 and '"images": 8' in done.stdout, done.stderr[-3000:]
        if level == "0":  # asked for: all of it
            assert "oneDNN custom operations are on" in done.stderr and "I0000" in done.stderr
        else:
            assert done.stderr == "", done.stderr


# -- flags that cannot apply ------------------------------------------------------------------------

def test_flags_that_cannot_apply_are_refused_by_name(tmp_path, capsys, data_dir):
    # `export model.keras --classes 100 --image-size 64 --identity shortcut --width-multiplier 1.0`
    # exported the saved model unchanged, exit 0.
    model = tmp_path / "model.keras"
    RiRNet(**TINY).save(model)
    output = tmp_path / "out"
    for command, fragment in [
        ([model, "--classes", "100", "--image-size", "64", "--identity", "shortcut", "--width-multiplier", "1.0"],
         "so flags that say it go with --model NAME --weights FILE only: drop --classes, --image-size, "
         "--width-multiplier, --identity. Received: --classes=100, --image-size=64, --width-multiplier=1.0, "
         "--identity=shortcut"),
        ([model, "--weights", "w.weights.h5"], "drop --weights. Received: --weights=w.weights.h5"),
        (["--model", "rir32", "--weights", "w.weights.h5", "--weight-decay", "1e-4", "--kernel-initializer",
          "he_normal"], "a training setting changes no weight and no prediction of a trained model: drop "
                        "--weight-decay, --kernel-initializer"),
        ([model, "--format", "keras", "--class-names", "cifar10"], "top-k outputs are for the saved_model and onnx "
                                                                   "formats: drop --class-names"),
        ([model, "--class-names", "cifar10"], "give --top-k too: drop --class-names"),
    ]:
        assert main(["export", *map(str, command), "--output", str(output)]) == 2
        one_error_line(capsys, "rir-keras export: error: ", fragment)
        assert not output.exists()
    assert main(["evaluate", str(model), "--weights", "cifar10"]) == 2
    one_error_line(capsys, "rir-keras evaluate: error: a .keras model file holds its weights", "drop --weights")
    assert main(["tune", "--model", "rir32", "--grid", "tiny", "--optimizer", "sgd", "--identity", "constant",
                 "--directory", str(output)]) == 2
    one_error_line(capsys, "the grid 'tiny' sets these hyperparameters: drop --optimizer, --identity. "
                           "Received: --optimizer=sgd, --identity=constant")
    assert not output.exists()


# -- a damaged search ------------------------------------------------------------------------------

def test_a_damaged_tuner_state_names_the_file_and_restart_and_touches_nothing(tmp_path, capsys, data_dir):
    # oracle.json cut in half or emptied gave "error: Unterminated string starting at: ..." naming
    # neither the file nor the way out; a valid but incomplete one a 51-line KerasTuner traceback.
    command = ["tune", "--model", "rir_3x10", "--grid", "tiny", "--model-option", "layers_per_block=2",
               "--model-option", "widths=[8,8,8]", "--dataset", str(data_dir / "cifar10-png-mini.tar.gz"),
               "--train-limit", "32", "--test-limit", "32", "--batch-size", "16", "--steps-per-epoch", "1",
               "--epochs", "1", "--no-jit", "--verbose", "0", "--directory", str(tmp_path), "--max-trials", "1"]
    assert main(command) == 0
    oracle = tmp_path / "rir_3x10" / "oracle.json"
    whole = oracle.read_text()
    for damaged in (whole[:len(whole) // 2], "", '{"ongoing_trials": {}}'):
        oracle.write_text(damaged)
        before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
        capsys.readouterr()
        assert main(command) == 2
        one_error_line(capsys, f"rir-keras tune: error: the search state {oracle} is damaged (",
                       "start it over with --restart", f"Received: {oracle}")
        assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("place, reason", [("full", "No space left on device"), ("read-only", "Read-only file system")])
def test_a_saved_model_export_to_a_full_disk_or_a_read_only_place_is_one_line(small_disk, tmp_path, capsys, place,
                                                                              reason):
    # TensorFlow's own errors (ResourceExhaustedError, PermissionDeniedError) ended in a 36-51 line
    # traceback and exit 1, where the ONNX and .keras exports gave one line.
    model = tmp_path / "model.keras"
    RiRNet(**TINY).save(model)
    disk = small_disk("64k")
    if place == "read-only":
        subprocess.run(["mount", "-o", "remount,ro", str(disk.path)], check=True)
    assert main(["export", str(model), "--output", str(disk.path / "rir32")]) == 2
    one_error_line(capsys, f"rir-keras export: error: cannot write the SavedModel '{disk.path / 'rir32'}': ", reason)
    assert os.listdir(disk.path) == []


def test_an_interrupt_that_a_library_turned_into_its_own_error_still_stops_as_an_interrupt(mini, tmp_path):
    # SIGTERM (as KeyboardInterrupt) landing inside TensorFlow came back once as a SystemError, then
    # as TensorFlow's ValueError about nested structures: the run must still stop as interrupted.
    train, test = mini

    class InterruptedInsideALibrary(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            try:
                try:
                    raise KeyboardInterrupt("SIGTERM")
                except KeyboardInterrupt as interrupt:
                    raise SystemError("<built-in function __import__> returned a result with an exception set") \
                        from interrupt
            except SystemError:
                raise ValueError("The two structures don't have the same nested structure.")

    config = training.TrainConfig(epochs=2, batch_size=32, jit_compile=False)
    with pytest.raises(training.TrainingStopped, match="^interrupted: .* keeps 0 finished epochs of 2"):
        training.train(RiRNet(**TINY), train, test, config, tmp_path, verbose=0,
                       callbacks=[InterruptedInsideALibrary()])
    with pytest.raises(ValueError, match="nested structure"):  # the same error without an interrupt behind it

        class Failing(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                raise ValueError("The two structures don't have the same nested structure.")

        training.train(RiRNet(**TINY), train, test, config, tmp_path / "other", verbose=0, callbacks=[Failing()])


@pytest.mark.parametrize("then", ["raises its own error", "goes on"])
def test_a_stop_signal_whose_interrupt_a_library_lost_still_stops_as_an_interrupt(mini, tmp_path, then):
    # In CI, SIGTERM landing in tf.data came back as a ValueError about nested structures with no
    # KeyboardInterrupt in its chain, and `rir-keras train` printed that error instead of where to resume.
    # A library could as well swallow the interrupt and go on: training must still stop.
    train, test = mini

    class InterruptLostInsideALibrary(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # the handler runs before the next bytecode
            except KeyboardInterrupt:
                pass  # the library swallows it ...
            if then == "raises its own error":
                raise ValueError("The two structures don't have the same nested structure.")  # ... and says this

    config = training.TrainConfig(epochs=2, batch_size=32, jit_compile=False)
    before = signal.getsignal(signal.SIGTERM)
    with interrupts.stop_signals_as_interrupt():
        with pytest.raises(training.TrainingStopped, match="^interrupted: .* keeps 0 finished epochs of 2"):
            training.train(RiRNet(**TINY), train, test, config, tmp_path, verbose=0,
                           callbacks=[InterruptLostInsideALibrary()])
        assert interrupts.signal_received()
    assert signal.getsignal(signal.SIGTERM) is before and not interrupts.signal_received()
