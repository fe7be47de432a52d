"""keras.applications-style constructors for every network of the paper.

One private builder, ``_classifier``, takes a ``body`` function and adds the input, the head and
the checks; the public constructors are thin.
"""
import dataclasses
import functools
import numbers
import os

import keras

from rir_keras import preprocessing as preprocessing_lib
from rir_keras.applications import weights_store
from rir_keras.blocks import LayerSpec, conv_bn, stage
from rir_keras.weights_file import load_weights

ARCHITECTURES = {
    # name: (generalized residual layers, outer shortcuts)
    "cnn": (False, False),
    "resnet": (False, True),
    "resnet_init": (True, False),
    "rir": (True, True),
}
POOLINGS = (None, "avg", "max")

DOC = """
    Args:
        include_top: whether to include the classifier head.
        weights: ``None`` (random initialization), ``"cifar10"`` or ``"cifar10_paper"`` (the
            weights shipped for CNN32, ResNet32, ResNetInit32 and RiR32, trained on CIFAR-10 with the
            `fast` or the paper's recipe: see ``rir_keras.applications.pretrained``) or the path to
            a weights file (``.weights.h5``,
            or a ``.keras`` model file whose weights are taken).
        input_tensor: optional Keras tensor to use as the model's input.
        input_shape: optional ``(height, width, channels)``; default ``(32, 32, 3)``.
        pooling: with ``include_top=False``: ``None`` (4D feature map), ``"avg"`` or ``"max"``.
        classes: number of classes of the head.
        classifier_activation: activation of the head's output; ``None`` gives logits.
        name: the model's name.
        shortcut: ``"identity"`` (strided, zero channel padding) or ``"projection"`` (1x1 conv)
            where a shortcut changes shape.
        identity: where generalized layers keep their identity: ``"init"``, ``"constant"`` or
            ``"shortcut"`` (see ``rir_keras.layers.RiRConv2D``).
        transient_ratio: share of channels in the transient stream of generalized layers.
        width_multiplier: scales every layer's width.
        weight_decay: weight decay of every kernel in He et al.'s (Torch, Caffe) sense: it adds
            ``weight_decay * w`` to the gradient (Keras ``L2(weight_decay / 2)``). He et al.: 1e-4.
        kernel_initializer: initializer of every convolution kernel.
        forget_gate: put a forget gate ``sigmoid(conv(x) + b)`` on each block's outer shortcut.
        include_preprocessing: normalize the inputs inside the model: a ``Normalization`` layer named
            ``"preprocessing"`` right after the input (kept with ``include_top=False`` too), so the
            model takes raw images in [0, 255]. ``False``: the model takes inputs already
            normalized, e.g. by ``preprocess_input(images, preprocessing)``.
        preprocessing: the statistics to normalize by: ``"cifar10"``, ``"cifar100"`` (that training
            set's per-channel mean and std), a ``(mean, std)`` pair on the [0, 255] scale (1 or
            channels values each), or ``None`` (no normalization layer, as with
            ``include_preprocessing=False``).

    Returns:
        A ``keras.Model``. With the default ``include_preprocessing=True`` it takes raw images
        (channels last, values in [0, 255]) and normalizes them itself.
"""


def _check(name, ok, value, requirement):
    if not ok:
        raise ValueError(f"{name} {requirement}. Received: {name}={value!r}")


def _input(input_tensor, input_shape, min_size):
    if input_shape is None:
        input_shape = tuple(input_tensor.shape[1:]) if input_tensor is not None else (32, 32, 3)
    input_shape = tuple(input_shape)
    _check("input_shape", len(input_shape) == 3, input_shape, "must be (height, width, channels)")
    height, width, channels = input_shape
    _check("input_shape", channels is not None and channels >= 1, input_shape, "needs at least 1 channel")
    for size in (height, width):
        _check("input_shape", size is None or size >= min_size, input_shape,
               f"is smaller than this network allows: height and width must be at least {min_size}")
    if input_tensor is None:
        return keras.Input(shape=input_shape, name="image")
    if not keras.backend.is_keras_tensor(input_tensor):
        return keras.Input(tensor=input_tensor, shape=input_shape, name="image")
    return input_tensor


