"""Image-classification data in memory, and backend-agnostic batches for `model.fit`.

The datasets this project trains on are CIFAR-sized, so a whole split lives in memory as a uint8
NHWC array (CIFAR-10 train: 150 MB). Everything here is numpy, so batches and augmentation are the
same on the TensorFlow, JAX and PyTorch backends.

Sources that `load_split` reads:

- a folder laid out ``<split>/<class>/<image>`` (.jpg, .jpeg, .png, .webp), or a ``.tar.gz``/``.tgz``
  archive with that layout (read as a stream, never extracted to disk). One common enclosing
  folder (``cifar10/train/cat/0001.jpg``) is fine. Decoded with PIL: no TensorFlow needed.
- a tensorflow-datasets name (``"cifar10"``, ``"cifar100"``, ``"tfds:NAME"``); needs TensorFlow.
- numpy arrays, through `load_arrays`.

Bare names are resolved by `resolve_source`, which prefers a local archive found through the
``RIR_KERAS_DATA`` environment variable over tensorflow-datasets.

TensorFlow and tensorflow-datasets are imported only inside the functions that need them, so this
module imports on a machine with JAX alone (``KERAS_BACKEND=jax``).
"""
import dataclasses
import gzip
import hashlib
import io
import math
import numbers
import os
import tarfile
import zlib

import keras
import numpy as np

from rir_keras.dependencies import MissingDependency

DATA_ENV_VAR = "RIR_KERAS_DATA"
TFDS_PREFIX = "tfds:"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP")  # what PIL may decode: nothing else, whatever a file claims
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
# Archive names tried, in order, for a bare dataset name under RIR_KERAS_DATA: the lossless copies
# (WebP, PNG) before anything else, the JPEG copy last.
LOCAL_ARCHIVE_PATTERNS = ("{name}-webp.tar.gz", "{name}-png.tar.gz", "{name}.tar.gz", "{name}.tgz",
                          "{name}-jpeg.tar.gz")
# Purpose tags that keep the shuffle and augmentation random streams of ArrayBatches apart.
_SHUFFLE_STREAM, _AUGMENT_STREAM = 0, 1


