"""Training and evaluation on `model.fit`, with the paper's recipe and stock callbacks.

The recipe (Targ et al. 2016, after He et al.): SGD with momentum 0.9, L2 weight decay 1e-4 (set
on the model's kernels by its constructor), learning rate x0.1 at epochs 42 and 62 of 82, pad-4
random crops and horizontal flips. Batches are raw float32 images in [0, 255]: the models normalize
their inputs themselves (``rir_keras.applications`` constructors, ``include_preprocessing=True``).
A model whose head outputs logits (``classifier_activation=None``) is compiled with
``SparseCategoricalCrossentropy(from_logits=True)``. ``train`` writes into its output folder:

    run.json         the settings the run was started with (a continuation must use the same)
    sessions.jsonl   one line per start or continuation: date, first epoch, backend, machine, CPU, precision
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
import os
import shutil
import time

import keras
from keras import ops

from rir_keras import precision
from rir_keras.backup import EpochBackup, restore_backup
from rir_keras.data import ArrayBatches
from rir_keras.distribute import NONE as ONE_DEVICE
from rir_keras.interrupts import caused_by_interrupt, signal_received
from rir_keras.preprocessing import model_preprocessing
from rir_keras.atomic import atomic_output, disk_full, save_model, write_json
from rir_keras.runs import (
    BACKUP_FOLDER, LOG_FILE, RESULTS_FILE, SESSIONS_FILE, SETTINGS_FILE, TrainingStopped, backed_up_epochs,
    check_settings, cpu, finished, machine, read_json, read_log, log_session, sessions, session_precisions, trim_log,
)

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


class _StopWhenSignalled(keras.callbacks.Callback):
    """Raises the interrupt of a stop signal whose KeyboardInterrupt a library swallowed (a signal
    received within `rir_keras.interrupts.stop_signals_as_interrupt`): training stops at the next
    batch. A batch's start, not its end: hooks at a batch's end would keep Keras from dispatching the
    other callbacks' batch hooks asynchronously."""

    def on_train_batch_begin(self, batch, logs=None):
        if signal_received():
            raise KeyboardInterrupt("a stop signal arrived")

    on_test_batch_begin = on_train_batch_begin


class _EpochSeconds(keras.callbacks.Callback):
    """Adds each epoch's wall time, validation included, to its logs as ``seconds`` (placed before
    the CSV logger, which then writes it): the speed `rir-keras reproduce --status` estimates from."""

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["seconds"] = time.perf_counter() - self.start


def tensorboard_available():
    """Keras writes TensorBoard logs through TensorFlow's summaries: a JAX-only machine has none."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("tensorflow", "tensorboard"))


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
    try:
        with atomic_output(path, suffix=".png") as temporary:
            figure.savefig(temporary, dpi=100)
    finally:
        pyplot.close(figure)


def check_fits(model, data, name="data"):
    """Raise a one-line ValueError unless ``data``'s images and classes fit ``model``'s input and head."""
    inputs, outputs = tuple(model.inputs[0].shape[1:]), model.outputs[0].shape[-1]
    if any(want is not None and want != got for want, got in zip(inputs, data.image_shape)) or \
            len(inputs) != len(data.image_shape):
        raise ValueError(f"model {model.name!r} takes images of shape {inputs}; the {name} has "
                         f"{data.image_shape}. Received: {name} image shape {data.image_shape}")
    if outputs is not None and outputs != data.num_classes:
        raise ValueError(f"model {model.name!r} classifies {outputs} classes; the {name} has {data.num_classes}. "
                         f"Received: {name} with {data.num_classes} classes")


def evaluate(model, data, batch_size, distribution=ONE_DEVICE):
    """``{"loss", "accuracy"}`` of a compiled ``model`` on ``data``, in batches of ``batch_size``."""
    check_fits(model, data)
    batches = ArrayBatches(data, batch_size=batch_size, shuffle=False, augment=False)
    return model.evaluate(distribution.local_batches(batches), verbose=0, return_dict=True)


def score(model, data, batch_size=256):
    """``{"loss", "accuracy", "correct"}`` of ``model`` on ``data`` (``correct``: the images classified
    correctly): `compile_for_evaluation`, then `evaluate`."""
    compile_for_evaluation(model)
    result = {key: float(value) for key, value in evaluate(model, data, batch_size).items()}
    return {**result, "correct": int(round(result["accuracy"] * len(data)))}


def steps_per_epoch(images, config):
    """Training steps per epoch: every one of ``images`` once (the last batch may be short), at most
    ``config.steps_per_epoch``."""
    batches = -(-images // config.batch_size)
    return min(batches, config.steps_per_epoch or batches)


# What a run folder holds; ``restart`` removes all of it.
RUN_FILES = (SETTINGS_FILE, SESSIONS_FILE, BACKUP_FOLDER, LOG_FILE, "tensorboard", "model.keras", RESULTS_FILE,
             "curves.png")


def train(model, train_data, test_data, config, output_dir, verbose="auto", callbacks=(), restart=False,
          settings=None, distribution=ONE_DEVICE):
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

    ``distribution`` (`rir_keras.distribute.setup`) spreads every batch over its devices; ``model``
    must have been built in its ``scope()``, and this call must run in it too. It is not a setting
    (the result is the same on any number of devices); results.json and sessions.jsonl record it.
    """
    try:
        return _train(model, train_data, test_data, config, output_dir, verbose, callbacks, restart, settings,
                      distribution)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM within rir_keras.interrupts.stop_signals_as_interrupt
        raise _stopped("interrupted", output_dir, config.epochs) from None
    except Exception as error:  # a disk full mid-write: h5py's, TensorFlow's and the OS's errors alike
        if caused_by_interrupt(error):  # the interrupt came inside TensorFlow, which turned it into its own error
            raise _stopped("interrupted", output_dir, config.epochs) from None
        if not disk_full(error):
            raise
        where = f" in {error.filename}" if getattr(error, "filename", None) else ""
        reason = " ".join((getattr(error, "strerror", None) or str(error)).split())
        raise _stopped(f"the disk is full: {reason}{where}", output_dir, config.epochs,
                       "free space on it, then run") from None


