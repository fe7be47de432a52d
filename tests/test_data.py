"""Tests of rir_keras.data: loading folders, archives, tfds and arrays; augmentation; batches.

Real data is the small CIFAR-10 (JPEG copy) archive found through RIR_KERAS_DATA (the `data_dir`
fixture); everything else is made here. Nothing is downloaded: tensorflow-datasets is faked.
"""
import hashlib
import os
import subprocess
import sys
import tarfile
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from rir_keras import data
from rir_keras.data import ArrayBatches, ImageData, load_arrays, load_split, pad_crop_flip

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# --------------------------------------------------------------------------- helpers


def write_image(path, array):
    """Write a uint8 HWC (or HW) array as an image file; the format follows the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.squeeze(array)).save(path)


def pixels(value, shape=(4, 4, 3)):
    """An image whose pixels all hold `value`, so a decoded image tells which file it was."""
    return np.full(shape, value, dtype=np.uint8)


@pytest.fixture
def folder(tmp_path):
    """A PNG dataset: train has cat (2), dog (1), zebra (1); test has dog (RGB) and zebra (gray)."""
    root = tmp_path / "images"
    write_image(root / "train/cat/b.png", pixels(20))
    write_image(root / "train/cat/a.png", pixels(10))
    write_image(root / "train/dog/x.png", pixels(30))
    write_image(root / "train/zebra/y.png", pixels(40))
    write_image(root / "test/dog/1.png", pixels(50))
    write_image(root / "test/zebra/2.png", pixels(60, shape=(4, 4)))  # grayscale
    return root


def make_archive(path, folder, arcname):
    """tar.gz `folder` under `arcname` ("." puts the split folders at the top level)."""
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname=arcname)
    return path


def assert_error_names(exc_info, *fragments):
    message = str(exc_info.value)
    for fragment in fragments:
        assert str(fragment) in message, f"{fragment!r} not in: {message}"


# --------------------------------------------------------------------------- CIFAR-10 mini archive


@pytest.fixture(scope="module")
def mini(data_dir):
    path = data_dir / "cifar10-png-mini.tar.gz"
    return load_split(path, "train"), load_split(path, "test")


def test_mini_archive_has_the_documented_contents(mini):
    train, test = mini
    for split, per_class in ((train, 100), (test, 20)):
        assert split.class_names == CIFAR10_CLASSES
        assert split.images.shape == (10 * per_class, 32, 32, 3)
        assert split.images.dtype == np.uint8 and split.labels.dtype == np.int32
        np.testing.assert_array_equal(np.bincount(split.labels, minlength=10), [per_class] * 10)
        assert split.images.std() > 10  # real pictures, not blank


def test_mini_archives_hold_the_same_images_lossless_and_as_jpeg(data_dir, mini):
    # The JPEG twin of the lossless mini: same names, so same labels and order; pixels within
    # what JPEG quality 75 loses (about 6 grey levels on average), never equal.
    jpeg = load_split(data_dir / "cifar10-mini.tar.gz", "test")
    np.testing.assert_array_equal(jpeg.labels, mini[1].labels)
    error = np.abs(jpeg.images.astype(int) - mini[1].images.astype(int)).mean()
    assert 2 < error < 12


def test_webp_images_are_read_losslessly(tmp_path, mini):
    from PIL import Image

    images = mini[1].images[:3]
    for i, image in enumerate(images):
        folder = tmp_path / "test" / mini[1].class_names[mini[1].labels[i]]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:04d}.webp", lossless=True)
    read = load_split(tmp_path, "test")
    labelled = lambda d, n: sorted((d.class_names[d.labels[i]], d.images[i].tobytes()) for i in range(n))  # noqa: E731
    assert labelled(read, len(read)) == labelled(mini[1], 3)  # exact pixels, each under its class


def test_resolve_source_prefers_lossless_archives_under_the_env_var(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("RIR_KERAS_DATA", str(data_dir))
    assert data.resolve_source("cifar10") == str(data_dir / "cifar10-webp.tar.gz")
    assert data.resolve_source("cifar10-png-mini") == str(data_dir / "cifar10-png-mini.tar.gz")
    assert data.resolve_source("cifar10-mini") == str(data_dir / "cifar10-mini.tar.gz")  # the JPEG mini, by name
    for name in ("x-jpeg.tar.gz", "x.tar.gz", "x-png.tar.gz", "x-webp.tar.gz"):  # lossless first, JPEG last
        (tmp_path / name).write_bytes(b"")
        monkeypatch.setenv("RIR_KERAS_DATA", f"{tmp_path}")
        assert data.resolve_source("x") == str(tmp_path / name)
    monkeypatch.setenv("RIR_KERAS_DATA", str(data_dir))
    assert data.resolve_source("cifar100") == "tfds:cifar100"
    assert data.resolve_source("tfds:cifar10") == "tfds:cifar10"
    assert data.resolve_source(tmp_path) == str(tmp_path)
    assert data.resolve_source("./missing.tar.gz") == "./missing.tar.gz"
    monkeypatch.delenv("RIR_KERAS_DATA")
    assert data.resolve_source("cifar10") == "tfds:cifar10"


def test_load_split_by_name_reads_the_local_archive(data_dir, monkeypatch, mini):
    monkeypatch.setenv("RIR_KERAS_DATA", str(data_dir))
    test = load_split("cifar10-png-mini", "test")
    np.testing.assert_array_equal(test.images, mini[1].images)
    np.testing.assert_array_equal(test.labels, mini[1].labels)


def test_module_and_archive_loading_need_no_tensorflow(data_dir):
    code = (
        "import sys; from rir_keras.data import load_split; "
        f"d = load_split({str(data_dir / 'cifar10-png-mini.tar.gz')!r}, 'test'); "
        "assert len(d) == 200; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    env = dict(os.environ, KERAS_BACKEND="jax")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- folders and archives


def check_folder_dataset(train, test):
    assert train.class_names == test.class_names == ["cat", "dog", "zebra"]
    np.testing.assert_array_equal(train.labels, [0, 0, 1, 2])
    np.testing.assert_array_equal(train.images[:, 0, 0, 0], [10, 20, 30, 40])  # class, then file name
    np.testing.assert_array_equal(test.labels, [1, 2])  # labels shared with train
    assert test.images.shape == (2, 4, 4, 3)  # the grayscale image joins as 3 equal channels
    np.testing.assert_array_equal(test.images[1], pixels(60))


def test_folder_loads_with_sorted_class_labels(folder):
    check_folder_dataset(load_split(folder, "train"), load_split(str(folder), "test"))


@pytest.mark.parametrize("arcname", [".", "images"], ids=["top-level", "enclosing-folder"])
@pytest.mark.parametrize("suffix", [".tar.gz", ".tgz"])
def test_archive_loads_like_the_folder(folder, tmp_path, arcname, suffix):
    archive = make_archive(tmp_path / f"x{suffix}", folder, arcname)
    check_folder_dataset(load_split(archive, "train"), load_split(archive, "test"))


def test_missing_path(tmp_path):
    missing = tmp_path / "nowhere.tar.gz"
    with pytest.raises(FileNotFoundError) as exc_info:
        load_split(missing, "train")
    assert_error_names(exc_info, missing)


def test_path_neither_folder_nor_archive(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(ValueError) as exc_info:
        load_split(path, "train")
    assert_error_names(exc_info, path, "neither a folder nor")


@pytest.mark.parametrize("kind", ["folder", "archive"])
def test_missing_split_lists_the_splits_found(folder, tmp_path, kind):
    source = folder if kind == "folder" else make_archive(tmp_path / "x.tar.gz", folder, ".")
    with pytest.raises(ValueError) as exc_info:
        load_split(source, "validation")
    assert_error_names(exc_info, source, "'validation' not found", "['test', 'train']")


@pytest.mark.parametrize("kind", ["folder", "archive"])
def test_empty_split(folder, tmp_path, kind):
    (folder / "validation" / "cat").mkdir(parents=True)
    source = folder if kind == "folder" else make_archive(tmp_path / "x.tar.gz", folder, ".")
    with pytest.raises(ValueError) as exc_info:
        load_split(source, "validation")
    assert_error_names(exc_info, source, "'validation'", "no images")


@pytest.mark.parametrize("kind", ["folder", "archive"])
def test_a_class_folder_without_images_is_an_error(folder, tmp_path, kind):
    (folder / "train" / "yak").mkdir()  # an empty class folder would become a class never seen
    source = folder if kind == "folder" else make_archive(tmp_path / "x.tar.gz", folder, ".")
    for split in ("train", "test"):
        with pytest.raises(ValueError) as exc_info:
            load_split(source, split)
        assert_error_names(exc_info, source, "class folders without images: yak", "Received: classes without images ['yak']")


def test_corrupt_archive(tmp_path):
    path = tmp_path / "x.tar.gz"
    path.write_bytes(b"this is not a gzip file" * 50)
    with pytest.raises(ValueError) as exc_info:
        load_split(path, "train")
    assert_error_names(exc_info, path, "Corrupt or truncated")


@pytest.mark.parametrize("keep", [0.5, -8], ids=["half", "missing-gzip-trailer"])
def test_truncated_archive(data_dir, tmp_path, keep):
    whole = (data_dir / "cifar10-png-mini.tar.gz").read_bytes()
    path = tmp_path / "cut.tar.gz"
    path.write_bytes(whole[: int(len(whole) * keep)] if keep > 0 else whole[:keep])
    with pytest.raises(ValueError) as exc_info:
        load_split(path, "test")
    assert_error_names(exc_info, path, "Corrupt or truncated")


def test_undecodable_image_names_the_member(folder, tmp_path):
    (folder / "train" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    archive = make_archive(tmp_path / "x.tar.gz", folder, ".")
    with pytest.raises(ValueError) as exc_info:
        load_split(archive, "train")
    assert_error_names(exc_info, archive, "train/dog/broken.jpg")
    load_split(archive, "test")  # other splits are not decoded


def test_images_of_different_sizes_name_the_file(folder):
    write_image(folder / "train" / "zebra" / "z.png", pixels(1, shape=(5, 4, 3)))
    with pytest.raises(ValueError) as exc_info:
        load_split(folder, "train")
    assert_error_names(exc_info, folder, "train/zebra/z.png", "same size")


def test_images_at_different_depths_are_rejected(folder):
    write_image(folder / "extra" / "train" / "cat" / "c.png", pixels(1))
    with pytest.raises(ValueError) as exc_info:
        load_split(folder, "train")
    assert_error_names(exc_info, folder, "different folders")


# --------------------------------------------------------------------------- tensorflow-datasets


@pytest.fixture
def fake_tfds(monkeypatch):
    """Replace tfds.load with a fake CIFAR-100 of 300 images; records the calls it gets."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    names = [f"class_{i:02d}" for i in range(100)]
    images = np.random.default_rng(0).integers(0, 256, (300, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(300, dtype=np.int64) % 100
    info = SimpleNamespace(
        supervised_keys=("image", "label"),
        features=tfds.features.FeaturesDict(
            {"image": tfds.features.Image(shape=(32, 32, 3)), "label": tfds.features.ClassLabel(names=names)}
        ),
    )
    calls = []

    def load(name, **kwargs):
        calls.append((name, kwargs))
        return (tf.constant(images), tf.constant(labels)), info

    monkeypatch.setattr(tfds, "load", load)
    monkeypatch.setattr(tfds, "builder", lambda name, **kwargs: SimpleNamespace(is_prepared=lambda: True))
    return SimpleNamespace(calls=calls, images=images, labels=labels, names=names)


def test_a_bare_name_without_archive_or_prepared_copy_says_where_it_looked(fake_tfds, data_dir, tmp_path,
                                                                            monkeypatch):
    import tensorflow_datasets as tfds

    monkeypatch.setattr(tfds, "builder", lambda name, **kwargs: SimpleNamespace(is_prepared=lambda: False))
    monkeypatch.setenv("RIR_KERAS_DATA", str(tmp_path))  # a folder without the archive
    with pytest.raises(ValueError) as exc_info:
        load_split("cifar10", "train")
    assert_error_names(exc_info, "cifar10-webp.tar.gz", "cifar10-jpeg.tar.gz", str(tmp_path), "tfds:cifar10",
                       "Received: dataset='cifar10'")
    assert str(exc_info.value).index("looked for") < str(exc_info.value).index("tensorflow-datasets")
    assert fake_tfds.calls == []  # nothing was downloaded or prepared
    monkeypatch.delenv("RIR_KERAS_DATA")
    with pytest.raises(ValueError, match="RIR_KERAS_DATA, which is not set"):
        load_split("cifar10", "train")
    assert len(load_split("tfds:cifar10", "train")) == 300  # the explicit tfds: name may download


def test_tfds_cifar100_flows_through(fake_tfds, data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("RIR_KERAS_DATA", str(data_dir))  # holds no cifar100 archive: tfds it is
    loaded = load_split("cifar100", "train[:300]", data_dir=tmp_path)
    name, kwargs = fake_tfds.calls[0]
    assert name == "cifar100"
    assert kwargs["split"] == "train[:300]" and kwargs["data_dir"] == tmp_path
    assert kwargs["batch_size"] == -1 and kwargs["as_supervised"] is True
    assert loaded.class_names == fake_tfds.names and loaded.num_classes == 100
    assert loaded.images.dtype == np.uint8 and loaded.labels.dtype == np.int32
    np.testing.assert_array_equal(loaded.images, fake_tfds.images)
    np.testing.assert_array_equal(loaded.labels, fake_tfds.labels)
    assert load_split("tfds:cifar100", "test").num_classes == 100
    assert fake_tfds.calls[1][0] == "cifar100"


def test_tfds_unknown_name(tmp_path):
    with pytest.raises(ValueError) as exc_info:
        load_split("tfds:no_such_dataset_rir", "train", data_dir=tmp_path)
    assert_error_names(exc_info, "no_such_dataset_rir", "not a tensorflow-datasets name")
    assert len(str(exc_info.value)) < 1000  # not tfds's list of every dataset


def test_tfds_failed_download_is_explained(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    def load(name, **kwargs):
        raise ConnectionError("Failed to reach www.cs.toronto.edu")

    monkeypatch.setattr(tfds, "load", load)
    with pytest.raises(ValueError) as exc_info:  # only an explicit tfds: name downloads
        load_split("tfds:cifar100", "train", data_dir=tmp_path)
    assert_error_names(exc_info, "'cifar100'", tmp_path, "network", "prepared", "Failed to reach")
    assert isinstance(exc_info.value.__cause__, ConnectionError)


# --------------------------------------------------------------------------- arrays


def test_load_arrays_accepts_keras_dataset_layout():
    images = np.zeros((3, 2, 2, 1), dtype=np.int64)
    loaded = load_arrays(images, np.array([[0], [2], [1]]), ["a", "b", "c"])
    assert loaded.images.dtype == np.uint8 and loaded.labels.dtype == np.int32
    np.testing.assert_array_equal(loaded.labels, [0, 2, 1])
    assert load_arrays(images, [0, 4, 1]).class_names == ["0", "1", "2", "3", "4"]


U8 = np.zeros((3, 2, 2, 1), dtype=np.uint8)


@pytest.mark.parametrize(
    "images, labels, class_names, fragment",
    [
        (np.zeros((3, 2, 2), np.uint8), [0, 1, 2], None, "images.shape=(3, 2, 2)"),
        (U8.astype(np.float32), [0, 1, 2], None, "images.dtype=float32"),
        (U8.astype(np.int32) + 256, [0, 1, 2], None, "0-255"),
        (U8, [0, 1], None, "3 images and 2 labels"),
        (U8, [0.0, 1.0, 2.0], None, "labels.dtype=float64"),
        (U8, [0, -1, 2], None, "min label=-1"),
        (U8, [0, 1, 2], ["a", "b"], "class_names=['a', 'b']"),
        (U8, [0, 1, 1], ["a", "a"], "distinct"),
    ],
    ids=["rank", "float-images", "range", "count", "float-labels", "negative", "too-few-names", "duplicates"],
)
def test_load_arrays_errors(images, labels, class_names, fragment):
    with pytest.raises(ValueError) as exc_info:
        load_arrays(images, labels, class_names)
    assert_error_names(exc_info, fragment)


def test_split_validation_partitions_reproducibly(mini):
    train = mini[0]
    part, val = data.split_validation(train, 0.1, seed=5)
    assert (len(part), len(val)) == (900, 100)
    assert part.class_names == val.class_names == CIFAR10_CLASSES
    # Every image once: compare rows as bytes (JPEG-decoded pictures are all distinct).
    rows = lambda d: {img.tobytes() for img in d.images}  # noqa: E731
    assert rows(part).isdisjoint(rows(val)) and rows(part) | rows(val) == rows(train)
    again = data.split_validation(train, 0.1, seed=5)[1]
    np.testing.assert_array_equal(again.images, val.images)
    assert not np.array_equal(data.split_validation(train, 0.1, seed=6)[1].labels, val.labels)


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1, 0.0001, "0.1"])
def test_split_validation_rejects_bad_fractions(mini, fraction):
    with pytest.raises(ValueError) as exc_info:
        data.split_validation(mini[1], fraction)
    assert_error_names(exc_info, f"fraction={fraction!r}" if isinstance(fraction, str) else "fraction=")


# --------------------------------------------------------------------------- augmentation


class FixedRng:
    """Stands in for a numpy Generator: zero offsets, and every flip draw set to `flip_draw`."""

    def __init__(self, flip_draw):
        self.flip_draw = flip_draw

    def integers(self, low, high, size):
        return np.zeros(size, dtype=np.int64)

    def random(self, size):
        return np.full(size, self.flip_draw)


def distinct_images(n, shape=(8, 8, 1)):
    """Images whose pixels all differ and are nonzero, so a crop tells where it came from."""
    return np.arange(1, n * np.prod(shape) + 1, dtype=np.int64).reshape((n,) + shape)


def test_augmentation_keeps_shape_and_dtype(mini):
    batch = mini[1].images[:16]
    out = pad_crop_flip(batch, np.random.default_rng(0))
    assert out.shape == batch.shape and out.dtype == batch.dtype
    assert not np.array_equal(out, batch)


def test_no_pad_no_flip_is_identity():
    images = distinct_images(5)
    np.testing.assert_array_equal(pad_crop_flip(images, np.random.default_rng(0), pad=0, flip=False), images)
    np.testing.assert_array_equal(pad_crop_flip(images, FixedRng(flip_draw=0.9), pad=0), images)
    np.testing.assert_array_equal(pad_crop_flip(images, FixedRng(flip_draw=0.1), pad=0), images[:, :, ::-1])


def test_every_crop_is_a_window_of_the_zero_padded_image():
    images, pad = distinct_images(200), 4
    out = pad_crop_flip(images, np.random.default_rng(1), pad=pad)
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    seen = set()
    for i in range(len(images)):
        windows = np.lib.stride_tricks.sliding_window_view(padded[i], (8, 8, 1))[..., 0, :, :, :]
        for flipped in (False, True):
            candidates = windows[..., ::-1, :] if flipped else windows
            match = np.argwhere((candidates == out[i]).all(axis=(2, 3, 4)))
            if len(match):
                seen.add((*match[0], flipped))
                break
        else:
            pytest.fail(f"output {i} is not a window of its padded image")
    assert len(seen) > 100  # offsets in [0, 8]^2 and both flips all occur (162 possible)


def test_flips_happen_about_half_the_time():
    images = distinct_images(4000, shape=(1, 2, 1))
    out = pad_crop_flip(images, np.random.default_rng(2), pad=0)
    flipped = np.mean(out[:, 0, 0, 0] == images[:, 0, 1, 0])
    assert 0.45 < flipped < 0.55


def test_augmentation_is_reproducible_from_the_seed(mini):
    batch = mini[1].images[:64]
    first = pad_crop_flip(batch, np.random.default_rng(7))
    np.testing.assert_array_equal(first, pad_crop_flip(batch, np.random.default_rng(7)))
    np.testing.assert_array_equal(first, pad_crop_flip(batch, 7))
    assert not np.array_equal(first, pad_crop_flip(batch, np.random.default_rng(8)))


def test_augmentation_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"pad=-1"):
        pad_crop_flip(distinct_images(2), 0, pad=-1)
    with pytest.raises(ValueError, match=r"images.shape=\(8, 8, 1\)"):
        pad_crop_flip(distinct_images(1)[0], 0)


# --------------------------------------------------------------------------- batches


def numbered(n=103):
    """ImageData whose label i sits on the image filled with i % 256, to trace samples."""
    images = (np.arange(n) % 256).astype(np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 3), np.uint8)
    return ImageData(images, np.arange(n), None)


