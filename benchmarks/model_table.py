"""Print the markdown table of every registry model: constructor, depth, parameters, paper source.

    .venv/bin/python benchmarks/model_table.py
    .venv/bin/python benchmarks/model_table.py --cards   # docs/models.md's "Shipped weights (model cards)"
    .venv/bin/python benchmarks/model_table.py --cards --output docs/models.md   # ... written in place

``--cards`` prints, instead of the table, the section of docs/models.md on the shipped weights,
written from their manifest (``rir_keras.applications.pretrained.model_cards``); with ``--output``
it replaces that section of the file (from its heading to the next ``## `` heading) instead.

Parameters are counted on freshly built models (CIFAR input 32x32x3, 10 classes); accuracies are
the paper's reported figures (``rir_keras.applications.paper``), never measured here.
"""
import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from rir_keras.applications import pretrained, registry  # noqa: E402
from rir_keras.layers import RiRConv2D  # noqa: E402
from rir_keras.reporting import markdown_table  # noqa: E402


def depth(model):
    """Weight layers along the main path: convolutions (generalized or plain) and dense layers."""
    return sum(isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense, RiRConv2D)) for layer in model.layers)


def rows():
    grouped = [r for key in registry.GROUPS for r in registry.RECORDS.values() if r.group == key]
    for record in grouped + [r for r in registry.RECORDS.values() if r.group is None]:
        model = record.build()
        trainable = sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
        yield (f"`{record.name}`", f"`{record.call()}`", str(depth(model)), f"{model.count_params():,}",
               f"{trainable:,}", record.source, record.cite("cifar10"), record.cite("cifar100"))
        keras.backend.clear_session()


def replace_section(path, section):
    """Put ``section`` (markdown starting with its ``## `` heading) in place of the file's section of
    that heading, which runs to the next ``## `` heading or the end."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    heading = section.split("\n", 1)[0]
    start = text.find(heading + "\n")
    if start < 0:
        raise SystemExit(f"{path} has no line {heading!r} to replace. Received: --output={path}")
    end = text.find("\n## ", start + len(heading))
    rest = "" if end < 0 else text[end + 1:]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text[:start] + section + ("\n" + rest if rest else ""))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cards", action="store_true",
                        help="print the model cards of the shipped weights (from applications/weights/manifest.json)")
    parser.add_argument("--output", help="with --cards: the markdown file whose model-cards section to replace")
    args = parser.parse_args(argv)
    if args.output and not args.cards:
        parser.error(f"--output goes with --cards. Received: --output={args.output}")
    if args.cards:
        cards = pretrained.model_cards()
        if args.output:
            replace_section(args.output, cards)
        else:
            print(cards, end="")
        return
    header = ("name", "constructor", "layers", "parameters", "trainable", "paper",
              "CIFAR-10 % (reported by the paper)", "CIFAR-100 % (reported by the paper)")
    print(markdown_table(header, rows()))


if __name__ == "__main__":
    main()
