"""Named training recipes: every setting that decides a trained model, under one name.

``paper``: the recipe the paper reports (after He et al.): SGD with momentum 0.9, learning rate 0.1
divided by 10 after epochs 42 and 62 of 82, batch 128, weight decay 1e-4 in He et al.'s sense,
pad-4 random crops and horizontal flips.

``fast``: the same network and data in 30 epochs instead of 82, for machines where an epoch is
expensive (a CPU): a 2-epoch linear warm-up to 0.1 and a cosine decay to 0 instead of steps (no
epochs spent at a learning rate that is too high or too low for where the weights are), Nesterov
momentum, label smoothing 0.1, and weight decay 5e-4, the value short CIFAR schedules use, since a
short schedule has fewer steps to regularize in. Batch-norm parameters and biases are never
decayed in any recipe (weight decay applies to kernels only). See docs/results.md for what each
recipe measured.

``long``: ``fast`` stretched to 100 epochs (the same warm-up, cosine, Nesterov, label smoothing and
weight decay; docs/design.md says why): the recipe of the shipped ``weights="cifar10"``, chosen to
reach the paper's figures where ``fast`` stays 4-5 points under them.

Weight decay is a model setting (the constructors' ``weight_decay``); the rest is a
``TrainConfig``, which `Recipe.config` makes, with any setting overridden::

    config = recipes.get("fast").config(epochs=10, seed=1)   # training.TrainConfig

The paper recipe's ``decay_epochs=None`` is 42 and 62 at 82 epochs, scaled with the epochs where a
run overrides them; a cosine recipe's warm-up keeps its share of the epochs.
"""
import dataclasses

from rir_keras import training

CONFIG_FIELDS = tuple(field.name for field in dataclasses.fields(training.TrainConfig))


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    summary: str
    weight_decay: float
    training: dict  # TrainConfig fields

    def settings(self):
        """Every setting of the recipe as one flat dict (weight decay included)."""
        return {"weight_decay": self.weight_decay, **self.training}

    def config(self, **overrides):
        """The recipe's `training.TrainConfig`, each of ``overrides`` (TrainConfig fields; None: the
        recipe's) replacing its setting. Where ``epochs`` changes and ``warmup_epochs`` is not
        given, the warm-up keeps its share of the epochs. A one-line ValueError names a parameter
        that is not a field, or a value out of range."""
        unknown = sorted(set(overrides) - set(CONFIG_FIELDS))
        if unknown:
            raise ValueError(f"{unknown[0]} is not a training setting (one of {', '.join(CONFIG_FIELDS)}). "
                             f"Received: {unknown[0]}={overrides[unknown[0]]!r}")
        given = {name: value for name, value in overrides.items() if value is not None}
        fields = {**self.training, **given}
        if "epochs" in given and "warmup_epochs" not in given:
            fields["warmup_epochs"] = round(self.training["warmup_epochs"] * given["epochs"] / self.training["epochs"])
        return training.TrainConfig(**fields)


# `fast`'s settings; `long` is the same schedule over more epochs.
_COSINE = dict(batch_size=128, optimizer="sgd", learning_rate=0.1, momentum=0.9, nesterov=True, schedule="cosine",
               decay_epochs=(), decay_factor=0.1, warmup_epochs=2, label_smoothing=0.1, augment=True)
_COSINE_SUMMARY = "2-epoch warm-up to lr 0.1, cosine to 0, Nesterov, label smoothing 0.1, weight decay 5e-4, batch 128"

RECIPES = {recipe.name: recipe for recipe in (
    Recipe("paper", "SGD momentum 0.9, lr 0.1 x0.1 after epochs 42 and 62 of 82, batch 128, weight decay 1e-4",
           weight_decay=1e-4,
           training=dict(epochs=82, batch_size=128, optimizer="sgd", learning_rate=0.1, momentum=0.9,
                         nesterov=False, schedule="step", decay_epochs=None, decay_factor=0.1,
                         warmup_epochs=0, label_smoothing=0.0, augment=True)),
    Recipe("fast", f"30 epochs: {_COSINE_SUMMARY}", weight_decay=5e-4, training=dict(epochs=30, **_COSINE)),
    Recipe("long", f"100 epochs: fast stretched ({_COSINE_SUMMARY})", weight_decay=5e-4,
           training=dict(epochs=100, **_COSINE)),
)}


def get(name):
    """The recipe called ``name``."""
    if name not in RECIPES:
        raise ValueError(f"recipe must be one of: {', '.join(sorted(RECIPES))}. Received: recipe={name!r}")
    return RECIPES[name]