@dataclasses.dataclass(frozen=True, eq=False)
class ImageData:
    """One split of an image-classification dataset, in memory.

    Attributes:
        images: uint8 array of shape (N, H, W, C).
        labels: int32 array of shape (N,), each in ``[0, len(class_names))``.
        class_names: list of str; ``class_names[i]`` names label ``i``.

    The constructor validates and normalizes its arguments (see `load_arrays`), so every
    `ImageData` in the program is well formed.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list

    def __post_init__(self):
        images = _check_images(self.images)
        labels = _check_labels(self.labels, len(images))
        class_names = _check_class_names(self.class_names, labels)
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "class_names", class_names)

    def __len__(self):
        return len(self.labels)

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def image_shape(self):
        """(H, W, C) of every image."""
        return tuple(self.images.shape[1:])

    def subset(self, indices):
        """The samples at `indices` (any numpy index), with the same class names."""
        return ImageData(self.images[indices], self.labels[indices], self.class_names)

    def sample(self, limit, seed=0, argument="limit"):
        """``limit`` images drawn at random without replacement (``seed`` fixes which), in their
        order here; all of them where ``limit`` is None or at least their number. A one-line
        ValueError names ``argument`` for a ``limit`` under 1."""
        if limit is None:
            return self
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
            raise ValueError(f"{argument} must be a positive integer. Received: {argument}={limit!r}")
        if limit >= len(self):
            return self
        return self.subset(np.sort(np.random.default_rng(seed).permutation(len(self))[:limit]))


def load_arrays(images, labels, class_names=None):
    """Wrap numpy arrays as `ImageData`, checking them.

    Args:
        images: array-like of shape (N, H, W, C) with values 0-255: uint8, or any integer dtype
            whose values fit in uint8.
        labels: integer array-like of shape (N,) or (N, 1) (the `keras.datasets` layout).
        class_names: names of the classes; default ``["0", "1", ...]`` up to the largest label.

    Raises:
        ValueError: a wrong rank, dtype or value range, or image and label counts that differ.
    """
    return ImageData(images, labels, class_names)


def _check_images(images):
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(
            "images must have shape (N, height, width, channels). "
            f"Received: images.shape={images.shape}"
        )
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.integer):
        raise ValueError(
            "images must be uint8 (values 0-255); convert floats with "
            f"np.clip(x, 0, 255).astype('uint8'). Received: images.dtype={images.dtype}"
        )
    if images.size and (images.min() < 0 or images.max() > 255):
        raise ValueError(
            "images must hold values in 0-255. "
            f"Received: values from {images.min()} to {images.max()}"
        )
    return images.astype(np.uint8)


def _check_labels(labels, num_images):
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape (N,) or (N, 1). Received: labels.shape={labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers. Received: labels.dtype={labels.dtype}")
    if len(labels) != num_images:
        raise ValueError(
            "images and labels must have the same length. "
            f"Received: {num_images} images and {len(labels)} labels"
        )
    if labels.size and labels.min() < 0:
        raise ValueError(f"labels must be >= 0. Received: min label={labels.min()}")
    return labels.astype(np.int32)


def _check_class_names(class_names, labels):
    num_classes = int(labels.max()) + 1 if labels.size else 0
    if class_names is None:
        return [str(i) for i in range(num_classes)]
    if isinstance(class_names, str) or not all(isinstance(n, str) for n in class_names):
        raise ValueError(f"class_names must be a list of str. Received: class_names={class_names!r}")
    class_names = list(class_names)
    if len(set(class_names)) != len(class_names):
        raise ValueError(f"class_names must be distinct. Received: class_names={class_names}")
    if len(class_names) < num_classes:
        raise ValueError(
            f"labels go up to {num_classes - 1}, more than the {len(class_names)} class_names. "
            f"Received: class_names={class_names}"
        )
    return class_names


# --------------------------------------------------------------------------- locating data


def resolve_source(source):
    """Say where a dataset comes from: a local path, or ``"tfds:NAME"``.

    - A path (an `os.PathLike`, an existing file or folder, or a string that starts with ``/``,
      ``.`` or ``~`` or ends with .tar.gz/.tgz) passes through, ``~`` expanded.
    - ``"tfds:NAME"`` passes through: tensorflow-datasets, always.
    - A bare name (``"cifar10"``, ``"cifar10-mini"``) is looked up in the folder(s) named by the
      environment variable ``RIR_KERAS_DATA`` (several joined with ``os.pathsep``), trying
      `LOCAL_ARCHIVE_PATTERNS` in order (``NAME-webp.tar.gz``, ``NAME-png.tar.gz``, ``NAME.tar.gz``,
      ``NAME.tgz``, ``NAME-jpeg.tar.gz``). With ``RIR_KERAS_DATA=../shared/datasets/cifar10``,
      ``"cifar10"`` is the official CIFAR-10, ``cifar10-webp.tar.gz`` (lossless), and ``"cifar10-mini"``
      the small ``cifar10-mini.tar.gz``; the JPEG copy is read by its path.
    - Any other name is a tensorflow-datasets name: ``"cifar100"`` -> ``"tfds:cifar100"``
      (`load_split` then loads it only where tensorflow-datasets has a prepared copy: only an
      explicit ``"tfds:NAME"`` downloads).

    Returns:
        str: a path, or ``"tfds:NAME"``.
    """
    if isinstance(source, os.PathLike):
        return os.fspath(source)
    if not isinstance(source, str) or not source.strip():
        raise ValueError(
            "A dataset source must be a path or a dataset name. " f"Received: source={source!r}"
        )
    if source.startswith(TFDS_PREFIX):
        return source
    if _looks_like_path(source):
        return os.path.expanduser(source)
    return _find_local_archive(source) or TFDS_PREFIX + source


def _looks_like_path(source):
    return (
        os.path.exists(source)
        or source.startswith(("/", ".", "~"))
        or source.lower().endswith(ARCHIVE_SUFFIXES)
    )


def _data_folders():
    """The folders named by RIR_KERAS_DATA, in order."""
    return [folder for folder in os.environ.get(DATA_ENV_VAR, "").split(os.pathsep) if folder]


def _archive_names(name):
    """The file names a bare dataset name is looked up as, in order."""
    return [pattern.format(name=name) for pattern in LOCAL_ARCHIVE_PATTERNS]


def _find_local_archive(name):
    """The first archive for `name` in the RIR_KERAS_DATA folders, or None."""
    for folder in _data_folders():
        for file_name in _archive_names(name):
            candidate = os.path.join(folder, file_name)
            if os.path.isfile(candidate):
                return candidate
    return None


def data_identity(source):
    """What results and manifests record of the data ``source`` resolves to, the same wherever it lies:
    ``{"file": NAME, "sha256": HEX}`` for an archive (so a figure names the exact data it was measured
    on, and a run continued on other data is refused), ``{"folder": NAME}`` for a folder,
    ``{"tfds": NAME}`` for tensorflow-datasets."""
    resolved = resolve_source(source)
    if resolved.startswith(TFDS_PREFIX):
        return {"tfds": resolved[len(TFDS_PREFIX):]}
    name = os.path.basename(os.path.abspath(resolved))
    if os.path.isfile(resolved):
        return {"file": name, "sha256": file_sha256(resolved)}
    return {"folder": name}


def file_sha256(path):
    """The SHA-256 of the file at ``path``, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dataset_family(dataset):
    """"cifar100" or "cifar10" when the base name of ``dataset`` (a source, as `load_split` takes) starts with it
    (``cifar10-mini``, ``data/cifar100.tar.gz``, ``tfds:cifar10``), else ``None``."""
    name = os.fspath(dataset)
    if name.startswith(TFDS_PREFIX):
        name = name[len(TFDS_PREFIX):]
    name = os.path.basename(name.rstrip("/" + os.sep)).lower()
    return next((family for family in ("cifar100", "cifar10") if name.startswith(family)), None)


