"""Test-time augmentation: a model's prediction averaged over an image and its mirror image.

CIFAR models are trained with horizontal flips, so an image and its mirror are equally likely
inputs; averaging the two predictions is what users of CIFAR model zoos ask for as "test-time
flips". `flip_averaged` wraps a model into a Keras model that does it, so it evaluates, predicts,
saves and exports like any other::

    from rir_keras.test_time import flip_averaged
    model = flip_averaged(RiR32(weights="cifar10"))
    model.predict(images)  # the mean of RiR32's probabilities for images and their mirror images

The wrapped model averages what the model outputs: probabilities for a model with a softmax head,
logits for one built with ``classifier_activation=None`` (then its last layer is again the linear
``predictions`` activation, so `rir_keras.training.outputs_logits` still recognizes it).
Single-view figures stay the reference: results report a test-time-flip figure beside them, never
instead of them.
"""
import keras
from keras import ops

from rir_keras.initializers import PACKAGE
from rir_keras.training import outputs_logits

TTA_MODES = ("none", "flip")  # what `with_tta` and ``rir-keras evaluate --tta`` take


@keras.saving.register_keras_serializable(package=PACKAGE)
class MirrorImages(keras.layers.Layer):
    """Flip a batch of channels-last images left to right (the width axis)."""

    def call(self, images):
        return ops.flip(images, axis=2)

    def compute_output_shape(self, input_shape):
        return input_shape


def flip_averaged(model):
    """A model whose output is the mean of ``model``'s outputs for each image and its mirror image."""
    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 4:
        raise ValueError("flip_averaged takes a model of one image input (batch, height, width, channels). "
                         f"Received: a model with inputs {[tuple(x.shape) for x in model.inputs]}")
    images = keras.Input(model.inputs[0].shape[1:], dtype=model.inputs[0].dtype, name="images")
    views = [model(images), model(MirrorImages(name="mirror")(images))]
    averaged = keras.layers.Average(name="flip_average")(views)
    if outputs_logits(model):
        averaged = keras.layers.Activation(None, name="predictions")(averaged)
    return keras.Model(images, averaged, name=f"{model.name}_flip")


def with_tta(model, tta):
    """``model`` as test-time augmentation ``tta`` (one of `TTA_MODES`) evaluates it."""
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {', '.join(map(repr, TTA_MODES))}. Received: tta={tta!r}")
    return model if tta == "none" else flip_averaged(model)
