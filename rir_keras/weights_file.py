"""Loading a weights file into a model, checked: the file must hold exactly this model's weights.

Keras loads a ``.weights.h5`` file holding MORE layers than the model without complaint (it keeps
the first ones), and takes a ``.keras`` model's weights for any model with the same shapes. Here
every stored shape is compared with the model's first, and a ``.keras`` model must compute the same
function as the one it loads into (each layer's class, name and the configuration that decides
its function); the error names the first difference.
"""
import collections
import json
import os

import h5py
import keras


def saved_shapes(path):
    """The shapes of the variables stored in a ``.weights.h5`` file, sorted."""
    shapes = []
    with h5py.File(path, "r") as file:
        file.visititems(lambda _, item: shapes.append(tuple(item.shape)) if isinstance(item, h5py.Dataset) else None)
    return sorted(shapes)


# Options that change how a layer trains, not the function it computes: ignored when comparing.
_TRAINING_ONLY = ("name", "trainable", "dtype", "momentum", "seed")


def architecture(model):
    """Each layer's class, name and the configuration that decides its function, the input excepted."""
    def functional(config):
        return {key: value for key, value in config.items() if key not in _TRAINING_ONLY
                and not key.endswith(("_initializer", "_regularizer", "_constraint"))}

    return [(type(layer).__name__, layer.name, json.loads(json.dumps(functional(layer.get_config()), default=str)))
            for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def check_same_architecture(model, saved):
    """Raise unless ``saved`` computes the same function as ``model`` for the same weights; the error
    names the first layer that differs and, where only its settings do, each one: saved against built."""
    mine, theirs = architecture(model), architecture(saved)
    for index, (ours, stored) in enumerate(zip(mine, theirs)):
        if ours == stored:
            continue
        if ours[:2] != stored[:2]:
            raise ValueError(f"layer {index + 1} is {stored[0]} {stored[1]!r} in the file but {ours[0]} {ours[1]!r} "
                             "in the model")
        differing = sorted(key for key in set(ours[2]) | set(stored[2]) if ours[2].get(key) != stored[2].get(key))
        raise ValueError(f"layer {index + 1}, {ours[0]} {ours[1]!r}, differs: " + ", ".join(
            f"{key}={stored[2].get(key)!r} in the file, {ours[2].get(key)!r} in the model" for key in differing))
    if len(mine) != len(theirs):
        raise ValueError(f"the file's model has {len(theirs)} layers, this one {len(mine)}")


def load_weights(model, path):
    """Load the ``.weights.h5`` or ``.keras`` file ``path`` into ``model``; a one-line ValueError
    (naming ``weights=path``) where the file does not hold exactly this model's weights."""
    path = os.fspath(path)
    try:
        if path.endswith(".keras"):
            saved = keras.saving.load_model(path, compile=False)
            check_same_architecture(model, saved)
            model.set_weights(saved.get_weights())
            return
        expected = sorted(tuple(weight.shape) for weight in model.weights)
        saved = saved_shapes(path)
        if saved != expected:
            extra = sorted((collections.Counter(saved) - collections.Counter(expected)).elements())
            missing = sorted((collections.Counter(expected) - collections.Counter(saved)).elements())
            raise ValueError(f"the file holds {len(saved)} variables, the model {len(expected)}; shapes only in the "
                             f"file: {extra[:3] or 'none'}, only in the model: {missing[:3] or 'none'}")
        model.load_weights(path)
    except Exception as error:  # mismatched shapes or layer counts, or not a weights file
        raise ValueError(
            f"weights file does not match model {model.name!r} ({error}). Received: weights={path!r}"
        ) from error
