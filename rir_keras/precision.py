"""The number format training computes in: ``--precision`` and what ``auto`` picks on this machine.

``auto`` (the default of ``rir-keras train``, ``reproduce`` and ``tune``, and of `use`) picks by the
hardware the session runs on:

- a GPU whose tensor cores compute bfloat16 (CUDA compute capability 8.0 or more): mixed_bfloat16,
  which needs no loss scaling; one with float16 tensor cores only (7.x): mixed_float16; older or
  unknown: float32. A TPU: mixed_bfloat16.
- a CPU that computes bfloat16 natively (AVX512_BF16 or AMX): mixed_bfloat16, since bfloat16
  training was measured to reach float32's test accuracy (`CPU_BFLOAT16_ACCURACY_HOLDS`); every other
  CPU (where bfloat16 runs emulated, slower than float32): float32.

``RIR_KERAS_PRECISION`` (one of `POLICIES`), where set, is what ``auto`` means instead: a pin for a
whole environment, as ``KERAS_BACKEND`` pins the backend (the test suite pins float32, so that it
computes the same on every machine).

Precision is a property of the machine a session runs on, like its kernels, not of the run: a run
continued on another machine may compute in another format. ``sessions.jsonl`` records each
session's (`describe`), and run.json does not hold it (`rir_keras.runs.MACHINE_SETTINGS`). The
variables of a mixed-precision model are float32, so its weights load into a float32 model as any.
"""
import collections
import dataclasses
import os

from rir_keras import runs

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
PRECISION_ENV_VAR = "RIR_KERAS_PRECISION"  # where set, what ``auto`` means
CHOICES = ("auto",) + POLICIES
NATIVE_BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")
# Issue 33, point 3, measured: RiR-32, recipe `fast`, seed 0, official CIFAR-10, on a 2-core AMD EPYC
# with AVX512_BF16: 91.07% in float32, 90.74% in mixed_bfloat16 (-0.33 points; the campaigns' seeds of
# one model differ by 0.15-0.74 points), 1.37x faster (docs/results.md, "bfloat16 on a CPU").
CPU_BFLOAT16_ACCURACY_HOLDS = True


@dataclasses.dataclass(frozen=True)
class Choice:
    """A resolved precision: the Keras dtype ``policy``, what was ``requested``, and why."""

    policy: str
    requested: str
    reason: str


def resolve(precision="auto", devices=None, cpu=None, argument="precision", environ=None):
    """The `Choice` for ``precision`` (one of `CHOICES`) on this machine, or on the one described by
    ``devices`` (`rir_keras.runs.accelerators`' list; ``[]``: none) and ``cpu`` (`rir_keras.runs.cpu`'s
    dict); ``auto`` is `PRECISION_ENV_VAR` of ``environ`` (default ``os.environ``) where that is set.
    A one-line ValueError names ``argument`` (or the variable) for anything else."""
    if precision not in CHOICES:
        raise ValueError(f"{argument} must be one of {', '.join(CHOICES)}. Received: {argument}={precision!r}")
    if precision != "auto":
        return Choice(precision, precision, "asked for")
    pinned = (os.environ if environ is None else environ).get(PRECISION_ENV_VAR)
    if pinned:
        if pinned not in POLICIES:
            raise ValueError(f"{PRECISION_ENV_VAR} must be one of {', '.join(POLICIES)}. "
                             f"Received: {PRECISION_ENV_VAR}={pinned!r}")
        return Choice(pinned, "auto", f"{PRECISION_ENV_VAR}={pinned}")
    devices = runs.accelerators() if devices is None else devices
    if devices:
        policy, reason = _accelerator_policy(devices[0])
        return Choice(policy, "auto", reason)
    cpu = runs.cpu() if cpu is None else cpu
    native = [flag for flag in NATIVE_BFLOAT16_FLAGS if flag in cpu.get("flags", ())]
    if not native:
        return Choice("float32", "auto", f"CPU without native bfloat16 ({' or '.join(NATIVE_BFLOAT16_FLAGS)}): "
                                         "bfloat16 would run emulated")
    if not CPU_BFLOAT16_ACCURACY_HOLDS:
        return Choice("float32", "auto", f"CPU with native bfloat16 ({', '.join(native)}), but bfloat16 training "
                                         "is not yet measured to reach float32's accuracy (issue 33)")
    return Choice("mixed_bfloat16", "auto", f"CPU with native bfloat16 ({', '.join(native)})")


def _accelerator_policy(device):
    """``(policy, reason)`` on ``device``, a dict of `rir_keras.runs.accelerators`."""
    name, capability = device.get("name", "accelerator"), device.get("compute_capability")
    if device.get("platform") == "tpu":
        return "mixed_bfloat16", f"{name}: a TPU computes bfloat16"
    if capability is None:
        return "float32", f"{name}: compute capability unknown"
    if capability >= 8.0:
        return "mixed_bfloat16", f"{name} (compute capability {capability}): bfloat16 tensor cores, no loss scaling"
    if capability >= 7.0:
        return "mixed_float16", f"{name} (compute capability {capability}): float16 tensor cores, no bfloat16"
    return "float32", f"{name} (compute capability {capability}): no tensor cores"


_chosen = None  # the last Choice `use` set


def use(precision="auto", argument="precision"):
    """Resolve ``precision`` (`resolve`) and make it Keras' global dtype policy, for the models built
    after it; returns the `Choice`. The Python counterpart of ``--precision``."""
    import keras

    global _chosen
    _chosen = resolve(precision, argument=argument)
    keras.mixed_precision.set_global_policy(_chosen.policy)
    return _chosen


def describe(model):
    """What a session records of ``model``'s precision: its layers' dtype policy (the most common among
    those with weights: a loaded model's own policy is the global one), and how `use` chose it."""
    policies = [layer.dtype_policy.name for layer in model.layers if layer.weights] or [model.dtype_policy.name]
    policy = collections.Counter(policies).most_common(1)[0][0]
    if _chosen is not None and _chosen.policy == policy:
        return {"precision": policy, "precision_requested": _chosen.requested, "precision_reason": _chosen.reason}
    return {"precision": policy, "precision_requested": None, "precision_reason": "the model's dtype policy"}
