"""Does memory stay flat across trials? A 10-trial grid search on a tiny model, with resident memory.

    python -m rir_keras.tuning.memory_check [--dataset PATH] [--directory DIR]

Runs the search `rir-keras tune` runs (same hypermodel, tuner and TensorBoard callback) over a
10-point grid (5 learning rates x 2 optimizers) of a tiny RiR (3 blocks of 2 layers, 8 channels)
on 64 training and 32 validation images of the CIFAR-10 mini set (lossless PNG), one epoch per trial. Prints
the resident set size (psutil) after each trial and the process's peak (``ru_maxrss``).

``--control`` runs the same loop without our code or KerasTuner: a plain Keras CNN (Conv2D,
BatchNormalization, ReLU) built, compiled and fitted 10 times on the same images, with
``keras.backend.clear_session()`` before each, to tell growth of ours from growth of the backend.
"""
import argparse
import os
import resource
import tempfile

import keras
import numpy as np
import psutil

from rir_keras import training
from rir_keras.data import load_split
from rir_keras.tuning.hypermodel import RiRHyperModel
from rir_keras.tuning.search import GridSearch, describe_devices

GRID = {"learning_rate": [0.1, 0.05, 0.02, 0.01, 0.005], "optimizer": ["sgd", "adam"]}
MODEL, MODEL_OPTIONS = "rir_3x10", {"layers_per_block": 2, "widths": [8, 8, 8]}


def run(dataset, directory):
    train = load_split(dataset, "train").subset(slice(0, 64))
    test = load_split(dataset, "test").subset(slice(0, 32))
    config = training.TrainConfig(epochs=1, batch_size=32, jit_compile=False)
    hypermodel = RiRHyperModel(MODEL, GRID, train, config, MODEL_OPTIONS)
    tuner = GridSearch(hypermodel, directory=directory, project_name="memory_check")
    callbacks = [keras.callbacks.TensorBoard(os.path.join(directory, "tensorboard"))] if training.tensorboard_available() else []
    tuner.search(train, test, callbacks=callbacks, verbose=0)
    return tuner.memory, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def control(dataset, trials=10):
    """Resident memory after each of ``trials`` plain-Keras fits (no rir_keras model, no tuner)."""
    train = load_split(dataset, "train").subset(slice(0, 64))
    images, labels = train.images.astype("float32") / 255.0, train.labels
    memory = []
    for trial in range(trials):
        keras.backend.clear_session()
        layers = [keras.Input(images.shape[1:])]
        for _ in range(6):
            layers += [keras.layers.Conv2D(8, 3, padding="same"), keras.layers.BatchNormalization(),
                       keras.layers.ReLU()]
        layers += [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(int(np.max(labels)) + 1)]
        model = keras.Sequential(layers)
        model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=False)
        model.fit(images, labels, batch_size=32, epochs=1, verbose=0)
        memory.append((f"plain {trial}", psutil.Process().memory_info().rss))
    return memory, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main(argv=None):
    default = os.path.join(os.environ.get("RIR_KERAS_DATA", "../shared/datasets/cifar10"), "cifar10-png-mini.tar.gz")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=default, help="a folder or .tar.gz of <split>/<class>/<image>")
    parser.add_argument("--directory", help="KerasTuner's folder; default: a new temporary folder")
    parser.add_argument("--control", action="store_true",
                        help="fit a plain Keras CNN 10 times instead (no rir_keras model, no tuner)")
    args = parser.parse_args(argv)
    if args.control:
        print(f"memory check, control: plain Keras CNN; {describe_devices()}", flush=True)
        report(*control(args.dataset))
        return
    directory = args.directory or tempfile.mkdtemp(prefix="rir_keras_memory_")
    print(f"memory check: {describe_devices()}; folder {directory}", flush=True)
    report(*run(args.dataset, directory))


def report(memory, peak):
    print("| trial | resident memory after it (MiB) |\n| --- | ---: |")
    for trial_id, rss in memory:
        print(f"| {trial_id} | {rss / 2**20:.0f} |")
    print(f"\n{len(memory)} trials; peak resident memory {peak / 2**20:.0f} MiB; after trial {memory[0][0]}: "
          f"{memory[0][1] / 2**20:.0f} MiB, after trial {memory[-1][0]}: {memory[-1][1] / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
