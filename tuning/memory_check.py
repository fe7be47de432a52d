"""Does memory stay flat across trials? A 10-trial grid search on a tiny model, with resident memory.

    python -m rir_keras.tuning.memory_check [--dataset PATH] [--directory DIR]

Runs the search `rir-keras tune` runs (same hypermodel, tuner and TensorBoard callback) over a
10-point grid (5 learning rates x 2 optimizers) of a tiny RiR (3 blocks of 2 layers, 8 channels)
on 64 training and 32 validation images of CIFAR-10 (JPEG copy), one epoch per trial. Prints
the resident set size (psutil) after each trial and the process's peak (``ru_maxrss``).
"""
import argparse
import os
import resource
import tempfile

import keras

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


def main(argv=None):
    default = os.path.join(os.environ.get("RIR_KERAS_DATA", "../shared/datasets/cifar10"), "cifar10-mini.tar.gz")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=default, help="a folder or .tar.gz of <split>/<class>/*.jpg")
    parser.add_argument("--directory", help="KerasTuner's folder; default: a new temporary folder")
    args = parser.parse_args(argv)
    directory = args.directory or tempfile.mkdtemp(prefix="rir_keras_memory_")
    print(f"memory check: {describe_devices()}; folder {directory}", flush=True)
    memory, peak = run(args.dataset, directory)
    print("| trial | resident memory after it (MiB) |\n| --- | ---: |")
    for trial_id, rss in memory:
        print(f"| {trial_id} | {rss / 2**20:.0f} |")
    print(f"\n{len(memory)} trials; peak resident memory {peak / 2**20:.0f} MiB; after trial {memory[0][0]}: "
          f"{memory[0][1] / 2**20:.0f} MiB, after trial {memory[-1][0]}: {memory[-1][1] / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
