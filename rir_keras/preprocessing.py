"""Input normalization and class names of the CIFAR datasets."""
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


def statistics(dataset):
    """``(mean, std)`` of ``dataset`` ("cifar10" or "cifar100") on the [0, 255] scale, as float32 arrays."""
    if dataset not in STATISTICS:
        raise ValueError(f"dataset must be one of {sorted(STATISTICS)}. Received: dataset={dataset!r}")
    mean, std = STATISTICS[dataset]
    return np.float32(255.0) * np.asarray(mean, "float32"), np.float32(255.0) * np.asarray(std, "float32")


def preprocess_input(x, dataset="cifar10"):
    """Normalize images in [0, 255] (channels last, RGB) by ``dataset``'s channel mean and std.

    Accepts numpy arrays and tensors of any Keras backend; returns float32.
    """
    mean, std = statistics(dataset)
    x = ops.cast(ops.convert_to_tensor(x), "float32")
    if x.shape[-1] != 3:
        raise ValueError(f"preprocess_input expects RGB images (3 channels last). Received: shape={tuple(x.shape)}")
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
