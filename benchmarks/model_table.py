"""Print the markdown table of every registry model: constructor, depth, parameters, paper source.

    .venv/bin/python benchmarks/model_table.py
    .venv/bin/python benchmarks/model_table.py --cards   # docs/models.md's "Shipped weights (model cards)"
    .venv/bin/python benchmarks/model_table.py --cards --output docs/models.md   # ... written in place

``--cards`` prints, instead of the table, the section of docs/models.md on the shipped weights,
written from their manifest (`model_cards`); with ``--output``
it replaces that section of the file (from its heading to the next ``## `` heading) instead.

Parameters are counted on freshly built models (CIFAR input 32x32x3, 10 classes); accuracies are
the paper's reported figures (``rir_keras.applications.paper``), never measured here.
"""
import argparse
import textwrap

from rir_keras import recipes  # rir_keras first: it starts TensorFlow quietly
from rir_keras.applications import pretrained, registry, weights_store
from rir_keras.layers import RiRConv2D
from rir_keras import markdown

import keras  # noqa: E402  (after rir_keras, which picks the backend)
import numpy as np  # noqa: E402


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


def _percent(value):
    return f"{100 * value:.2f}"


def _wrap(text, indent=""):
    return textwrap.fill(text, 100, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)


def _recipe(name):
    """A recipe's name and its settings in words."""
    return f"`{name}` ({recipes.RECIPES[name].summary})" if name in recipes.RECIPES else (name or "hand-set")


def _training(training):
    """Where and how long an entry's run trained, in words."""
    if not training:
        return "unrecorded"
    where = " on ".join(filter(None, [" ".join(filter(None, [training.get("backend"), training.get("precision")])),
                                      training.get("machine")]))
    hours = f"{training['hours']} h of wall time" if "hours" in training else ""
    run = f"log in `{training['run']}`" if "run" in training else ""
    own = f"its own final evaluation there: {training['correct']:,} correct" if "correct" in training else ""
    return "; ".join(filter(None, [where, hours, run, own]))


