"""Which optional packages this process has, and the one-line error of a feature that needs another.

rir_keras runs on either backend: the default install includes TensorFlow; without it (``pip install
--no-deps`` plus the core requirements and ``jax``, as on the lent GPU machines) JAX is the backend.
Training, resuming, ``reproduce``, ``tune``, ``analyze``, data from folders and archives and the
``.keras`` export need no TensorFlow; a SavedModel or ONNX export, tensorflow-datasets names and
TensorBoard logs do. A feature that needs what this process lacks raises `MissingDependency`, whose
message is one line naming the package and how to get it (``rir-keras`` prints it as its error).

This module imports nothing but the standard library: ``rir_keras/__init__.py`` calls `choose_backend`
and `prefer_onednn` before Keras is imported.
"""
import contextlib
import importlib.util
import json
import os
import re
import sys
import tempfile

BACKEND_VARIABLE = "KERAS_BACKEND"
ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
LOG_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"  # TensorFlow's C++ log: 0 all, 1 no INFO, 2 no WARNING, 3 no ERROR
DEFAULT_LOG_LEVEL = "3"
# A line of the C++ log (absl's format: severity, date, time, thread, file:line]) and its severities.
_LOG_LINE = re.compile(r"^(?:WARNING: All log messages before absl::InitializeLog|([IWEF])\d{4} \d\d:\d\d:\d\d\.)")
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}


class MissingDependency(ImportError):
    """A feature needs a package (or a Keras backend) this process lacks; the message, one line, says
    which and how to get it."""


def installed(module):
    """Whether ``module`` can be found (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def configured_backend():
    """The backend Keras will take: ``KERAS_BACKEND``, else the one in Keras' config file, else Keras'
    default, ``"tensorflow"``."""
    if os.environ.get(BACKEND_VARIABLE):
        return os.environ[BACKEND_VARIABLE]
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json"), encoding="utf-8") as handle:
            return json.load(handle).get("backend") or "tensorflow"
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def choose_backend():
    """Make JAX Keras' backend where TensorFlow, Keras' default, is not installed and JAX is (a JAX-only
    install, e.g. a GPU machine with JAX and CUDA), unless a backend was chosen (``KERAS_BACKEND``) or
    Keras is already imported. With neither installed, a `MissingDependency` says what to install."""
    if os.environ.get(BACKEND_VARIABLE) or "keras" in sys.modules:
        return
    if configured_backend() != "tensorflow" or installed("tensorflow"):
        return
    if not installed("jax"):
        raise MissingDependency("rir_keras needs a Keras backend and neither TensorFlow nor JAX is installed: "
                                "pip install tensorflow (or jax)")
    os.environ[BACKEND_VARIABLE] = "jax"


def prefer_onednn():
    """Turn on TensorFlow's oneDNN CPU kernels, unless ``TF_ENABLE_ONEDNN_OPTS`` says otherwise or
    TensorFlow is already imported (the variable is read once, at its import).

    TensorFlow turns them on by itself only on CPUs with AVX512-class features; on others (an AVX2
    AMD EPYC, for one) its default kernels train RiR-32 about 1.7 times slower (docs/benchmarks.md, section 4).
    The results are the same to float rounding. ``TF_ENABLE_ONEDNN_OPTS=0`` keeps the default kernels.
    Where TensorFlow came first and left them off, a warning says so (once, at import).
    """
    if "tensorflow" not in sys.modules:
        os.environ.setdefault(ONEDNN_VARIABLE, "1")
    elif ONEDNN_VARIABLE not in os.environ and not onednn_by_default():
        import warnings

        warnings.warn("TensorFlow was imported before rir_keras, with its oneDNN CPU kernels off (TensorFlow turns "
                      "them on only on CPUs with AVX512-class features): training runs about 1.7 times slower. "
                      "Import rir_keras before keras or tensorflow, or set TF_ENABLE_ONEDNN_OPTS=1 (=0 to keep "
                      "them off) before Python starts.", stacklevel=3)


@contextlib.contextmanager
def quiet_tensorflow_startup():
    """Keep TensorFlow's C++ log to what ``TF_CPP_MIN_LOG_LEVEL`` asks for, by default (3) none of it.

    Run around the first import of Keras (which loads TensorFlow). The variable defaults to 3 before
    TensorFlow reads it, which hides its log from then on (``failed call to cuInit`` on a machine
    without a GPU is an ERROR line). The lines TensorFlow writes while it loads come before its log
    reads the variable (absl's "All log messages before absl::InitializeLog() ...", oneDNN,
    ``cudart_stub``), so they are caught here and dropped by the same rule; anything else written
    meanwhile (Python's warnings) is passed on. ``TF_CPP_MIN_LOG_LEVEL=0`` shows it all.
    """
    level = os.environ.setdefault(LOG_LEVEL_VARIABLE, DEFAULT_LOG_LEVEL)
    if "tensorflow" in sys.modules or not level.isdigit() or int(level) == 0:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no standard error to catch
        yield
        return
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            os.write(2, _kept_log_lines(caught.read().decode(errors="replace"), int(level)).encode())


def _kept_log_lines(text, level):
    """``text`` less the C++ log lines below ``level`` (a dropped line's continuation lines go too)."""
    kept, dropping = [], False
    for line in text.splitlines(keepends=True):
        match = _LOG_LINE.match(line)
        if match:
            dropping = match.group(1) is None or _SEVERITY[match.group(1)] < level
        if not dropping:
            kept.append(line)
    return "".join(kept)


ONEDNN_CPU_FLAGS = {"avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16"}


def onednn_by_default():
    """Whether TensorFlow turns oneDNN on by itself here: on x86 CPUs with any of `ONEDNN_CPU_FLAGS`
    (as TensorFlow's ``IsMKLEnabled`` decides), and on every other CPU we cannot read (assumed: no warning)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), None)
    except OSError:
        return True
    return flags is None or bool(ONEDNN_CPU_FLAGS & set(flags))


def require_tensorflow(what, instead=""):
    """Raise `MissingDependency` unless TensorFlow imports and is Keras' backend. ``what`` names the
    feature ("a SavedModel export"); ``instead``, if given, what works without TensorFlow."""
    import keras

    tail = f"; {instead}" if instead else ""
    try:
        import tensorflow  # noqa: F401
    except ImportError as error:
        raise MissingDependency(f"{what} needs TensorFlow, which this process cannot import ({error}): pip install "
                                f"'rir_keras[tensorflow]' and run with KERAS_BACKEND=tensorflow{tail}") from None
    if keras.backend.backend() != "tensorflow":
        raise MissingDependency(f"{what} needs TensorFlow as Keras' backend: run with KERAS_BACKEND=tensorflow "
                                f"(now {keras.backend.backend()!r}){tail}")
