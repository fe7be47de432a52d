"""Input normalization ("preprocessing") and class names of the CIFAR datasets.

One name, ``preprocessing``, for how a model's inputs are normalized, and one place that turns a
``preprocessing`` value into statistics (`resolve`) and into the model's first layer
(`preprocessing_layer`), and reads it back from a model (`model_preprocessing`). A value is:

- ``"cifar10"`` or ``"cifar100"``: that training set's per-channel mean and std;
- ``None``: no normalization (the model takes already-normalized inputs);
- a ``(mean, std)`` pair on the [0, 255] scale, 1 or C values each (C: the image channels).

The constructors of ``rir_keras.applications`` put the layer right after the input
(``include_preprocessing=True``), so models take raw images in [0, 255]. `preprocess_input` applies
the same normalization outside the model, for models built with ``include_preprocessing=False``.
"""
import keras
import numpy as np
from keras import ops

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)

# Per-channel mean and standard deviation of each training set, on the [0, 1] scale.
STATISTICS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
CLASS_NAMES = {"cifar10": CIFAR10_CLASSES, "cifar100": CIFAR100_CLASSES}
# The name of the Normalization layer the constructors put right after the input.
LAYER_NAME = "preprocessing"
_MATCH_TOLERANCE = 1e-4  # relative: float32 rounding of the statistics through std**2 and a config file


def statistics(dataset):
    """``(mean, std)`` of ``dataset`` ("cifar10" or "cifar100") on the [0, 255] scale, as float32 arrays."""
    if dataset not in STATISTICS:
        raise ValueError(f"dataset must be one of {sorted(STATISTICS)}. Received: dataset={dataset!r}")
    mean, std = STATISTICS[dataset]
    return np.float32(255.0) * np.asarray(mean, "float32"), np.float32(255.0) * np.asarray(std, "float32")


def _invalid(preprocessing, requirement):
    received = repr(preprocessing)
    if "\n" in received:  # numpy wraps long arrays: keep the message on one line
        received = " ".join(received.split())
    return ValueError(f"preprocessing {requirement}. Received: preprocessing={received}")


def resolve(preprocessing, channels=None):
    """``(mean, std)`` float32 arrays on the [0, 255] scale for ``preprocessing``, or ``None``.

    ``preprocessing`` is "cifar10", "cifar100", ``None`` or a ``(mean, std)`` pair of 1 or C values
    each on the [0, 255] scale. With ``channels``, the statistics must have 1 or ``channels`` values.
    Raises a ValueError naming ``preprocessing`` for anything else.
    """
    if preprocessing is None:
        return None
    if isinstance(preprocessing, str):
        if preprocessing not in STATISTICS:
            raise _invalid(preprocessing, f"must be one of {sorted(STATISTICS)}, None or a (mean, std) pair")
        mean, std = statistics(preprocessing)
    else:
        try:
            mean, std = preprocessing
            mean, std = (np.asarray(value, "float32").reshape(-1) for value in (mean, std))
        except (TypeError, ValueError) as error:
            raise _invalid(preprocessing, "must be 'cifar10', 'cifar100', None or a (mean, std) pair of "
                                          "numbers or sequences of numbers") from error
        if min(mean.size, std.size) < 1 or (mean.size != std.size and 1 not in (mean.size, std.size)):
            raise _invalid(preprocessing, "needs 1 or C values (C: the channels) for mean and for std")
        size = max(mean.size, std.size)
        mean, std = np.broadcast_to(mean, size).copy(), np.broadcast_to(std, size).copy()
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
            raise _invalid(preprocessing, "needs finite means and positive, finite stds")
    if channels is not None and mean.size not in (1, channels):
        raise _invalid(preprocessing, f"has statistics for {mean.size} channels, but the images have {channels} "
                                      f"(give 1 or {channels} values, or preprocessing=None)")
    return mean, std


def preprocessing_layer(preprocessing, channels=None, name=LAYER_NAME):
    """The ``keras.layers.Normalization`` that normalizes images in [0, 255] by ``preprocessing``,
    or ``None`` for ``preprocessing=None``. It computes in float32 whatever the dtype policy, holds
    no variables (its statistics are in its config) and round-trips through ``.keras`` files."""
    mean_std = resolve(preprocessing, channels)
    if mean_std is None:
        return None
    mean, std = mean_std
    return keras.layers.Normalization(mean=mean.tolist(), variance=np.square(std).tolist(), dtype="float32",
                                      name=name)


