"""Writing files atomically: a kill mid-write leaves the previous, complete file.

Every output of the package goes through `atomic_output`: it hands out a temporary path beside the
target, and only a complete write is renamed into place. `write_text`, `write_json` and
`save_model` are its common cases.
"""
import contextlib
import errno
import glob
import json
import os
import shutil
import uuid

_TEMPORARY = ".{name}.tmp-"  # the prefix of a target's temporary paths, beside it


def _temporary_path(path, suffix=""):
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f"{_TEMPORARY.format(name=name)}{uuid.uuid4().hex[:8]}{suffix}")


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def _put_in_place(temporary, path):
    """Move ``temporary`` to ``path``, replacing what is there. A file is replaced atomically; a folder
    is swapped by two renames (the old one moved aside first, restored if the second rename fails)."""
    if not os.path.isdir(path) or os.path.islink(path):
        os.replace(temporary, path)
        return
    aside = _temporary_path(path, ".old")
    os.rename(path, aside)
    try:
        os.rename(temporary, path)
    except BaseException:
        os.rename(aside, path)
        raise
    _remove(aside)


def remove_leftovers(path):
    """Remove the temporary paths a killed write of ``path`` left beside it."""
    folder, name = os.path.split(os.path.abspath(path))
    for leftover in glob.glob(os.path.join(glob.escape(folder), glob.escape(_TEMPORARY.format(name=name)) + "*")):
        _remove(leftover)


@contextlib.contextmanager
def atomic_output(path, overwrite=True, suffix=""):
    """Yield a temporary path beside ``path`` to write into (a file or a folder); on success it is
    renamed to ``path``.

    Refuses an existing ``path`` unless ``overwrite`` (FileExistsError). On any failure the
    temporary path is removed and whatever was at ``path`` is left untouched; what an earlier,
    killed write left behind is removed first.
    """
    path = os.fspath(path)
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(f"{path} already exists (pass overwrite=True to replace it). Received: path={path!r}")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except FileExistsError:  # a file stands where a folder of the path should be
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory: a file is in the way of", folder) from None
    remove_leftovers(path)
    temporary = _temporary_path(path, suffix)
    try:
        yield temporary
        _put_in_place(temporary, path)
    finally:
        _remove(temporary)


def disk_full(error):
    """Whether ``error`` says that a disk (or a quota) is full: an ``OSError`` with ``ENOSPC`` or
    ``EDQUOT``, or another library's error (h5py, TensorFlow) that carries the operating system's words."""
    return getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in str(error)


def require_space(folder, size, what):
    """Raise ``OSError(ENOSPC)`` unless ``folder``'s disk has ``size`` bytes free for ``what``: h5py, out
    of space mid-write, ends the process with a segmentation fault instead of raising."""
    free = shutil.disk_usage(folder).free
    if free < size:
        raise OSError(errno.ENOSPC, f"No space left on device ({what} needs about {size / 2**20:.1f} MiB, "
                                    f"{free / 2**20:.1f} MiB are free)", folder)


def write_text(text, path):
    """Write ``text`` to ``path`` atomically."""
    with atomic_output(path) as temporary, open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)


def write_json(data, path):
    """Write ``data`` as indented JSON with sorted keys, atomically."""
    write_text(json.dumps(data, indent=2, sort_keys=True), path)


def save_model(model, path):
    """Save a Keras ``model`` to ``path`` (.keras) atomically, with the mode of any new file (0644
    under the usual umask)."""
    with atomic_output(path, suffix=".keras") as temporary:
        model.save(temporary)
