#!/usr/bin/env python3
"""Training throughput of registry models on this machine's accelerator (the runner's `bench` stage).

    python tools/gpu/throughput.py --output DIR [--models rir32 resnet32 ...] [--precisions float32 mixed_bfloat16]

Each model is compiled as `rir-keras train` compiles it (the paper recipe's SGD and schedule, XLA),
then fitted on random raw images held in host memory (so each step includes the copy to the
device, as in training), one epoch of ``--steps`` batches to compile and warm up, then ``--repeats``
timed epochs; images/s is the batches' images over the median epoch time. One model at a time, so
the accelerator is not shared. Writes ``DIR/throughput-<time>.json`` and ``.md`` (with each RiR
model's time per image over its ResNet's of the same family and precision) and prints the table.
"""
import argparse
import datetime
import json
import os
import statistics
import sys
import time


def measure(name, precision, batch_size, steps, repeats, width):
    import keras
    import numpy as np

    from rir_keras import recipes, training
    from rir_keras.applications import registry

    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(0)
    options = {} if width == 1 else {"width_multiplier": width}
    model = registry.build(name, input_shape=(32, 32, 3), classes=10, **options)
    training.compile_model(model, recipes.get("paper").config(), steps)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (steps * batch_size, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, 10, steps * batch_size).astype("int32")
    fit = dict(batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
    start = time.perf_counter()
    model.fit(images, labels, **fit)
    warm_up = time.perf_counter() - start
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.fit(images, labels, **fit)
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    keras.backend.clear_session()
    return {"model": name, "precision": precision, "parameters": model.count_params(),
            "images_per_second": steps * batch_size / median, "ms_per_step": 1000 * median / steps,
            "first_epoch_seconds": warm_up, "epoch_seconds": seconds}


def ratio_rows(rows):
    """Each RiR model's time per image over the ResNet's of its family and precision."""
    by_key = {(row["model"], row["precision"]): row for row in rows}
    ratios = {}
    for (model, precision), row in by_key.items():
        if model.startswith("rir"):
            peer = by_key.get(("resnet" + model[len("rir"):], precision))
            if peer:
                ratios[(model, precision)] = peer["images_per_second"] / row["images_per_second"]
    return ratios


def markdown(report):
    ratios = ratio_rows(report["rows"])
    lines = [f"Training throughput on {report['machine']} (Keras {report['keras']}, {report['backend']} "
             f"{report['jax']}), batch {report['batch_size']}, {report['steps']} steps per timed epoch, median of "
             f"{report['repeats']}; {report['date']}.", "",
             "| model | precision | parameters | images/s | ms/step | time per image vs ResNet |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for row in report["rows"]:
        ratio = ratios.get((row["model"], row["precision"]))
        lines.append(f"| {row['model']} | {row['precision']} | {row['parameters']:,} | "
                     f"{row['images_per_second']:,.0f} | {row['ms_per_step']:.1f} | "
                     f"{'' if ratio is None else f'{ratio:.3f}'} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", required=True, help="folder for throughput-<time>.json and .md")
    parser.add_argument("--models", nargs="+", default=["rir32", "resnet32", "resnet_init32", "cnn32"])
    parser.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--width-multiplier", type=float, default=1.0)
    args = parser.parse_args(argv)

    import jax
    import keras

    from rir_keras.runs import machine

    rows = []
    for precision in args.precisions:
        for name in args.models:
            row = measure(name, precision, args.batch_size, args.steps, args.repeats, args.width_multiplier)
            rows.append(row)
            print(f"{name} {precision}: {row['images_per_second']:,.0f} images/s ({row['ms_per_step']:.1f} ms/step; "
                  f"first epoch {row['first_epoch_seconds']:.1f} s)", flush=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    report = {"date": now.isoformat(timespec="seconds"), "machine": machine(), "backend": keras.backend.backend(),
              "keras": keras.__version__, "jax": jax.__version__, "batch_size": args.batch_size, "steps": args.steps,
              "repeats": args.repeats, "width_multiplier": args.width_multiplier, "rows": rows}
    os.makedirs(args.output, exist_ok=True)
    stem = os.path.join(args.output, "throughput-" + now.strftime("%Y%m%d-%H%M%S"))
    with open(stem + ".json", "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    with open(stem + ".md", "w", encoding="utf-8") as handle:
        handle.write(markdown(report))
    print(markdown(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