def load_split(source, split, *, data_dir=None):
    """Load one split of a dataset into memory.

    Args:
        source: a folder or .tar.gz/.tgz archive laid out ``<split>/<class>/<image>``, a
            tensorflow-datasets name, or a bare name resolved by `resolve_source` (a local
            archive under ``RIR_KERAS_DATA`` first, else tensorflow-datasets).
        split: the split, e.g. ``"train"`` or ``"test"``. For tfds, any split string tfds takes
            (``"train[:90%]"``).
        data_dir: tensorflow-datasets data folder, passed to `tfds.load`; unused for paths.

    Returns:
        `ImageData`. For folders and archives, the labels index the class folders found in any
        split, sorted alphabetically, so all splits share one label order; samples are ordered
        by class, then file name.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: anything else wrong with the data; the message names the path or dataset.
    """
    resolved = resolve_source(source)
    if resolved.startswith(TFDS_PREFIX):
        bare = isinstance(source, str) and not source.startswith(TFDS_PREFIX)  # no archive found for it
        return _load_tfds(resolved[len(TFDS_PREFIX):], split, data_dir, prepared_only=bare)
    return _load_path(resolved, split)


# --------------------------------------------------------------------------- folders and archives


def _load_path(path, split):
    if not os.path.exists(path):
        raise FileNotFoundError(f"Dataset path not found: {path!r}")
    if os.path.isdir(path):
        return _collect_split(_folder_entries(path), split, path)
    if path.lower().endswith(ARCHIVE_SUFFIXES):
        return _load_archive(path, split)
    raise ValueError(
        f"Dataset path {path!r} is neither a folder nor a .tar.gz/.tgz archive "
        "laid out <split>/<class>/<image>."
    )


def _load_archive(path, split):
    """Read a gzipped tar archive as one stream; the gzip layer checks length and CRC."""
    try:
        with gzip.open(path, "rb") as stream:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                data = _collect_split(_tar_entries(tar), split, path)
            while stream.read(1 << 20):  # Read to the end: a truncated tail raises EOFError.
                pass
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ValueError(f"Corrupt or truncated archive {path!r}: {exc}") from exc
    return data


