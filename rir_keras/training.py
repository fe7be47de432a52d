"""Training and evaluation on `model.fit`, with the paper's recipe and stock callbacks.

The recipe (Targ et al. 2016, after He et al.): SGD with momentum 0.9, L2 weight decay 1e-4 (set
on the model's kernels by its constructor), learning rate x0.1 at epochs 42 and 62 of 82, pad-4
random crops and horizontal flips. Batches are raw float32 images in [0, 255]: the models normalize
their inputs themselves (``rir_keras.applications`` constructors, ``include_preprocessing=True``).
A model whose head outputs logits (``classifier_activation=None``) is compiled with
``SparseCategoricalCrossentropy(from_logits=True)``. ``train`` writes into its output folder:

    run.json         the settings the run was started with (a continuation must use the same)
    sessions.jsonl   one line per start or continuation: date, first epoch, backend, machine
    backup/          the latest finished epoch (weights, optimizer state; the epoch fixes the data
                     order): run the same command again, on this or another machine, to continue.
                     Removed only once the model and results below are written.
    log.csv          one row per finished epoch, with its wall time in ``seconds`` (kept across resumes)
    tensorboard/     TensorBoard logs (where TensorFlow is installed)
    model.keras      the trained model (written atomically)
    results.json     configuration, history, test accuracy, time, throughput
    curves.png       loss and accuracy per epoch
"""
import dataclasses
import json
import os
import shutil
import tempfile
import time

import keras
from keras import ops

from rir_keras.data import ArrayBatches
from rir_keras.preprocessing import model_preprocessing
from rir_keras.reporting import write_json
from rir_keras.runs import backed_up_epochs, check_settings, machine, read_log, record_session, sessions

OPTIMIZERS = ("sgd", "adam", "rmsprop")
SCHEDULES = ("step", "cosine")
PAPER_EPOCHS, PAPER_DECAY_EPOCHS = 82, (42, 62)


@dataclasses.dataclass
class TrainConfig:
    """How to train. ``decay_epochs=None`` scales the paper's (42, 62) of 82 to ``epochs``.

    ``schedule="step"`` multiplies the learning rate by ``decay_factor`` after each of
    ``decay_epochs``; ``"cosine"`` warms up linearly from 0 over ``warmup_epochs``, then follows a
    cosine from ``learning_rate`` to 0 at the last step. ``nesterov`` applies to SGD;
    ``label_smoothing`` mixes that share of a uniform distribution into the targets.
    """

    epochs: int = PAPER_EPOCHS
    batch_size: int = 128
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    schedule: str = "step"
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    decay_epochs: tuple = None
    decay_factor: float = 0.1
    steps_per_epoch: int = None
    augment: bool = True
    seed: int = 0
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
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}. Received: schedule={self.schedule!r}")
        if not isinstance(self.warmup_epochs, int) or not 0 <= self.warmup_epochs < self.epochs:
            raise ValueError(f"warmup_epochs must be an integer in [0, epochs={self.epochs}). "
                             f"Received: warmup_epochs={self.warmup_epochs!r}")
        if self.warmup_epochs and self.schedule != "cosine":
            raise ValueError(f"warmup_epochs needs schedule='cosine'. Received: warmup_epochs={self.warmup_epochs!r}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1). Received: label_smoothing={self.label_smoothing!r}")
        if self.decay_epochs is None:
            self.decay_epochs = tuple(sorted({max(1, round(self.epochs * e / PAPER_EPOCHS)) for e in PAPER_DECAY_EPOCHS}))
        self.decay_epochs = tuple(int(e) for e in self.decay_epochs)


