"""Every use of KerasTuner's private API by rir_keras.tuning, in one place.

KerasTuner 1.4 exports no way to do what these do. Each one says which KerasTuner bug or limit it
works around, with the keras-team/keras-tuner issue where there is one. ``PRIVATE_NAMES`` lists
every private name used here; tests/test_tuning_internals.py checks that the installed KerasTuner
still has each of them (this module was written against ``CHECKED_VERSION``) and that no other
module of the package reaches into KerasTuner's private API, so an upgrade that changes what is
used here fails that test, naming the name, instead of failing in the middle of a search.
"""
import json
import os
import time
from concurrent import futures

import grpc
import keras_tuner
from keras_tuner.src import protos
from keras_tuner.src.distribute import oracle_chief
from keras_tuner.src.distribute import utils as distribute_utils

from rir_keras import atomic

CHECKED_VERSION = "1.4.8"
# Where each private name lives: a module and its names, or a class and the members its instances
# have (attributes set in __init__ included).
PRIVATE_NAMES = {
    "keras_tuner.src.protos": ("get_service_grpc",),
    "keras_tuner.src.distribute.utils": ("has_chief_oracle", "is_chief_oracle"),
    "keras_tuner.src.distribute.oracle_chief": ("OracleServicer", "exit_chief"),
    "keras_tuner.src.distribute.oracle_chief.OracleServicer": ("stop_triggered",),
    "keras_tuner.src.distribute.oracle_client.OracleClient": ("stub",),
    "keras_tuner.Oracle": ("_retry_queue", "_get_oracle_fname", "_get_trial_dir", "_save_trial"),
    "keras_tuner.Tuner": ("_is_worker", "_get_tuner_fname", "_get_checkpoint_fname"),
}
RETRY_SECONDS = 1.0
# A worker whose chief went away tries to reconnect at most this often (gRPC's default backs off to
# 120 s, so a worker could stay away from a restarted chief for two minutes).
RECONNECT_MILLISECONDS = 2000


# --- which process is which ----------------------------------------------------------------------

def distributed():
    """Whether this process takes part in a distributed search (``KERASTUNER_ORACLE_IP`` set).
    KerasTuner's own rule, which also checks the other two variables; it has no public name."""
    return distribute_utils.has_chief_oracle()


def is_chief():
    return distribute_utils.is_chief_oracle()


# --- state files, written atomically -------------------------------------------------------------

class AtomicOracleFiles:
    """Oracle mixin: ``oracle.json`` and each ``trial.json`` go through a temporary file renamed into
    place. KerasTuner writes them in place, so a kill mid-write leaves a truncated file that the next
    run cannot reload (no upstream issue found); it has no public hook for how they are written."""

    def save(self):
        atomic.write_text(json.dumps(self.get_state()), self._get_oracle_fname())

    def _save_trial(self, trial):
        atomic.write_text(json.dumps(trial.get_state()),
                             os.path.join(self._get_trial_dir(trial.trial_id), "trial.json"))


def save_tuner(tuner):
    """``Tuner.save`` with the same atomic writes: the oracle's state where this process holds it
    (not on a worker), then the tuner's own file."""
    if not tuner._is_worker():
        tuner.oracle.save()
    atomic.write_text(json.dumps(tuner.get_state()), tuner._get_tuner_fname())


def checkpoint_file(tuner, trial_id):
    """Where ``tuner`` keeps a trial's best-epoch weights. KerasTuner reads them only through
    ``load_model``, which needs the hypermodel; `write_results` copies them into best.weights.h5."""
    return tuner._get_checkpoint_fname(trial_id)


# --- the retry queue ----------------------------------------------------------------------------

def retry_queue(oracle):
    """The ids of the trials ``oracle`` hands out again before any new one (``create_trial`` pops them).
    KerasTuner fills it with the trials that failed and, on reload, with those that were running; it
    has no public way to send back the trial of a lost worker (it has no notion of one: its chief
    waits for that worker forever) or a trial a kill left with no tuner."""
    return oracle._retry_queue