def epoch_labels(batches):
    return np.concatenate([batches[i][1] for i in range(len(batches))])


def all_batches(batches, epochs=2):
    """Every batch of `epochs` epochs, advancing the epoch in between as Keras does."""
    out = []
    for _ in range(epochs):
        out += [batches[i] for i in range(len(batches))]
        batches.on_epoch_end()
    return out


def test_each_epoch_covers_every_sample_once_in_a_new_order():
    batches = ArrayBatches(numbered(), batch_size=10, shuffle=True, seed=0)
    orders = []
    for _ in range(3):
        labels = epoch_labels(batches)
        np.testing.assert_array_equal(np.sort(labels), np.arange(103))
        orders.append(labels)
        batches.on_epoch_end()
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])
    assert batches.epoch == 3


def test_batches_are_reproducible_from_the_seed():
    def make(seed):
        return ArrayBatches(numbered(), batch_size=16, shuffle=True, augment=True, seed=seed)

    first = all_batches(make(4))
    for (x1, y1), (x2, y2) in zip(first, all_batches(make(4)), strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(epoch_labels(make(4)), epoch_labels(make(5)))
    replay = make(4)
    replay.epoch = 1  # replays epoch 1 exactly, e.g. after a resume
    np.testing.assert_array_equal(replay[2][0], first[len(replay) + 2][0])


def test_unshuffled_batches_keep_order_and_types():
    x, y = ArrayBatches(numbered(), batch_size=10)[1]
    assert x.dtype == np.float32 and y.dtype == np.int32 and x.shape == (10, 4, 4, 3)
    np.testing.assert_array_equal(y, np.arange(10, 20))
    np.testing.assert_array_equal(x[:, 0, 0, 0], np.arange(10, 20))


@pytest.mark.parametrize("drop_remainder, length, last", [(False, 11, 3), (True, 10, 10)])
def test_len_and_last_batch(drop_remainder, length, last):
    batches = ArrayBatches(numbered(), batch_size=10, drop_remainder=drop_remainder)
    assert len(batches) == length
    assert len(batches[length - 1][1]) == last
    with pytest.raises(IndexError):
        batches[length]


def test_preprocess_gets_the_float_batch_after_augmentation():
    seen = []

    def preprocess(x):
        seen.append(x.dtype)
        return (x - 127.5) / 127.5

    plain = ArrayBatches(numbered(), batch_size=8, augment=True, seed=1)
    normalized = ArrayBatches(numbered(), batch_size=8, augment=True, seed=1, preprocess=preprocess)
    np.testing.assert_allclose(normalized[3][0], (plain[3][0] - 127.5) / 127.5)
    assert seen == [np.float32]


def test_arrays_with_labels_are_accepted():
    data_ = numbered(20)
    x, y = ArrayBatches(data_.images, data_.labels, batch_size=20)[0]
    np.testing.assert_array_equal(y, data_.labels)


@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True])
def test_bad_batch_size(batch_size):
    with pytest.raises(ValueError) as exc_info:
        ArrayBatches(numbered(), batch_size=batch_size)
    assert_error_names(exc_info, f"batch_size={batch_size!r}")


