"""Training and evaluation on `model.fit`, with the paper's recipe and stock callbacks.

The recipe (Targ et al. 2016, after He et al.): SGD with momentum 0.9, L2 weight decay 1e-4 (set
on the model's kernels by its constructor), learning rate x0.1 at epochs 42 and 62 of 82, pad-4
random crops and horizontal flips. ``train`` writes into its output folder:

    backup/          BackupAndRestore state: run the same command again to resume
    log.csv          one row per finished epoch (kept across resumes)
    tensorboard/     TensorBoard logs (where TensorFlow is installed)
    model.keras      the trained model (written atomically)
    results.json     configuration, history, test accuracy, time, throughput
    curves.png       loss and accuracy per epoch
"""
import csv
import dataclasses
import json
import os
import platform
import tempfile
import time

import keras

from rir_keras.data import ArrayBatches
from rir_keras.preprocessing import statistics
from rir_keras.reporting import write_json

OPTIMIZERS = ("sgd", "adam", "rmsprop")
PAPER_EPOCHS, PAPER_DECAY_EPOCHS = 82, (42, 62)


@dataclasses.dataclass
class TrainConfig:
    """How to train. ``decay_epochs=None`` scales the paper's (42, 62) of 82 to ``epochs``."""

    epochs: int = PAPER_EPOCHS
    batch_size: int = 128
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    momentum: float = 0.9
    decay_epochs: tuple = None
    decay_factor: float = 0.1
    steps_per_epoch: int = None
    augment: bool = True
    seed: int = 0
    normalization: str = "cifar10"
    jit_compile: object = "auto"

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")
        if self.steps_per_epoch is not None and (not isinstance(self.steps_per_epoch, int) or self.steps_per_epoch < 1):
            raise ValueError(f"steps_per_epoch must be a positive integer or None. Received: steps_per_epoch={self.steps_per_epoch!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}. Received: optimizer={self.optimizer!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0. Received: learning_rate={self.learning_rate!r}")
        statistics(self.normalization)  # raises on an unknown normalization
        if self.decay_epochs is None:
            self.decay_epochs = tuple(sorted({max(1, round(self.epochs * e / PAPER_EPOCHS)) for e in PAPER_DECAY_EPOCHS}))
        self.decay_epochs = tuple(int(e) for e in self.decay_epochs)


def normalizer(name):
    """A numpy function normalizing float32 images in [0, 255] by ``name``'s channel statistics."""
    mean, std = statistics(name)
    return lambda images: (images - mean) / std