def _load_weights(model, weights):
    if weights_store.is_requested(weights):  # weights="cifar10", checked by the constructor (weights_store.request)
        weights_store.load_into(model, weights)
        return
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(f"weights must be None, {', '.join(map(repr, weights_store.WEIGHTS_NAMES))} or the path to a "
                         f"weights file. Received: weights={weights!r}")
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise ValueError(f"weights file not found: weights must be None, {', '.join(map(repr, weights_store.WEIGHTS_NAMES))} "
                         f"or the path to a .weights.h5 or .keras file. Received: weights={path!r}")
    load_weights(model, path)


def _dense_head(x, classes, spec):
    """Global average pool, then a dense layer (He et al.'s CIFAR ResNets)."""
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.layers.Dense(classes, kernel_regularizer=spec.regularizer, name="logits")(x)


def _conv_head(x, classes, spec):
    """A 1x1 convolution to the classes, then global average pool (the 18-layer wide networks)."""
    x = keras.layers.Conv2D(classes, 1, kernel_initializer=spec.initializer("logits"),
                            kernel_regularizer=spec.regularizer, name="logits")(x)
    return keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)


def _conv_bn_head(x, classes, spec, activation=None):
    """A 1x1 convolution to the classes (no bias) with batch norm, then global average pool: the head
    of pytorchcv's RiR models (``rir_keras.applications.pytorchcv_rir``). With ``activation="relu"``
    it is ALL-CNN-C's class layer (Springenberg et al. put a ReLU on it; the paper adds batch norm
    everywhere)."""
    x = conv_bn(x, classes, dataclasses.replace(spec, generalized=False), kernel_size=1, activation=activation,
                name="logits")
    return keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)


HEADS = {"dense": _dense_head, "conv": _conv_head, "conv_bn": _conv_bn_head,
         "conv_bn_relu": functools.partial(_conv_bn_head, activation="relu")}


