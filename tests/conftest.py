"""Shared test settings. Data comes from RIR_KERAS_DATA (default: ../shared/datasets/cifar10), never a download."""
import importlib.util
import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# `--precision auto` means float32 in every test and every process a test starts, whatever this CPU
# computes natively: the suite computes the same on every machine (tests/test_precision.py tests auto).
os.environ["RIR_KERAS_PRECISION"] = "float32"

import rir_keras  # noqa: E402,F401 (before any test imports Keras: TensorFlow's CPU kernels as a user gets them)

REPO = pathlib.Path(__file__).resolve().parents[1]


def pytest_configure(config):
    # TensorFlow's tensors predate numpy 2's `copy` keyword; the warning is TensorFlow's, not ours.
    config.addinivalue_line("filterwarnings", "ignore:__array__ implementation doesn't accept a copy keyword")


def load_script(relative_path):
    """The module of a script of this repository that is not part of the package (tools/, benchmarks/)."""
    path = REPO / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def data_dir():
    """The folder holding the CIFAR-10 archives: tests read the lossless mini (cifar10-png-mini.tar.gz);
    the data tests also its JPEG twin (cifar10-mini.tar.gz), the same 1,200 images."""
    path = pathlib.Path(os.environ.get("RIR_KERAS_DATA", REPO.parent / "shared" / "datasets" / "cifar10"))
    if not (path / "cifar10-png-mini.tar.gz").is_file():
        pytest.fail(f"CIFAR-10 (cifar10-png-mini.tar.gz) not found: set RIR_KERAS_DATA. Looked in {path}")
    return path
