"""A run folder's ``backup/``: the last finished epoch, written so that a kill at any instant leaves a
complete one, and restored before ``fit`` continues.

`EpochBackup` (a callback) writes it after every epoch, `restore_backup` loads it into a compiled model.
Reading how far a backup got needs no Keras and lives with the rest of the run folder in
`rir_keras.runs` (`runs.backed_up_epochs`, `runs.backup_files`, the pointer's name `runs.BACKUP_POINTER`);
this module holds what needs the model. ``training.train`` uses both.
"""
import math
import os

import keras
from keras import ops

from rir_keras.atomic import atomic_output, require_space, write_json
from rir_keras.runs import BACKUP_POINTER, read_json


class EpochBackup(keras.callbacks.Callback):
    """Backs the model up after every epoch, in a way that survives a kill at any instant.

    Each epoch's weights, with the optimizer's state, go to a new file in ``folder``; only when it
    is complete does a small JSON file (`BACKUP_POINTER`), replaced atomically, point to it. A kill
    mid-write leaves the pointer on the previous, complete backup. `restore_backup` loads it before
    ``fit``, which then starts at ``initial_epoch``: public Keras API only (Keras' own
    ``BackupAndRestore`` overwrites its file in place, and a kill then leaves an unreadable backup).
    The files of the last ``keep`` epochs stay (the workers of a multi-worker run keep two, see
    `rir_keras.distribute`).
    """

    def __init__(self, folder, keep=1):
        super().__init__()
        self.folder = folder
        self.keep = keep

    def on_epoch_end(self, epoch, logs=None):
        if not math.isfinite(float((logs or {}).get("loss", 0.0))):
            return  # a diverged epoch (TerminateOnNaN stopped it): the last good backup stays
        os.makedirs(self.folder, exist_ok=True)
        name = f"weights-{epoch + 1}.weights.h5"
        require_space(self.folder, _backup_bytes(self.model), f"the backup of epoch {epoch + 1}")
        with atomic_output(os.path.join(self.folder, name), suffix=".weights.h5") as temporary:
            self.model.save_weights(temporary)
        write_json({"epoch": epoch + 1, "weights": name}, os.path.join(self.folder, BACKUP_POINTER))
        kept = {f"weights-{epoch + 1 - i}.weights.h5" for i in range(self.keep)}
        for old in os.listdir(self.folder):
            if old.startswith("weights-") and old not in kept:
                os.remove(os.path.join(self.folder, old))


def _backup_bytes(model):
    """About what `EpochBackup` writes for ``model`` (its weights and the optimizer's), at most: HDF5
    adds 1.3 to 1.5 KiB per variable (measured), 2 KiB are counted."""
    variables = list(model.weights) + list(model.optimizer.variables if model.optimizer is not None else [])
    return sum(ops.convert_to_numpy(v).nbytes + 2048 for v in variables) + 2**16


def restore_backup(model, folder, epochs=None):
    """Load the latest backup `EpochBackup` wrote in ``folder`` into the compiled ``model`` (weights
    and optimizer state); returns the epochs it holds, 0 where there is none. ``epochs``, if given,
    picks an earlier backup it kept (0: none)."""
    pointer = os.path.join(folder, BACKUP_POINTER)
    if not os.path.isfile(pointer) or epochs == 0:
        return 0
    backup = read_json(pointer)
    if epochs is not None and epochs != int(backup["epoch"]):
        backup = {"epoch": epochs, "weights": f"weights-{epochs}.weights.h5"}
        if not os.path.isfile(os.path.join(folder, backup["weights"])):
            raise ValueError(f"{folder} holds no backup of epoch {epochs}, which the other workers hold: start "
                             f"every worker over with restart=True. Received: backup={folder!r}")
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    model.load_weights(os.path.join(folder, backup["weights"]))
    return int(backup["epoch"])