def _classifier(body, *, include_top, weights, input_tensor, input_shape, pooling, classes,
                classifier_activation, name, spec, head="dense", min_size=4, include_preprocessing=True,
                preprocessing="cifar10"):
    """Wrap ``body(inputs, spec) -> features`` into a model with the keras.applications conventions:
    the input, the preprocessing layer right after it, the body, the head."""
    _check("include_preprocessing", isinstance(include_preprocessing, bool), include_preprocessing, "must be True or False")
    preprocessing_lib.resolve(preprocessing)  # a bad value fails even when no layer is built
    _check("pooling", pooling in POOLINGS, pooling, "must be None, 'avg' or 'max'")
    _check("classes", isinstance(classes, numbers.Integral) and not isinstance(classes, bool) and classes >= 1, classes, "must be a positive integer")
    _check("head", head in HEADS, head, f"must be one of {sorted(HEADS)}")
    inputs = _input(input_tensor, input_shape, min_size)
    x = inputs
    if include_preprocessing:
        layer = preprocessing_lib.preprocessing_layer(preprocessing, channels=inputs.shape[-1])
        if layer is not None:
            x = layer(x)
    x = body(x, spec)
    if include_top:
        x = HEADS[head](x, classes, spec)
        x = keras.layers.Activation(classifier_activation or "linear", dtype="float32", name="predictions")(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    source = keras.utils.get_source_inputs(input_tensor) if input_tensor is not None else inputs
    model = keras.Model(source, x, name=name)
    if weights is not None:
        _load_weights(model, weights)
    return model


def _spec(architecture, shortcut, identity, transient_ratio, weight_decay, kernel_initializer, forget_gate):
    _check("architecture", architecture in ARCHITECTURES, architecture, f"must be one of {sorted(ARCHITECTURES)}")
    generalized, outer = ARCHITECTURES[architecture]
    _check("forget_gate", not forget_gate or outer, forget_gate,
           f"needs outer shortcuts to gate; architecture={architecture!r} has none")
    return LayerSpec(
        generalized=generalized, identity=identity, shortcut=shortcut, transient_ratio=transient_ratio,
        gate=bool(forget_gate), kernel_initializer=kernel_initializer, weight_decay=weight_decay,
    ), outer


def _widths(widths, width_multiplier):
    _check("width_multiplier", isinstance(width_multiplier, (int, float)) and width_multiplier > 0,
           width_multiplier, "must be a positive number")
    scaled = tuple(max(1, int(round(w * width_multiplier))) for w in widths)
    return scaled


def RiRNet(blocks_per_stage=(5, 5, 5), layers_per_block=2, widths=(16, 32, 64), architecture="rir",
           stem_width=None, head="dense", include_top=True, weights=None, input_tensor=None,
           input_shape=None, pooling=None, classes=10, classifier_activation="softmax", name=None,
           shortcut="identity", identity="init", transient_ratio=0.5, width_multiplier=1.0,
           weight_decay=0.0, kernel_initializer="he_normal", forget_gate=False, include_preprocessing=True,
           preprocessing="cifar10"):
    """Any network of the paper's family: a 3x3 stem, stages of blocks, a classifier head.

    Each stage after the first halves the resolution in its first block.

    Args:
        blocks_per_stage: blocks in each stage, e.g. ``(5, 5, 5)`` for the 32-layer networks.
        layers_per_block: layers in each block (2 in ResNets; the paper's Table 4 sweeps it).
        widths: channels of each stage.
        architecture: ``"cnn"``, ``"resnet"``, ``"resnet_init"`` or ``"rir"`` (the paper's Figure 2).
        stem_width: channels of the first 3x3 convolution; default ``widths[0]``.
        head: ``"dense"`` (global average pool, dense), ``"conv"`` (1x1 conv to classes, global
            average pool), ``"conv_bn"`` (the same with batch norm on the class convolution,
            pytorchcv's RiR head) or ``"conv_bn_relu"`` (batch norm and ReLU, ALL-CNN-C's), before
            ``classifier_activation``.
    """ + DOC
    blocks_per_stage = tuple(blocks_per_stage)
    _check("blocks_per_stage", len(blocks_per_stage) >= 1 and all(isinstance(b, int) and b >= 1 for b in blocks_per_stage),
           blocks_per_stage, "must be a non-empty sequence of positive integers")
    _check("widths", len(tuple(widths)) == len(blocks_per_stage) and all(isinstance(w, int) and w >= 1 for w in widths),
           widths, f"must give a positive width for each of the {len(blocks_per_stage)} stages")
    _check("layers_per_block", isinstance(layers_per_block, int) and layers_per_block >= 1, layers_per_block,
           "must be a positive integer")
    spec, outer = _spec(architecture, shortcut, identity, transient_ratio, weight_decay, kernel_initializer, forget_gate)
    widths = _widths(widths, width_multiplier)
    stem = _widths((stem_width or widths[0],), width_multiplier if stem_width else 1)[0]

    def body(x, spec):
        x = conv_bn(x, stem, dataclasses.replace(spec, generalized=False), name="stem")
        for index, (blocks, width) in enumerate(zip(blocks_per_stage, widths)):
            x = stage(x, width, spec, blocks=blocks, layers=layers_per_block, strides=1 if index == 0 else 2,
                      outer_shortcut=outer, name=f"stage{index + 1}")
        return x

    depth = 2 + sum(blocks_per_stage) * layers_per_block
    name = name or f"{architecture}_{depth}"
    return _classifier(body, include_top=include_top, weights=weights, input_tensor=input_tensor,
                       input_shape=input_shape, pooling=pooling, classes=classes,
                       classifier_activation=classifier_activation, name=name, spec=spec, head=head,
                       min_size=2 ** (len(blocks_per_stage) - 1), include_preprocessing=include_preprocessing,
                       preprocessing=preprocessing)


def _family(architecture, blocks_per_stage, widths, head, default_name):
    def constructor(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                    classes=10, classifier_activation="softmax", name=default_name, shortcut="identity",
                    identity="init", transient_ratio=0.5, width_multiplier=1.0, weight_decay=0.0,
                    kernel_initializer="he_normal", forget_gate=False, include_preprocessing=True,
                    preprocessing="cifar10"):
        # "cifar10": checked against these options; the store rebuilds the record's model with this constructor
        weights = weights_store.request(default_name, dict(locals()), constructor)
        return RiRNet(blocks_per_stage, 2, widths, architecture, head=head, include_top=include_top,
                      weights=weights, input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
                      classes=classes, classifier_activation=classifier_activation, name=name,
                      shortcut=shortcut, identity=identity, transient_ratio=transient_ratio,
                      width_multiplier=width_multiplier, weight_decay=weight_decay,
                      kernel_initializer=kernel_initializer, forget_gate=forget_gate,
                      include_preprocessing=include_preprocessing, preprocessing=preprocessing)
    return constructor


def _public(constructor, name, summary):
    constructor.__name__ = constructor.__qualname__ = name
    constructor.__doc__ = summary + "\n" + DOC
    return constructor


THIRTY_TWO = dict(blocks_per_stage=(5, 5, 5), widths=(16, 32, 64), head="dense")
WIDE = dict(blocks_per_stage=(2, 3, 3), widths=(96, 192, 384), head="conv")

CNN32 = _public(_family("cnn", default_name="cnn32", **THIRTY_TWO), "CNN32",
                "The 32-layer plain CNN: He et al.'s CIFAR ResNet-32 without shortcuts.")
ResNet32 = _public(_family("resnet", default_name="resnet32", **THIRTY_TWO), "ResNet32",
                   "He et al.'s CIFAR ResNet-32: 3x3 conv 16, 3 stages of 5 blocks x 2 layers (16/32/64).")
ResNetInit32 = _public(_family("resnet_init", default_name="resnet_init32", **THIRTY_TWO), "ResNetInit32",
                       "The 32-layer CNN whose layers are generalized residual layers (ResNet Init).")
RiR32 = _public(_family("rir", default_name="rir32", **THIRTY_TWO), "RiR32",
                "The 32-layer Resnet in Resnet: ResNet-32 whose layers are generalized residual layers.")
CNN18Wide = _public(_family("cnn", default_name="cnn18_wide", **WIDE), "CNN18Wide",
                    "The 18-layer wide plain CNN: 3x3 conv 96; 2x96, 3x192, 3x384 blocks; 1x1 conv head.")
ResNet18Wide = _public(_family("resnet", default_name="resnet18_wide", **WIDE), "ResNet18Wide",
                       "The 18-layer wide ResNet: 3x3 conv 96; 2x96, 3x192, 3x384 blocks; 1x1 conv head.")
ResNetInit18Wide = _public(_family("resnet_init", default_name="resnet_init18_wide", **WIDE), "ResNetInit18Wide",
                           "The 18-layer wide CNN with generalized residual layers (ResNet Init).")
RiR18Wide = _public(_family("rir", default_name="rir18_wide", **WIDE), "RiR18Wide",
                    "The paper's 18-layer + wide RiR (about 9.5M parameters).")


def AllCNNC(resnet_init=False, include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
            classes=10, classifier_activation="softmax", name=None, identity="init", transient_ratio=0.5,
            width_multiplier=1.0, weight_decay=0.0, kernel_initializer="he_normal", dropout=True,
            include_preprocessing=True, preprocessing="cifar10"):
    """ALL-CNN-C (Springenberg et al. 2015) with batch normalization, as in the paper's Table 5.

    conv 96, conv 96, conv 96/2, conv 192, conv 192, conv 192/2, conv 192 (3x3 valid), conv 192 (1x1),
    conv classes (1x1, batch norm, ReLU), global average pool; every convolution is followed by batch
    normalization and ReLU. With ``resnet_init=True`` every layer after the first is a generalized
    residual layer (the identity written into its kernel, ResNet Init).

    ``dropout=True`` (the default) drops as Springenberg et al. did: 20% of the input, 50% after
    each of the two strided convolutions (which stand where pooling layers were); ``False`` turns
    it off.
    """ + DOC
    spec, _ = _spec("resnet_init" if resnet_init else "cnn", "identity", identity, transient_ratio,
                    weight_decay, kernel_initializer, False)
    w96, w192 = _widths((96, 192), width_multiplier)
    layers = [(w96, 3, 1, "same"), (w96, 3, 2, "same"), (w192, 3, 1, "same"), (w192, 3, 1, "same"),
              (w192, 3, 2, "same"), (w192, 3, 1, "valid"), (w192, 1, 1, "valid")]

    def body(x, spec):
        if dropout:
            x = keras.layers.Dropout(0.2, name="input_dropout")(x)
        x = conv_bn(x, w96, dataclasses.replace(spec, generalized=False), name="conv1")
        for index, (width, size, strides, padding) in enumerate(layers):
            x = conv_bn(x, width, spec, kernel_size=size, strides=strides, padding=padding, name=f"conv{index + 2}")
            if dropout and strides == 2:
                x = keras.layers.Dropout(0.5, name=f"conv{index + 2}_dropout")(x)
        return x

    return _classifier(body, include_top=include_top, weights=weights, input_tensor=input_tensor,
                       input_shape=input_shape, pooling=pooling, classes=classes,
                       classifier_activation=classifier_activation,
                       name=name or ("all_cnn_c_resnet_init" if resnet_init else "all_cnn_c"),
                       spec=spec, head="conv_bn_relu", min_size=9, include_preprocessing=include_preprocessing,
                       preprocessing=preprocessing)  # 9 -> 5 -> 3 -> 1 after the 3x3 valid conv
