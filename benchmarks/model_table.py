"""Print the markdown table of every registry model: constructor, depth, parameters, paper source.

    .venv/bin/python benchmarks/model_table.py
    .venv/bin/python benchmarks/model_table.py --cards   # docs/models.md's "Shipped weights (model cards)"

``--cards`` prints, instead of the table, the section of docs/models.md on the shipped weights,
written from their manifest (``rir_keras.applications.pretrained.model_cards``).

Parameters are counted on freshly built models (CIFAR input 32x32x3, 10 classes); accuracies are
the paper's reported figures (``rir_keras.applications.paper``), never measured here.
"""
import argparse
import functools
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from rir_keras.applications import pretrained, registry  # noqa: E402
from rir_keras.applications.paper import cite  # noqa: E402
from rir_keras.layers import RiRConv2D  # noqa: E402
from rir_keras.reporting import markdown_table  # noqa: E402

SOURCES = {  # the paper's experiment each group of the registry comes from
    "32": "Table 1: the four 32-layer architectures (Fig. 2)",
    "18-wide": "Tables 2 and 3: 18-layer + wide, CIFAR-10 and CIFAR-100",
    "sweep": "Table 4: blocks x layers per block, 32-layer widths",
    "all-cnn": "Table 5: ALL-CNN-C + BN, standard vs ResNet Init",
    "forget": "Table 6: forget gates",
}


def source(name):
    for table, members in registry.TABLES.items():
        if name in members:
            return SOURCES[table]
    return "forget gates on the 18-layer wide networks (not in the paper's tables)" if name.endswith("_forget") else ""


def call(constructor):
    """The registry entry written as a constructor call, e.g. ``RiR32(forget_gate=True)``."""
    if isinstance(constructor, functools.partial):
        arguments = ", ".join(f"{key}={value!r}" for key, value in constructor.keywords.items() if key != "name")
        return f"{constructor.func.__name__}({arguments})"
    return f"{constructor.__name__}()"


def depth(model):
    """Weight layers along the main path: convolutions (generalized or plain) and dense layers."""
    return sum(isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense, RiRConv2D)) for layer in model.layers)


def rows():
    order = [name for members in registry.TABLES.values() for name in members]
    order += [name for name in registry.names() if name not in order]
    for name in order:
        model = registry.build(name)
        trainable = sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
        yield (f"`{name}`", f"`{call(registry.get(name))}`", str(depth(model)), f"{model.count_params():,}",
               f"{trainable:,}", source(name), cite("cifar10", name), cite("cifar100", name))
        keras.backend.clear_session()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cards", action="store_true",
                        help="print the model cards of the shipped weights (from applications/weights/manifest.json)")
    if parser.parse_args(argv).cards:
        print(pretrained.model_cards(), end="")
        return
    header = ("name", "constructor", "layers", "parameters", "trainable", "paper",
              "CIFAR-10 % (reported by the paper)", "CIFAR-100 % (reported by the paper)")
    print(markdown_table(header, rows()))


if __name__ == "__main__":
    main()
