"""pytorchcv's RiR models (``rir_cifar10``, ``rir_cifar100``, ``rir_svhn``) as Keras models of ours,
and their weights converted.

The imgclsmob zoo (``pytorchcv`` on PyPI, MIT licence) builds one network for the three (read from
pytorchcv 0.0.74, ``pytorchcv/models/rir_cifar.py``): a stem of one 3x3 convolution, batch norm
and ReLU per stream (48 + 48 channels); 16 generalized residual layers (Eq. 1: four 3x3
convolutions without bias, the residual stream's identity added, or a 1x1 strided convolution without
batch norm where the residual stream changes shape, then batch norm and ReLU per stream), 4 at 48 + 48,
6 at 96 + 96 and 6 at 192 + 192 channels, the first of the later two stages striding 2, stacked with
no shortcut over them (what the paper calls ResNet Init, not RiR); a head of a 1x1 convolution to the
classes without bias, batch norm, and an 8x8 average pool. Its inputs are normalized by the mean
and std of imgclsmob's CIFAR transforms, for all three datasets.

Ours computing the same function (`OPTIONS`, built by `build`) is ``RiRNet`` with the 18-layer wide
network's stages (``ResNetInit18Wide``'s), ``head="conv_bn"``, projection shortcuts and
``identity="constant"`` (the identity added to the kernel at call time, as pytorchcv adds it beside
the convolutions: the same parameters, 9,492,980 trainable for 10 classes, and the same gradients);
``identity="init"`` folds the identity and the two projections into the kernels (23,040 fewer
parameters, the same function). `convert` reads a pytorchcv weights file (a ``.pth`` state dict,
what ``pytorchcv`` downloads) and writes it as a ``.keras`` or ``.weights.h5`` file of that model.

Reading a ``.pth`` file needs PyTorch; pytorchcv itself is needed only to build its models.
"""
import os
import re

import numpy as np

from rir_keras.applications import networks
from rir_keras.dependencies import MissingDependency
from rir_keras.layers import RiRConv2D

# imgclsmob's CIFAR-10 transform normalizes by these (RGB, on [0, 1]); its CIFAR-100 and SVHN
# transforms inherit them (imgclsmob, pytorch/datasets/cifar10_cls_dataset.py).
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2023, 0.1994, 0.2010)
PREPROCESSING = (tuple(255 * m for m in MEAN), tuple(255 * s for s in STD))  # ours: on [0, 255]

# The RiRNet options that compute pytorchcv's function (the stages are ResNetInit18Wide's).
OPTIONS = dict(blocks_per_stage=(2, 3, 3), layers_per_block=2, widths=(96, 192, 384), architecture="resnet_init",
               head="conv_bn", shortcut="projection", identity="constant", preprocessing=PREPROCESSING)
IDENTITIES = ("constant", "shortcut", "init")  # every placement computes the same function
FORMATS = (".keras", ".weights.h5")
CLASSES_KEY = "output.final_conv.conv.weight"
_UNIT = re.compile(r"^features\.stage(\d+)\.unit(\d+)\.")
_BN = ("weight", "bias", "running_mean", "running_var")  # Keras' gamma, beta, moving mean, moving variance


def _received(name, value):
    return f"Received: {name}={value!r}"


def build(classes=10, identity="constant", **kwargs):
    """Our model computing pytorchcv's RiR for ``classes`` classes (untrained unless ``weights`` is
    given); ``kwargs`` are any other `networks.RiRNet` arguments."""
    if identity not in IDENTITIES:
        raise ValueError(f"identity must be one of {', '.join(map(repr, IDENTITIES))}. {_received('identity', identity)}")
    return networks.RiRNet(**{**OPTIONS, "identity": identity, "classes": classes, "name": "pytorchcv_rir", **kwargs})


def read(source):
    """The state dict in pytorchcv weights file ``source`` (``torch.save`` of a state dict, ``.pth``),
    as numpy arrays by key."""
    try:
        import torch
    except ImportError:
        raise MissingDependency("reading a pytorchcv weights file needs PyTorch: pip install torch") from None
    if not os.path.isfile(source):
        raise ValueError(f"source must be a pytorchcv weights file (.pth); there is no such file. {_received('source', source)}")
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as error:  # not a PyTorch file, or truncated
        raise ValueError(f"source is not a PyTorch weights file ({type(error).__name__}: {error}). "
                         f"{_received('source', source)}") from None
    if not isinstance(state, dict) or CLASSES_KEY not in state:
        raise ValueError(f"source does not hold the state dict of a pytorchcv RiR model (no {CLASSES_KEY!r}). "
                         f"{_received('source', source)}")
    return {key: value.detach().cpu().numpy() for key, value in state.items()}


def classes(state):
    """The number of classes of pytorchcv state dict ``state``."""
    return int(np.shape(state[CLASSES_KEY])[0])