def find_layer(model):
    """The preprocessing layer of ``model`` (a ``Normalization`` named "preprocessing", in nested
    models too), or ``None``."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization) and layer.name == LAYER_NAME:
            return layer
        if isinstance(layer, keras.Model):
            found = find_layer(layer)
            if found is not None:
                return found
    return None


def model_preprocessing(model):
    """The ``preprocessing`` ``model`` was built with: "cifar10" or "cifar100" when its preprocessing
    layer holds those statistics, else its ``(mean, std)`` pair (lists of floats), ``None`` when it
    has no preprocessing layer (it takes normalized inputs)."""
    layer = find_layer(model)
    if layer is None:
        return None
    mean = np.asarray(layer.input_mean, "float64").reshape(-1)
    std = np.sqrt(np.asarray(layer.input_variance, "float64").reshape(-1))
    for name in STATISTICS:
        known_mean, known_std = statistics(name)
        if mean.shape == known_mean.shape and np.allclose(mean, known_mean, rtol=_MATCH_TOLERANCE, atol=0) \
                and np.allclose(std, known_std, rtol=_MATCH_TOLERANCE, atol=0):
            return name
    return [float(value) for value in mean], [float(value) for value in std]


def dataset_statistics(images, chunk=1024):
    """Per-channel ``(mean, std)`` of uint8 ``images`` (N, H, W, C) on the [0, 255] scale, as lists of
    floats: a ``preprocessing`` value. Computed in float64, a chunk of images at a time. A constant
    channel gets std 1 (nothing to scale)."""
    images = np.asarray(images)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"images must be a non-empty (N, height, width, channels) array. "
                         f"Received: images.shape={images.shape}")
    total = np.zeros(images.shape[-1], "float64")
    squares = np.zeros(images.shape[-1], "float64")
    for start in range(0, len(images), chunk):
        block = images[start:start + chunk].astype("float64")
        total += block.sum(axis=(0, 1, 2))
        squares += np.square(block).sum(axis=(0, 1, 2))
    count = images.size // images.shape[-1]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - np.square(mean), 0.0))
    std = np.where(std > 1e-3, std, 1.0)
    return [float(value) for value in mean], [float(value) for value in std]


def preprocess_input(x, preprocessing="cifar10"):
    """Normalize images in [0, 255] (channels last) as a model built with ``preprocessing`` does.

    For models built with ``include_preprocessing=False``: ``model(preprocess_input(images))`` then
    equals what the same weights give with ``include_preprocessing=True`` on the raw ``images``.
    ``preprocessing`` is "cifar10", "cifar100", ``None`` (only the cast) or a ``(mean, std)`` pair on
    the [0, 255] scale. Accepts numpy arrays and tensors of any Keras backend; returns float32.
    """
    x = ops.cast(ops.convert_to_tensor(x), "float32")
    mean_std = resolve(preprocessing, x.shape[-1] if len(x.shape) else None)
    if mean_std is None:
        return x
    mean, std = mean_std
    return (x - mean) / std


def class_names(dataset):
    if dataset not in CLASS_NAMES:
        raise ValueError(f"dataset must be one of {sorted(CLASS_NAMES)}. Received: dataset={dataset!r}")
    return CLASS_NAMES[dataset]


def decode_predictions(preds, top=5, dataset="cifar10"):
    """The ``top`` classes of each row of ``preds`` as ``(class_index, class_name, score)`` tuples.

    ``dataset`` is "cifar10", "cifar100", or a sequence of class names.
    """
    names = class_names(dataset) if isinstance(dataset, str) else tuple(dataset)
    preds = np.asarray(ops.convert_to_numpy(preds))
    if preds.ndim != 2 or preds.shape[1] != len(names):
        raise ValueError(
            f"decode_predictions expects a batch of shape (samples, {len(names)}) for {len(names)} classes. "
            f"Received: preds.shape={preds.shape}"
        )
    if not 1 <= top <= len(names):
        raise ValueError(f"top must be between 1 and {len(names)}. Received: top={top!r}")
    order = np.argsort(-preds, axis=1, kind="stable")[:, :top]
    return [[(int(i), names[i], float(row[i])) for i in best] for row, best in zip(preds, order)]