def learning_rate_schedule(config, steps_per_epoch):
    """The learning rate per step: ``config.schedule`` (see ``TrainConfig``)."""
    if config.schedule == "cosine":
        warmup = config.warmup_epochs * steps_per_epoch
        return keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else config.learning_rate, decay_steps=config.epochs * steps_per_epoch - warmup,
            alpha=0.0, warmup_target=config.learning_rate if warmup else None, warmup_steps=warmup,
        )
    boundaries = [e * steps_per_epoch for e in config.decay_epochs]
    values = [config.learning_rate * config.decay_factor ** i for i in range(len(boundaries) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def make_optimizer(config, steps_per_epoch):
    schedule = learning_rate_schedule(config, steps_per_epoch)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(schedule, momentum=config.momentum, nesterov=config.nesterov)
    if config.optimizer == "adam":
        return keras.optimizers.Adam(schedule)
    return keras.optimizers.RMSprop(schedule, momentum=config.momentum)


def outputs_logits(model):
    """Whether ``model`` outputs logits: its ``predictions`` layer (the constructors' last layer) is an
    Activation without activation (``classifier_activation=None`` or ``"linear"``). A model without
    such a layer is taken to output probabilities."""
    try:
        layer = model.get_layer("predictions")
    except ValueError:
        return False
    return isinstance(layer, keras.layers.Activation) and layer.activation is keras.activations.linear


@keras.saving.register_keras_serializable(package="rir_keras")
class SparseCrossentropy(keras.losses.Loss):
    """Cross-entropy on integer labels with label smoothing, which Keras' sparse loss lacks: the
    target is ``(1 - label_smoothing)`` on the label plus ``label_smoothing`` spread over all classes."""

    def __init__(self, label_smoothing=0.0, from_logits=False, name="sparse_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        targets = ops.one_hot(labels, ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(targets, y_pred, from_logits=self.from_logits,
                                                     label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing, "from_logits": self.from_logits}


def loss_for(model, label_smoothing=0.0):
    """Sparse categorical cross-entropy on ``model``'s outputs: from logits where it outputs logits."""
    if label_smoothing:
        return SparseCrossentropy(label_smoothing, from_logits=outputs_logits(model))
    return keras.losses.SparseCategoricalCrossentropy(from_logits=outputs_logits(model))


def compile_model(model, config, steps_per_epoch):
    """Compile ``model`` for training with ``config``'s optimizer and schedule, and `loss_for` it."""
    model.compile(
        optimizer=make_optimizer(config, steps_per_epoch),
        loss=loss_for(model, config.label_smoothing),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=config.jit_compile,
    )


def compile_for_evaluation(model, jit_compile="auto"):
    """Compile ``model`` for `evaluate` only (no optimizer): `loss_for` it and accuracy."""
    model.compile(loss=loss_for(model), metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                  jit_compile=jit_compile)


def batches(data, config, training):
    """``ArrayBatches`` of ``data``: raw float32 images in [0, 255] (the model normalizes them) and
    labels; shuffled and augmented when ``training``."""
    return ArrayBatches(
        data, batch_size=config.batch_size, shuffle=training, augment=training and config.augment,
        seed=config.seed,
    )


class _ReplayEpoch(keras.callbacks.Callback):
    """Keeps the dataset's epoch counter on the epoch being run, also after a resume."""

    def __init__(self, dataset):
        super().__init__()
        self.dataset = dataset

    def on_epoch_begin(self, epoch, logs=None):
        self.dataset.epoch = epoch


class _EpochSeconds(keras.callbacks.Callback):
    """Adds each epoch's wall time, validation included, to its logs as ``seconds`` (placed before
    the CSV logger, which then writes it): the speed `rir-keras reproduce --status` estimates from."""

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["seconds"] = time.perf_counter() - self.start


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


# What a run folder holds; ``restart`` removes all of it.
RUN_FILES = ("run.json", "sessions.jsonl", "backup", "log.csv", "tensorboard", "model.keras", "results.json",
             "curves.png")


def train(model, train_data, test_data, config, output_dir, verbose="auto", callbacks=(), restart=False,
          settings=None):
    """Train ``model`` on ``train_data``, validating on ``test_data`` after each epoch; resumable.

    Running it again with the same ``output_dir`` after an interruption (or on a copy of the folder,
    on another machine or backend) continues from the last finished epoch and follows the same
    trajectory. ``settings`` (a JSON-able dict: the caller's model options, data, recipe) joins the
    model's name, parameters and ``config`` in run.json; a continuation with other settings is
    refused with a ValueError naming each, unless ``restart``, which starts the folder over. A
    folder whose run finished gives back its results without training. Returns the results dict
    written to ``results.json`` (``settings`` included).

    Each epoch is logged to log.csv, then backed up; the backup stays until the model, the results
    and the plot are written, so a kill at any instant loses at most the epoch in progress.
    """
    output_dir = os.fspath(output_dir)
    if restart:
        for name in RUN_FILES:
            path = os.path.join(output_dir, name)
            shutil.rmtree(path) if os.path.isdir(path) else (os.path.exists(path) and os.remove(path))
    recorded = {"model": model.name, "parameters": model.count_params(), "config": _settings_of(config),
                "train_images": len(train_data), "test_images": len(test_data), **(settings or {})}
    check_settings(output_dir, recorded)
    results_path = os.path.join(output_dir, "results.json")
    log_path = os.path.join(output_dir, "log.csv")
    backup = os.path.join(output_dir, "backup")
    if os.path.isfile(results_path) and not os.path.isdir(backup):
        with open(results_path, encoding="utf-8") as handle:
            return json.load(handle)  # finished
    done_before = backed_up_epochs(output_dir)
    if not done_before and os.path.exists(log_path):
        os.remove(log_path)  # rows of epochs whose backup was never written (later ones are logged again)
    record_session(output_dir, first_epoch=done_before)
    keras.utils.set_random_seed(config.seed)
    train_batches = batches(train_data, config, training=True)
    steps = min(len(train_batches), config.steps_per_epoch or len(train_batches))
    compile_model(model, config, steps)
    stock = [
        _EpochSeconds(),
        # The log row goes first: a kill between the two repeats an epoch, which read_log de-duplicates.
        keras.callbacks.CSVLogger(log_path, append=True),
        AtomicBackupAndRestore(backup, delete_checkpoint=False),
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
    trained = config.epochs - done_before
    results = {
        **recorded,
        "config": dataclasses.asdict(config),
        "preprocessing": model_preprocessing(model),
        "test_accuracy": float(test["accuracy"]),
        "test_loss": float(test["loss"]),
        "history": log,
        "wall_seconds": float(sum(s for s in log.get("seconds", []) if s == s)),  # all epochs, all sessions
        "machines": sorted({session["machine"] for session in sessions(output_dir)}),
        "seconds_this_run": seconds,
        "epochs_this_run": trained,
        "images_per_second_this_run": steps * config.batch_size * trained / seconds if trained else None,
        "backend": keras.backend.backend(),
        "machine": machine(),
        "resumed": done_before > 0,
    }
    write_json(results, results_path)
    plot_curves(log, os.path.join(output_dir, "curves.png"), f"{model.name}: test accuracy {test['accuracy']:.4f}")
    shutil.rmtree(backup)  # only now: everything the run produced is written
    return results


def _settings_of(config):
    """``config`` as recorded in run.json: what decides the result (XLA compilation does not)."""
    return {key: value for key, value in dataclasses.asdict(config).items() if key != "jit_compile"}