def _kernel(weight):
    """A PyTorch convolution weight (out, in, kh, kw) as a Keras kernel (kh, kw, in, out)."""
    return np.transpose(weight, (2, 3, 1, 0))


def assign(model, state):
    """Set ``model`` (from `build`) to pytorchcv state dict ``state`` (arrays by key). Every entry but
    batch norm's step counts is used exactly once and every weight of ``model`` is set; anything that
    does not fit raises ValueError naming it. Returns ``model``."""
    used = set()

    def take(key):
        if key not in state:
            raise ValueError(f"the state dict has no {key!r}: not a pytorchcv RiR model of this architecture")
        used.add(key)
        return np.asarray(state[key], dtype="float32")

    def batch_norm(layer, *prefixes):  # one batch norm of ours is the two streams' side by side
        layer.set_weights([np.concatenate([take(f"{prefix}.{name}") for prefix in prefixes]) for name in _BN])

    stem = "features.init_block"
    model.get_layer("stem_conv").set_weights(
        [_kernel(np.concatenate([take(f"{stem}.res_conv.conv.weight"), take(f"{stem}.trans_conv.conv.weight")]))])
    batch_norm(model.get_layer("stem_bn"), f"{stem}.res_conv.bn", f"{stem}.trans_conv.bn")

    units = sorted({match.group(0) for match in map(_UNIT.match, state) if match},
                   key=lambda prefix: tuple(map(int, _UNIT.match(prefix).groups())))
    layers = [layer for layer in model.layers if isinstance(layer, RiRConv2D)]
    if len(units) != len(layers):
        raise ValueError(f"the state dict has {len(units)} units, the model {len(layers)} generalized layers")
    for layer, unit in zip(layers, units):
        # Rows: the input stream (residual, transient); columns: the output stream. pytorchcv's
        # "cross" convolution of a stream feeds the other stream.
        quadrants = [["res_pass_conv", "res_cross_conv"], ["trans_cross_conv", "trans_pass_conv"]]
        kernel = np.concatenate([np.concatenate([_kernel(take(f"{unit}{conv}.weight")) for conv in row], axis=3)
                                 for row in quadrants], axis=2)
        # pytorchcv projects the residual stream (a strided 1x1 convolution) exactly where it changes shape.
        reshapes = layer.strides != (1, 1) or layer.residual_in != layer.residual_out
        projection = take(unit + "identity_conv.weight")[:, :, 0, 0].T if reshapes else None
        if layer.identity == "init":  # the shortcut folded into the kernel's centre tap
            if projection is None:
                kernel = kernel + layer.identity_kernel()
            else:
                kh, kw = layer.kernel_size
                kernel[kh // 2, kw // 2, :layer.residual_in, :layer.residual_out] += projection
        elif projection is not None:
            if layer.projection is None:
                raise ValueError(f"{unit}identity_conv is a projection: layer {layer.name!r} needs shortcut='projection'")
            layer.projection.assign(projection)
        layer.kernel.assign(kernel)
        batch_norm(layer.batch_norm, unit + "res_postactiv.bn", unit + "trans_postactiv.bn")

    model.get_layer("logits_conv").set_weights([_kernel(take(CLASSES_KEY))])
    batch_norm(model.get_layer("logits_bn"), "output.final_conv.bn")
    unused = sorted(key for key in state if key not in used and not key.endswith("num_batches_tracked"))
    if unused:
        raise ValueError(f"the state dict has entries this model has no place for: {', '.join(unused[:5])}")
    return model


def convert(source, output=None, identity="constant", overwrite=False):
    """Our model holding the weights of pytorchcv file ``source`` (a path, or a state dict of arrays);
    with ``output`` (a ``.keras`` or ``.weights.h5`` path) also written there. A ``.weights.h5``
    file loads into ``build(classes, identity, weights=output)``; a ``.keras`` file carries the model."""
    if output is not None:
        if not str(output).endswith(FORMATS):
            raise ValueError(f"output must end with {' or '.join(FORMATS)}. {_received('output', output)}")
        if os.path.lexists(output) and not overwrite:
            raise ValueError(f"output already exists; pass overwrite=True (--overwrite) to replace it. "
                             f"{_received('output', output)}")
    path = isinstance(source, (str, os.PathLike))
    state = read(os.fspath(source)) if path else source
    received = _received("source", os.fspath(source)) if path else "Received: source=a state dict"
    if CLASSES_KEY not in state:
        raise ValueError(f"source does not hold the state dict of a pytorchcv RiR model (no {CLASSES_KEY!r}). {received}")
    try:
        model = assign(build(classes(state), identity), state)
    except ValueError as error:
        raise ValueError(f"source does not fit pytorchcv's RiR ({error}). {received}") from error
    if output is not None:
        (model.save if str(output).endswith(".keras") else model.save_weights)(output)
    return model
