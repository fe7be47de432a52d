"""Put this folder on PYTHONPATH to run Python as on the lent GPU machines: TensorFlow is not there.

Python imports ``sitecustomize`` at start-up; this one makes the path finder find no ``tensorflow``
(nor ``tensorflow_datasets``, ``tf_keras``, ``tf2onnx``), so ``import tensorflow`` raises
ModuleNotFoundError and ``importlib.util.find_spec("tensorflow")`` is None, as where it was never
installed. tests/test_no_tensorflow.py and tools/gpu/README.md use it.
"""
import importlib.machinery
import sys

HIDDEN = ("tensorflow", "tf_keras", "tf2onnx")


class _PathFinderWithoutTensorFlow(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        top = fullname.partition(".")[0]
        if top in HIDDEN or top.startswith("tensorflow_"):
            return None
        return super().find_spec(fullname, path, target)


sys.meta_path[:] = [_PathFinderWithoutTensorFlow if finder is importlib.machinery.PathFinder else finder
                    for finder in sys.meta_path]
