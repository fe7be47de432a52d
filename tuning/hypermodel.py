"""A KerasTuner HyperModel over any registry model, trained with the recipe of `rir-keras train`."""
import dataclasses

import keras
import keras_tuner

from rir_keras import training
from rir_keras.applications import registry
from rir_keras.distribute import NONE as ONE_DEVICE
from rir_keras.tuning.grid import FIT_HYPERPARAMETERS, MODEL_HYPERPARAMETERS, validate_grid


class RiRHyperModel(keras_tuner.HyperModel):
    """Builds registry model ``model`` with the grid's hyperparameters and fits it on our batches.

    Args:
        model: a registry name (``rir_keras.applications.names()``).
        grid: ``{hyperparameter: [values]}`` (see `rir_keras.tuning.grid`); each becomes an
            ``hp.Choice`` whose default is its first value.
        train_data: `ImageData` to train on; its image shape and classes shape the model.
        config: `rir_keras.training.TrainConfig`: epochs, batch size, augmentation, and the values
            of the training hyperparameters the grid leaves out.
        model_options: constructor keyword arguments held fixed (e.g. ``width_multiplier``);
            they must not name an axis of the grid. ``preprocessing`` among them is passed through
            to the constructor (default: the constructor's, "cifar10"), so every trial's model, and
            the best one rebuilt from ``best.json``, normalizes its raw inputs the same way;
            `rir-keras tune` sets it from ``--preprocessing``.
        distribution: a `rir_keras.distribute.Distribution`: each trial data-parallel over its devices
            (the tuner gets its ``tuner_strategy``; `rir-keras tune --distribute`).

    ``fit(hp, model, train_data, validation_data, **fit_kwargs)`` trains on
    ``rir_keras.training.batches``, raw images in [0, 255], with the same augmentation as
    `rir-keras train`; compiled by ``rir_keras.training.compile_model`` (``from_logits`` for a model
    with a logits head).
    It returns the best epoch's metrics, ``best_epoch`` and ``epochs`` (the number of epochs run).
    """

    def __init__(self, model, grid, train_data, config, model_options=None, name=None, distribution=ONE_DEVICE):
        super().__init__(name=name or model)
        self.model_name = model
        registry.record(model)  # raises on an unknown name
        self.grid = validate_grid(dict(grid))
        self.model_options = dict(model_options or {})
        clash = sorted(set(self.model_options) & set(self.grid))
        if clash:
            raise ValueError(f"model_options must not fix an axis of the grid. Received: model_options keys {clash}")
        self.train_data = train_data
        self.config = config
        self.distribution = distribution

    def values(self, hp):
        """Register the grid on ``hp``; returns ``{name: value}`` for this trial."""
        return {name: hp.Choice(name, values) for name, values in self.grid.items()}

    def trial_config(self, hp):
        """The `TrainConfig` of this trial: ``config`` with the grid's training hyperparameters."""
        values = self.values(hp)
        return dataclasses.replace(self.config, **{k: values[k] for k in FIT_HYPERPARAMETERS if k in values})

    def model_kwargs(self, hp):
        values = self.values(hp)
        return {**self.model_options, **{k: values[k] for k in MODEL_HYPERPARAMETERS if k in values}}

    def steps_per_epoch(self, config):
        return training.steps_per_epoch(len(self.train_data), config)

    def spec(self, hp):
        """The `registry.ModelSpec` of this trial's model."""
        return registry.ModelSpec.of(self.model_name, self.model_kwargs(hp), self.train_data.image_shape,
                                     self.train_data.num_classes)

    def build(self, hp):
        # Every trial starts from a fresh graph (the tuner clears it too) and the same seed.
        keras.backend.clear_session()
        self.distribution.activate()
        config = self.trial_config(hp)
        keras.utils.set_random_seed(config.seed)
        model = self.spec(hp).build()
        self.distribution.prepare(model)
        training.compile_model(model, config, self.steps_per_epoch(config))
        # Create the optimizer's slots now, eagerly: created inside the first traced train step,
        # their initializer graphs outlive the trial, and memory grows by several MiB a trial.
        model.optimizer.build(model.trainable_variables)
        return model

    def fit(self, hp, model, train_data, validation_data, callbacks=None, verbose="auto", **kwargs):
        config = self.trial_config(hp)
        history = model.fit(
            training.batches(train_data, config, training=True),
            validation_data=training.batches(validation_data, config, training=False),
            epochs=config.epochs, steps_per_epoch=self.steps_per_epoch(config), shuffle=False,
            callbacks=[keras.callbacks.TerminateOnNaN(), *(callbacks or [])], verbose=verbose, **kwargs,
        )
        return best_epoch_metrics(history.history)


def best_epoch_metrics(history, objective="val_accuracy"):
    """The metrics of the epoch with the best ``objective``, ``best_epoch`` (from 1) and ``epochs`` (how many ran)."""
    scores = history.get(objective)
    if not scores:
        raise ValueError(f"training logged no {objective!r}; logged: {sorted(history)}")
    best = max(range(len(scores)), key=scores.__getitem__)
    return {**{name: float(values[best]) for name, values in history.items()}, "best_epoch": best + 1, "epochs": len(scores)}