def model_cards(store=None):
    """docs/models.md's section "Shipped weights (model cards)", written from the manifest of
    ``store`` (default: the package's, `rir_keras.applications.weights_store.STORE`)."""
    paragraphs = [
        "Written by `benchmarks/model_table.py --cards` from `applications/weights/manifest.json`; "
        "`tools/ship_weights.py RUN_FOLDER` ships a finished run of the training campaign "
        "(issue 14), seed 0's final epoch only: no weights are chosen by test accuracy.",
        "; ".join(f"{', '.join(f'`{registry.record(n).constructor.__name__}`' for n in weights_store.shipping(name))} "
                  f"take `weights=\"{name}\"` ({meaning['dataset']}, recipe "
                  f"{' or '.join(f'`{r}`' for r in meaning['recipes'])})" for name, meaning in weights_store.WEIGHTS_NAMES.items())
        + "; or `rir_keras.applications.pretrained.build(\"rir32\", \"cifar10\")`, which builds the model with its "
        "entry's options. `\"cifar10\"`, the default, and `\"cifar100\"` hold the best recipe's weights that have "
        "finished (the `long` recipe's where its run has finished, else the `fast` recipe's), each card says which, "
        "and on which data. The weights ship inside "
        "the package in `applications/weights/`. The file is "
        "checked against the SHA-256 of its manifest entry at every load (a corrupted or missing file "
        "raises ValueError). As in keras.applications, `include_top=True` needs the weights' "
        "classes, and `include_top=False` loads the body. Options that change the function "
        f"({', '.join(f'`{o}`' for o in weights_store.FUNCTION_OPTIONS)}) must equal the entry's; "
        f"{', '.join(f'`{o}`' for o in weights_store.TRAINING_OPTIONS)}, the name, pooling and input size are free. "
        "`include_preprocessing=False` gives the model without its normalization layer: feed it "
        "`preprocess_input(images, preprocessing)` with the entry's `preprocessing`.",
    ]
    shipped = weights_store.entries(store)
    if shipped:
        example = pretrained.spec(shipped[-1])
        constructor = registry.record(example.registry_name).constructor.__name__
        defaults = registry.record(example.registry_name).defaults
        different = "".join(f", {option}={getattr(example, option)!r}" for option in ("classes", "preprocessing")
                            if getattr(example, option) != defaults[option])  # CIFAR-100's
        paragraphs.append(
            f"```python\nfrom rir_keras.applications import {constructor}\n\n"
            f"model = {constructor}(weights=\"{shipped[-1]['weights']}\"{different})  # "
            f"{'x'.join(map(str, example.input_shape[:2]))} RGB images, pixel values 0-255, in; "
            f"{example.classes} class probabilities out\n```")
    waiting = {weights: [name for name in weights_store.shipping(weights) if weights_store.entry(name, weights, store) is None]
               for weights in weights_store.WEIGHTS_NAMES}
    if any(waiting.values()):
        paragraphs.append(
            f"**{'None has' if not shipped else 'Not all have'} shipped yet.** Still in training (see "
            "docs/results.md): " + "; ".join(f"`weights=\"{weights}\"` for {', '.join(f'`{n}`' for n in names)}"
                                            for weights, names in waiting.items() if names)
            + ". Until a model's weights ship, asking for them raises a ValueError saying its training campaign "
            "has not finished.")
    lines = ["## Shipped weights (model cards)", ""]
    for paragraph in paragraphs:
        lines += [paragraph if paragraph.startswith("```") else _wrap(paragraph), ""]
    for entry in shipped:
        model = pretrained.spec(entry)
        reported = registry.record(model.registry_name).cite(weights_store.WEIGHTS_NAMES[entry["weights"]]["source"])
        versus = f"; the paper reports {reported} on the original {weights_store.WEIGHTS_NAMES[entry['weights']]['dataset']}" \
            if reported else ""
        training = entry.get("training", {})
        lines += [
            f"### `{model.registry_name}`, `weights=\"{entry['weights']}\"`",
            "",
            markdown.table(("field", "value"), [
                ("top-1", f"**{_percent(entry['top1'])}%** ({entry['correct']:,} of {entry['test_images']:,} "
                          f"{entry['split']} images of {entry['dataset']}){versus}"),
                ("measured by", f"`{entry['command']}`"),
                ("with test-time flips", "not measured" if entry["top1_flip"] is None else
                 f"{_percent(entry['top1_flip'])}% ({entry['correct_flip']:,}; `{entry['command']} --tta flip`), "
                 "beside the single-view figure above"),
                ("measured on", f"{entry['machine']}; keras {entry['keras_version']}, {entry['backend']} "
                                f"{entry['backend_version']}; {entry['date']}"),
                ("recipe", f"{_recipe(entry['recipe'])}; seed {entry['seed']}, {entry['train_images']:,} "
                           f"{entry['train_split']} images; the last epoch's weights ({entry['epochs']} of {entry['epochs']})"),
                ("trained on", _training(training)),
                ("options", ", ".join(f"{key}={value!r}" for key, value in sorted(model.options.items())) or "defaults"),
                ("input", f"{'x'.join(map(str, model.input_shape))} images, {model.classes} classes"),
                ("parameters", f"{entry['parameters']:,} ({entry['trainable_parameters']:,} trainable)"),
                ("preprocessing", f"{model.preprocessing!r}, inside the model"),
                ("file", f"`{entry['file']}`, SHA-256 `{entry['sha256']}`"),
            ]),
            "",
        ]
    lines += ["Manifest entry fields (`rir_keras.applications.pretrained.ENTRY_FIELDS`):", ""]
    lines += [_wrap(f"- `{field}`: {meaning}", "  ") for field, (_, meaning) in weights_store.ENTRY_FIELDS.items()]
    return "\n".join(lines) + "\n"


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
        cards = model_cards()
        if args.output:
            replace_section(args.output, cards)
        else:
            print(cards, end="")
        return
    header = ("name", "constructor", "layers", "parameters", "trainable", "paper",
              "CIFAR-10 % (reported by the paper)", "CIFAR-100 % (reported by the paper)")
    print(markdown.table(header, rows()))


if __name__ == "__main__":
    main()