def _tar_entries(tar):
    """Yield ``(path parts, read)`` per member: read() gives a file's bytes, None for a folder.

    `read` must be called before the next member is taken: the archive is a stream.
    """
    for member in tar:
        parts = tuple(p for p in member.name.split("/") if p not in ("", "."))
        if member.isdir():
            yield parts, None
        elif member.isfile():
            yield parts, lambda member=member: tar.extractfile(member).read()


def _folder_entries(root):
    """Yield ``(path parts relative to root, read)`` like `_tar_entries`, walking a folder."""
    for folder, subfolders, files in os.walk(root):
        rel = os.path.relpath(folder, root)
        base = () if rel == "." else tuple(rel.split(os.sep))
        for name in subfolders:
            yield base + (name,), None
        for name in files:
            path = os.path.join(folder, name)
            yield base + (name,), lambda path=path: _read_file(path)


def _read_file(path):
    with open(path, "rb") as f:
        return f.read()


def _is_hidden(parts):
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _collect_split(entries, split, origin):
    """Decode the images of `split` from ``(parts, read)`` entries of a folder or an archive.

    Images must sit at ``[prefix/]<split>/<class>/<file>`` with one common prefix (none, or an
    enclosing folder). Only the requested split is decoded; the others are only listed.
    """
    decoded = {}  # (prefix, class, file) -> HWC uint8 array
    layout = {}  # prefix -> {split: set of classes}
    folders = set()
    for parts, read in entries:
        if _is_hidden(parts):
            continue
        if read is None:
            folders.add(parts)
            continue
        if len(parts) < 3 or not parts[-1].lower().endswith(IMAGE_EXTENSIONS):
            continue
        prefix, image_split, cls, name = parts[:-3], parts[-3], parts[-2], parts[-1]
        layout.setdefault(prefix, {}).setdefault(image_split, set()).add(cls)
        if image_split == split:
            decoded[prefix, cls, name] = _decode_image(read(), "/".join(parts), origin)

    prefix = _single_prefix(layout, origin)
    pictured = set().union(*layout.get(prefix, {}).values())  # classes with at least one image somewhere
    splits = layout.get(prefix, {})
    for folder in folders:  # Empty split and class folders count too.
        if folder[: len(prefix)] == prefix and len(folder) in (len(prefix) + 1, len(prefix) + 2):
            splits.setdefault(folder[len(prefix)], set()).update(folder[len(prefix) + 1:])
    if split not in splits:
        raise ValueError(
            f"Split {split!r} not found in {origin!r}. "
            f"Splits found: {sorted(splits) or 'none'} (expected layout <split>/<class>/<image>)."
        )
    keys = sorted(key for key in decoded if key[0] == prefix)
    if not keys:
        raise ValueError(
            f"Split {split!r} of {origin!r} has no images ({', '.join(IMAGE_EXTENSIONS)})."
        )
    class_names = sorted(set().union(*splits.values()))
    empty = sorted(set(class_names) - pictured)
    if empty:  # a class folder without a single image, in any split, would be a class never seen
        raise ValueError(f"{origin!r} has class folders without images: {', '.join(empty)}; fill or remove them. "
                         f"Received: classes without images {empty}")
    index = {name: i for i, name in enumerate(class_names)}
    names = ["/".join(prefix + (split, cls, name)) for _, cls, name in keys]
    images = _stack_images([decoded[key] for key in keys], names, origin)
    labels = np.array([index[cls] for _, cls, _ in keys], dtype=np.int32)
    return ImageData(images, labels, class_names)


def _single_prefix(layout, origin):
    """The one folder path that encloses the <split> folders; an error when images disagree."""
    if len(layout) > 1:
        examples = ["/".join(p) or "<top level>" for p in sorted(layout)[:3]]
        raise ValueError(
            f"{origin!r} does not have one <split>/<class>/<image> layout: images sit under "
            f"different folders. Received: split folders under {examples}"
        )
    return next(iter(layout), ())