def _stopped(why, output_dir, epochs, advice="run"):
    """The `TrainingStopped` of a run stopped before its end: ``why``, and where it continues from."""
    return TrainingStopped(f"{why}: {os.fspath(output_dir)} keeps {backed_up_epochs(output_dir)} finished epochs "
                           f"of {epochs}; {advice} the same command again to continue from there")


def _train(model, train_data, test_data, config, output_dir, verbose, callbacks, restart, settings, distribution):
    """`train`'s work; ``train`` adds what the run folder keeps to an interruption's message."""
    output_dir = os.fspath(output_dir)
    check_fits(model, train_data, "training data")
    check_fits(model, test_data, "test data")
    distribution.check_batches(config.batch_size, len(train_data), len(test_data), config.steps_per_epoch)
    if restart:
        for name in RUN_FILES:
            path = os.path.join(output_dir, name)
            shutil.rmtree(path) if os.path.isdir(path) else (os.path.exists(path) and os.remove(path))
    recorded = {"model": model.name, "parameters": model.count_params(), "config": _settings_of(config),
                "train_images": len(train_data), "test_images": len(test_data), **(settings or {})}
    check_settings(output_dir, recorded)
    results_path = os.path.join(output_dir, RESULTS_FILE)
    log_path = os.path.join(output_dir, LOG_FILE)
    backup = os.path.join(output_dir, BACKUP_FOLDER)
    if finished(output_dir):
        return read_json(results_path)
    keras.utils.set_random_seed(config.seed)
    train_batches = batches(train_data, config, training=True)
    steps = steps_per_epoch(len(train_data), config)
    distribution.prepare(model)
    compile_model(model, config, steps)
    done_before = restore_backup(model, backup, distribution.agree_on_epochs(backed_up_epochs(output_dir), recorded))
    trim_log(log_path, done_before)  # rows of epochs whose backup was never written are logged again
    if done_before and verbose != 0:
        print(f"{output_dir}: resuming from epoch {done_before + 1} of {config.epochs} ({done_before} finished)",
              flush=True)
    described = {"distribution": distribution.describe(config.batch_size)} if distribution.active else {}
    log_session(output_dir, first_epoch=done_before, **precision.describe(model), **described)
    stock = [
        _StopWhenSignalled(),
        _EpochSeconds(),
        # The log row goes first: a kill between the two repeats that epoch, and trim_log drops its row.
        keras.callbacks.CSVLogger(log_path, append=True),
        EpochBackup(backup, keep=distribution.backups_kept),
        keras.callbacks.TerminateOnNaN(),
        _ReplayEpoch(train_batches),
    ]
    if tensorboard_available():
        stock.append(keras.callbacks.TensorBoard(os.path.join(output_dir, "tensorboard")))
    start = time.perf_counter()
    model.fit(
        distribution.local_batches(train_batches),
        validation_data=distribution.local_batches(batches(test_data, config, training=False)),
        epochs=config.epochs, initial_epoch=done_before, steps_per_epoch=steps, shuffle=False,
        callbacks=stock + list(callbacks), verbose=verbose,
    )
    seconds = time.perf_counter() - start
    log = read_log(log_path)
    if len(log.get("epoch", [])) < config.epochs:
        kept = backed_up_epochs(output_dir)
        raise TrainingStopped(f"training diverged: the loss is not finite in epoch {kept + 1} (see {log_path}); "
                              f"{output_dir} keeps the last good epoch, {kept}: start over with restart=True and a "
                              f"lower learning_rate")
    test = evaluate(model, test_data, config.batch_size, distribution)
    distribution.finish(model)
    save_model(model, os.path.join(output_dir, "model.keras"))
    trained = config.epochs - done_before
    precisions = session_precisions(output_dir)
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
        "cpu": cpu(),
        "precision": " + ".join(precisions),  # of every session, in order: a property of the machine
        "precisions": precisions,
        "resumed": done_before > 0,
        **described,
    }
    write_json(results, results_path)
    plot_curves(log, os.path.join(output_dir, "curves.png"), f"{model.name}: test accuracy {test['accuracy']:.4f}")
    shutil.rmtree(backup)  # only now: everything the run produced is written
    return results


def _settings_of(config):
    """``config`` as recorded in run.json: what decides the result (XLA compilation does not)."""
    return {key: value for key, value in dataclasses.asdict(config).items() if key != "jit_compile"}