def learning_rate_schedule(config, steps_per_epoch):
    """Step decay: ``learning_rate`` times ``decay_factor`` after each of ``decay_epochs``."""
    boundaries = [e * steps_per_epoch for e in config.decay_epochs]
    values = [config.learning_rate * config.decay_factor ** i for i in range(len(boundaries) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def make_optimizer(config, steps_per_epoch):
    schedule = learning_rate_schedule(config, steps_per_epoch)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(schedule, momentum=config.momentum)
    if config.optimizer == "adam":
        return keras.optimizers.Adam(schedule)
    return keras.optimizers.RMSprop(schedule, momentum=config.momentum)


def compile_model(model, config, steps_per_epoch):
    model.compile(
        optimizer=make_optimizer(config, steps_per_epoch),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=config.jit_compile,
    )


def batches(data, config, training):
    return ArrayBatches(
        data, batch_size=config.batch_size, shuffle=training, augment=training and config.augment,
        seed=config.seed, preprocess=normalizer(config.normalization),
    )


class _ReplayEpoch(keras.callbacks.Callback):
    """Keeps the dataset's epoch counter on the epoch being run, also after a resume."""

    def __init__(self, dataset):
        super().__init__()
        self.dataset = dataset

    def on_epoch_begin(self, epoch, logs=None):
        self.dataset.epoch = epoch


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """BackupAndRestore whose backup survives a kill at any instant.

    Each epoch's weights (with the optimizer's state) go to a new file; only when it is complete
    does a small JSON file, replaced atomically, point to it. A kill mid-write leaves the pointer on
    the previous, complete backup, where the stock callback would leave a corrupt file.
    """

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        name = f"weights-{self._current_epoch}-{self._last_batch_seen}.weights.h5"
        self.model.save_weights(os.path.join(self.backup_dir, name), overwrite=True)
        pointer = {"epoch": self._current_epoch, "batch": self._last_batch_seen, "weights": name}
        write_json(pointer, self._training_metadata_path)
        for old in os.listdir(self.backup_dir):
            if old.startswith("weights-") and old != name:
                os.remove(os.path.join(self.backup_dir, old))

    def _load_model(self):
        if not os.path.isfile(self._training_metadata_path):
            return
        with open(self._training_metadata_path, encoding="utf-8") as handle:
            pointer = json.load(handle)
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(os.path.join(self.backup_dir, pointer["weights"]))
        self.model._initial_epoch = pointer["epoch"]


def tensorboard_available():
    """Keras writes TensorBoard logs through TensorFlow's summaries: a JAX-only machine has none."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("tensorflow", "tensorboard"))


def atomic_save(model, path):
    """Save ``model`` to ``path`` (.keras) through a temporary file renamed into place."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(suffix=".keras", dir=folder)
    os.close(handle)
    try:
        model.save(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def read_log(path):
    """The rows of a CSVLogger file as ``{column: [float, ...]}``, one row per epoch (the last
    one written wins, and the header a resumed run repeats is skipped)."""
    if not os.path.isfile(path):
        return {}
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("epoch") not in (None, "epoch")]
    by_epoch = {int(float(row["epoch"])): row for row in rows}
    columns = list(rows[0]) if rows else []
    ordered = [by_epoch[e] for e in sorted(by_epoch)]
    return {key: [float(row[key]) for row in ordered] for key in columns}


def plot_curves(log, path, title):
    """Loss and accuracy per epoch, train and validation, into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(1, 2, figsize=(10, 4))
    epochs = [e + 1 for e in log.get("epoch", [])]
    for axis, metric in zip(axes, ("loss", "accuracy")):
        for prefix, label in (("", "train"), ("val_", "test")):
            if prefix + metric in log:
                axis.plot(epochs, log[prefix + metric], marker="o", label=label)
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


def evaluate(model, data, config):
    """``{"loss", "accuracy"}`` of a compiled ``model`` on ``data``."""
    return model.evaluate(batches(data, config, training=False), verbose=0, return_dict=True)


def train(model, train_data, test_data, config, output_dir, verbose="auto", callbacks=(), overwrite=False):
    """Train ``model`` on ``train_data``, validating on ``test_data``; resumable.

    Running it again with the same ``output_dir`` after an interruption continues from the last
    finished epoch (BackupAndRestore). A folder that holds a finished run is refused unless
    ``overwrite``. Returns the results dict that is also written to ``results.json``.
    """
    os.makedirs(output_dir, exist_ok=True)
    results_path = os.path.join(output_dir, "results.json")
    keras.utils.set_random_seed(config.seed)
    train_batches = batches(train_data, config, training=True)
    steps = min(len(train_batches), config.steps_per_epoch or len(train_batches))
    compile_model(model, config, steps)
    log_path = os.path.join(output_dir, "log.csv")
    backup = os.path.join(output_dir, "backup")
    resuming = os.path.isdir(backup)
    if not resuming and os.path.exists(results_path):
        if not overwrite:
            raise ValueError(f"output_dir holds a finished run; pass overwrite=True to train again. Received: output_dir={output_dir!r}")
        os.remove(results_path)
    if not resuming and os.path.exists(log_path):
        os.remove(log_path)
    done_before = len(read_log(log_path).get("epoch", []))
    stock = [
        # The log row goes first: a kill between the two repeats an epoch, which read_log de-duplicates.
        keras.callbacks.CSVLogger(log_path, append=True),
        AtomicBackupAndRestore(backup),
        keras.callbacks.TerminateOnNaN(),
        _ReplayEpoch(train_batches),
    ]
    if tensorboard_available():
        stock.append(keras.callbacks.TensorBoard(os.path.join(output_dir, "tensorboard")))
    start = time.perf_counter()
    model.fit(
        train_batches, validation_data=batches(test_data, config, training=False), epochs=config.epochs,
        steps_per_epoch=steps, shuffle=False, callbacks=stock + list(callbacks), verbose=verbose,
    )
    seconds = time.perf_counter() - start
    log = read_log(log_path)
    if len(log.get("epoch", [])) < config.epochs:
        raise RuntimeError(f"training stopped early after {len(log.get('epoch', []))} epochs (NaN loss?); see {log_path}")
    test = evaluate(model, test_data, config)
    atomic_save(model, os.path.join(output_dir, "model.keras"))
    results = {
        "model": model.name,
        "parameters": model.count_params(),
        "config": dataclasses.asdict(config),
        "train_images": len(train_data),
        "test_images": len(test_data),
        "test_accuracy": float(test["accuracy"]),
        "test_loss": float(test["loss"]),
        "history": log,
        "seconds_this_run": seconds,
        "epochs_this_run": config.epochs - done_before,
        "images_per_second_this_run": steps * config.batch_size * (config.epochs - done_before) / seconds,
        "backend": keras.backend.backend(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "resumed": resuming,
    }
    write_json(results, results_path)
    plot_curves(log, os.path.join(output_dir, "curves.png"), f"{model.name}: test accuracy {test['accuracy']:.4f}")
    return results