def _decode_image(data, name, origin):
    """Decode image bytes to an (H, W, 1) or (H, W, 3) uint8 array with PIL."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
            image.load()
            gray = image.mode in ("1", "L", "LA", "I", "I;16", "F")
            mode = "L" if gray else "RGB"
            array = np.asarray(image if image.mode == mode else image.convert(mode))
    except Exception as exc:  # PIL raises many types: UnidentifiedImageError, OSError, ...
        raise ValueError(f"Could not decode image {name!r} in {origin!r}: {exc}") from exc
    return array[..., None] if gray else array


def _stack_images(arrays, names, origin):
    """Stack HWC arrays into NHWC; grayscale joins RGB as 3 channels; sizes must agree."""
    height, width = arrays[0].shape[:2]
    for array, name in zip(arrays, names):
        if array.shape[:2] != (height, width):
            raise ValueError(
                f"Image {name!r} in {origin!r} is {array.shape[1]}x{array.shape[0]} (WxH), but "
                f"{names[0]!r} is {width}x{height}: all images of a dataset must have the same "
                "size; resize them first."
            )
    channels = max(array.shape[2] for array in arrays)
    images = np.empty((len(arrays), height, width, channels), dtype=np.uint8)
    for i, array in enumerate(arrays):
        images[i] = array  # broadcasts 1 channel to 3
    return images


# --------------------------------------------------------------------------- tensorflow-datasets


def _archives_searched(name):
    """Which file names were looked for where, for an error message."""
    folders = _data_folders()
    names = ", ".join(_archive_names(name))
    where = (f"{DATA_ENV_VAR}={os.environ[DATA_ENV_VAR]!r} ({', '.join(map(repr, folders))})" if folders else
             f"{DATA_ENV_VAR}, which is not set")
    return f"no archive of {name!r} found: looked for {names} in {where}"


def _load_tfds(name, split, data_dir, prepared_only=False):
    """Load a whole tfds split as numpy, wrapping tfds errors with what to do about them.

    ``prepared_only`` (a bare name that matched no local archive): refuse, before anything is
    downloaded, when tensorflow-datasets has no prepared copy; ``tfds:NAME`` may download."""
    if not name:
        raise ValueError(f"A tensorflow-datasets source needs a name. Received: source={TFDS_PREFIX!r}")
    try:
        import tensorflow_datasets as tfds
    except ImportError as exc:
        raise MissingDependency(
            f"Loading dataset {name!r} from tensorflow-datasets needs the packages "
            "tensorflow-datasets and tensorflow (pip install 'rir_keras[tensorflow]'). Without them, use a "
            f"local folder or .tar.gz archive (a bare name is looked up under {DATA_ENV_VAR}, "
            f"now {os.environ.get(DATA_ENV_VAR)!r})."
        ) from exc
    if prepared_only:
        try:
            prepared = tfds.builder(name, data_dir=data_dir).is_prepared()
        except tfds.core.DatasetNotFoundError:
            prepared = None
        if not prepared:
            known = (f"tensorflow-datasets has no prepared copy of it in data_dir={data_dir!r} (None: "
                     f"~/tensorflow_datasets): source='tfds:{name}' lets it download and prepare one (network "
                     "access needed), or data_dir names a folder where one is prepared") if prepared is False else \
                "it is not a tensorflow-datasets name either"
            raise ValueError(f"dataset {name!r}: {_archives_searched(name)}; {known}. Point {DATA_ENV_VAR} at a "
                             f"folder holding one of those archives. Received: dataset={name!r}")
    try:
        tensors, info = tfds.load(
            name, split=split, data_dir=data_dir, batch_size=-1, as_supervised=True, with_info=True
        )
    except tfds.core.DatasetNotFoundError as exc:
        raise ValueError(
            f"Unknown dataset {name!r}: it is not an existing path, not an archive found under "
            f"{DATA_ENV_VAR}={os.environ.get(DATA_ENV_VAR)!r}, and not a tensorflow-datasets "
            f"name ({str(exc).splitlines()[0]})"
        ) from exc
    except Exception as exc:
        raise ValueError(
            f"Could not load tensorflow-datasets {name!r} split {split!r} with "
            f"data_dir={data_dir!r}: {exc}. Preparing a tfds dataset downloads it, which needs "
            "network access; offline, pass a data_dir where it has already been prepared, or use "
            f"a local archive through {DATA_ENV_VAR}."
        ) from exc
    images, labels = tfds.as_numpy(tensors)
    return ImageData(images, labels, _tfds_class_names(info))


def _tfds_class_names(info):
    """Names of the supervised label feature (``"label"`` unless the builder says otherwise)."""
    keys = getattr(info, "supervised_keys", None)
    label_key = keys[1] if keys and isinstance(keys[1], str) else "label"
    return list(info.features[label_key].names)


# --------------------------------------------------------------------------- splitting


def split_validation(data, fraction, seed=0):
    """Split `data` at random into ``(train, validation)`` `ImageData`; not stratified.

    Args:
        data: `ImageData`.
        fraction: share of the samples that go to validation, strictly between 0 and 1;
            ``round(fraction * len(data))`` samples, at least 1, and at least 1 left to train.
        seed: the same seed gives the same split. Each part keeps the original sample order.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0 < fraction < 1:
        raise ValueError(
            f"fraction must be a number strictly between 0 and 1. Received: fraction={fraction!r}"
        )
    num_val = round(fraction * len(data))
    if not 0 < num_val < len(data):
        raise ValueError(
            f"fraction={fraction} of {len(data)} samples leaves an empty training or validation "
            f"set. Received: fraction={fraction}"
        )
    order = np.random.default_rng(seed).permutation(len(data))
    return data.subset(np.sort(order[num_val:])), data.subset(np.sort(order[:num_val]))