def test_bad_batch_arguments():
    with pytest.raises(ValueError, match="batch_size=200"):
        ArrayBatches(numbered(), batch_size=200, drop_remainder=True)
    with pytest.raises(ValueError, match="labels=None"):
        ArrayBatches(numbered().images, batch_size=2)
    with pytest.raises(ValueError, match="augment="):
        ArrayBatches(numbered(), batch_size=2, augment="yes")
    with pytest.raises(ValueError, match="ImageData and labels"):
        ArrayBatches(numbered(), np.arange(103), batch_size=2)


def test_model_fit_advances_the_epoch(mini):
    import keras

    model = keras.Sequential(
        [keras.Input((32, 32, 3)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)]
    )
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    batches = ArrayBatches(
        mini[1], batch_size=50, shuffle=True, augment=True, seed=0, preprocess=lambda x: x / 255
    )
    history = model.fit(batches, epochs=2, shuffle=False, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()
    assert batches.epoch >= 2  # Keras 3 also calls on_epoch_end when fit starts


def test_data_identity_names_the_archive_by_its_content(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("RIR_KERAS_DATA", str(data_dir))
    archive = data_dir / "cifar10-png-mini.tar.gz"
    identity = data.data_identity("cifar10-png-mini")
    assert identity == {"file": "cifar10-png-mini.tar.gz", "sha256": hashlib.sha256(archive.read_bytes()).hexdigest()}
    copy = tmp_path / "elsewhere" / "cifar10-png-mini.tar.gz"  # the same data elsewhere: the same identity
    copy.parent.mkdir()
    copy.write_bytes(archive.read_bytes())
    assert data.data_identity(copy) == identity
    assert data.data_identity(str(data_dir / "cifar10-mini.tar.gz"))["sha256"] != identity["sha256"]  # JPEG twin
    assert data.data_identity(tmp_path / "elsewhere") == {"folder": "elsewhere"}
    assert data.data_identity("tfds:cifar100") == {"tfds": "cifar100"}