def keep_running_trials(oracle, ongoing):
    """Undo what KerasTuner's ``Oracle.reload`` does to the trials that were running: it sends every
    one to the retry queue, so a chief restarted while its workers still train them hands each out a
    second time. ``ongoing`` (``{tuner_id: trial}``, as reloaded) goes back to its tuners."""
    queue = retry_queue(oracle)
    for tuner_id, trial in ongoing.items():
        if trial.trial_id in queue:
            queue.remove(trial.trial_id)
        oracle.ongoing_trials[tuner_id] = trial


# --- the chief's service ------------------------------------------------------------------------

def start_chief(oracle, address):
    """Serve ``oracle`` to the workers on ``address``; returns ``(server, servicer)``, started.

    KerasTuner's own chief loop (``start_server``) never returns before the search is over,
    checks only every 20 s whether it is (keras-team/keras-tuner#254, #645) and has no room for
    anything else, such as looking for lost workers; this starts the same service and leaves the
    loop to the caller, with `search_over`.
    """
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    if not server.add_insecure_port(address):
        raise ValueError(f"the chief cannot listen on {address} (port taken?). "
                           f"Received: KERASTUNER_ORACLE_IP:KERASTUNER_ORACLE_PORT={address!r}")
    server.start()
    return server, servicer


def search_over(servicer, oracle):
    """KerasTuner's test of a finished search: a worker was told to stop, no trial runs, and every
    worker has been told to stop."""
    return servicer.stop_triggered and oracle_chief.exit_chief(oracle)


# --- the worker's calls to its chief -------------------------------------------------------------

class ChiefLost(keras_tuner.errors.FatalRuntimeError):
    """A worker's chief did not answer in time, or failed on a call: one line, no gRPC traceback."""


def wait_for_chief(client, seconds):
    """Make the calls of a worker (``client``: KerasTuner's ``OracleClient``) to its chief patient.

    KerasTuner sends each call with ``wait_for_ready`` and a fixed one-hour deadline
    (keras-team/keras-tuner#990), lets a call cut off by a chief that died fail at once, and raises
    gRPC's error, traceback and all, for a lost chief or an exception on the chief's side
    (keras-team/keras-tuner#915). Here each call waits up to ``seconds`` in all, one cut off is sent
    again (a restarted chief answers it; `ResumableGridSearchOracle` takes every call twice without
    harm), the channel reconnects at least every few seconds, and what fails raises `ChiefLost`.
    """
    address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
    channel = grpc.insecure_channel(address, options=[("grpc.max_reconnect_backoff_ms", RECONNECT_MILLISECONDS)])
    client.stub = PatientStub(protos.get_service_grpc().OracleStub(channel), seconds, address)


class PatientStub:
    """A gRPC stub whose calls wait up to ``seconds`` for the chief, sending again any call cut off."""

    def __init__(self, stub, seconds, address):
        self.stub = stub
        self.seconds = seconds
        self.address = address

    def __getattr__(self, name):
        call = getattr(self.stub, name)

        def patient(request, **kwargs):
            deadline = time.monotonic() + self.seconds
            while True:
                kwargs["timeout"] = max(deadline - time.monotonic(), 0.001)
                try:
                    return call(request, **kwargs)
                except grpc.RpcError as error:
                    if error.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() + RETRY_SECONDS < deadline:
                        time.sleep(RETRY_SECONDS)  # cut off by a chief that went away: send it again
                        continue
                    raise ChiefLost(self.describe(name, error)) from None

        return patient

    def describe(self, call, error):
        if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return (f"no answer from the chief at {self.address} to {call} for {self.seconds:g} s "
                    f"(gRPC {error.code().name}); start the chief again, then this worker")
        details = " ".join(str(error.details()).split())
        return f"the chief at {self.address} failed on {call} (gRPC {error.code().name}): {details}"