# --------------------------------------------------------------------------- augmentation


def pad_crop_flip(images, rng, pad=4, flip=True):
    """The paper's augmentation: zero-pad, random crop back to the input size, random h-flip.

    Vectorized over the batch (a 128x32x32x3 uint8 batch takes about 1 ms). Pure numpy, so it is
    the same on every Keras backend.

    Args:
        images: array (N, H, W, C), any dtype (uint8 is fastest).
        rng: a `numpy.random.Generator` (or an object with its `integers` and `random`
            methods), or a seed for one. Draws, in order: ``integers(0, 2 * pad + 1, size=N)``
            for the rows, the same for the columns, then ``random(N) < 0.5`` for the flips
            (only if `flip`).
        pad: pixels of zeros added on each side; offsets are uniform in ``[0, 2 * pad]``.
        flip: whether to flip each image left-right with probability 1/2.

    Returns:
        A new array with the shape and dtype of `images`.
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, H, W, C). Received: images.shape={images.shape}")
    if not _is_integer(pad) or pad < 0:
        raise ValueError(f"pad must be an integer >= 0. Received: pad={pad!r}")
    if not isinstance(rng, np.random.Generator) and not hasattr(rng, "integers"):
        rng = np.random.default_rng(rng)
    n, height, width, channels = images.shape
    rows = rng.integers(0, 2 * pad + 1, size=n)
    cols = rng.integers(0, 2 * pad + 1, size=n)
    padded = np.zeros((n, height + 2 * pad, width + 2 * pad, channels), dtype=images.dtype)
    padded[:, pad : pad + height, pad : pad + width] = images
    windows = np.lib.stride_tricks.sliding_window_view(
        padded, (height, width, channels), axis=(1, 2, 3)
    )  # (N, 2p+1, 2p+1, 1, H, W, C): a view, no copy
    out = windows[np.arange(n), rows, cols, 0]  # one gather, already NHWC and contiguous
    if flip:
        flipped = np.asarray(rng.random(n)) < 0.5
        out[flipped] = out[flipped, :, ::-1]
    return out


# --------------------------------------------------------------------------- batches


class ArrayBatches(keras.utils.PyDataset):
    """Batches ``(float32 images, int32 labels)`` from in-memory data, for `model.fit`.

    Args:
        data_or_images: `ImageData`, or a uint8 image array (N, H, W, C) with `labels`.
        labels: integer labels (N,), only with an image array.
        batch_size: samples per batch, >= 1.
        shuffle: visit the samples in a new random order every epoch.
        augment: False; True for `pad_crop_flip` (pad 4); or a callable
            ``(uint8 images, numpy Generator) -> images``.
        seed: seeds the shuffle and the augmentation. None draws a seed once, at construction.
        preprocess: callable applied to the float32 batch (values 0-255) after augmentation,
            e.g. per-channel mean/std normalization.
        drop_remainder: drop the last batch when it is smaller than `batch_size`.
        **pydataset_kwargs: `workers`, `use_multiprocessing`, `max_queue_size` of
            `keras.utils.PyDataset`.

    Deterministic: the sample order comes from ``(seed, epoch)`` and the augmentation of batch
    ``i`` from ``(seed, epoch, i)``, so the same seed gives the same batches, whatever order or
    thread fetches them. `on_epoch_end` advances `epoch` (the hook Keras calls with its workers
    stopped); `epoch` can also be set, e.g. to replay an epoch. Keras 3's ``fit`` calls
    `on_epoch_end` once when it starts as well as after every epoch, so its first epoch runs
    with ``epoch == 1``: still the same batches for the same seed.

    Note that ``model.fit`` with its default ``shuffle=True`` also reorders the batches of a
    PyDataset, with Python's `random`; pass ``shuffle=False`` to `fit` to keep this order.
    """

    def __init__(
        self,
        data_or_images,
        labels=None,
        *,
        batch_size,
        shuffle=False,
        augment=False,
        seed=None,
        preprocess=None,
        drop_remainder=False,
        **pydataset_kwargs,
    ):
        super().__init__(**pydataset_kwargs)
        self.data = _as_image_data(data_or_images, labels)
        self.batch_size = _check_batch_size(batch_size, len(self.data), drop_remainder)
        self.shuffle = bool(shuffle)
        self.augment = _augment_fn(augment)
        self.seed = np.random.SeedSequence().entropy if seed is None else int(seed)
        self.preprocess = preprocess
        self.drop_remainder = bool(drop_remainder)
        self.epoch = 0

    @property
    def epoch(self):
        """Number of epochs finished; it picks the order and augmentation of the batches."""
        return self._epoch

    @epoch.setter
    def epoch(self, value):
        self._epoch = int(value)
        if self.shuffle:
            rng = np.random.default_rng([_SHUFFLE_STREAM, self.seed, self._epoch])
            self._order = rng.permutation(len(self.data))
        else:
            self._order = np.arange(len(self.data))

    def __len__(self):
        num = len(self.data) / self.batch_size
        return math.floor(num) if self.drop_remainder else math.ceil(num)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"Batch index out of range [0, {len(self)}). Received: index={index}")
        chosen = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        images = self.data.images[chosen]
        if self.augment is not None:
            rng = np.random.default_rng([_AUGMENT_STREAM, self.seed, self._epoch, index])
            images = self.augment(images, rng)
        images = np.asarray(images, dtype=np.float32)
        if self.preprocess is not None:
            images = self.preprocess(images)
        return images, self.data.labels[chosen]

    def on_epoch_end(self):
        self.epoch = self._epoch + 1


def _as_image_data(data_or_images, labels):
    if isinstance(data_or_images, ImageData):
        if labels is not None:
            raise ValueError(
                "Pass labels only with an image array: ImageData has its own. "
                f"Received: ImageData and labels of type {type(labels).__name__}"
            )
        return data_or_images
    if labels is None:
        raise ValueError("An image array needs labels. Received: labels=None")
    return load_arrays(data_or_images, labels)


def _check_batch_size(batch_size, num_samples, drop_remainder):
    if not _is_integer(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1. Received: batch_size={batch_size!r}")
    if num_samples == 0:
        raise ValueError("ArrayBatches needs at least one sample. Received: 0 samples")
    if drop_remainder and batch_size > num_samples:
        raise ValueError(
            f"drop_remainder=True with more than the {num_samples} samples per batch leaves no "
            f"batch. Received: batch_size={batch_size}"
        )
    return int(batch_size)


def _augment_fn(augment):
    if augment is True:
        return pad_crop_flip
    if augment is False or augment is None:
        return None
    if callable(augment):
        return augment
    raise ValueError(
        f"augment must be a bool or a callable (images, rng). Received: augment={augment!r}"
    )


def _is_integer(value):
    """True for Python and numpy integers, False for bools."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
