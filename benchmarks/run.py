"""Benchmarks of rir_keras on CPU, written as markdown (docs/benchmarks.md).

    python benchmarks/run.py --output docs/benchmarks.md                 # every section (~10 min)
    python benchmarks/run.py --sections layers --output docs/benchmarks.md  # one section

Sections (each runnable alone; a run rewrites only its own sections of the output file):

- layers:  the paper's "no computational overhead" claim: RiRConv2D ("init", "constant",
           "shortcut") against Conv2D + BatchNorm + ReLU, forward and training step, compiled.
- models:  training images/second of RiR32, ResNet32 and CNN32 on the TensorFlow and JAX backends,
           and the peer: a plain-PyTorch ResNet-32 on the same batch.
- export:  inference latency of an exported SavedModel at batch 1 and 128.
- profile: what makes the default path fast: each speed-up undone in turn, threads, XLA, mixed_bfloat16
           (where the CPU computes bfloat16), the data pipeline, time per op type.
- accuracy: minutes to 85%, 90% and 92% test accuracy of each campaign run, read from the campaigns' logs.

Each framework runs in its own worker process (worker.py); variants compared with each other are
timed in turns within one run (timing.py), so the ratios hold on a shared, noisy machine.
"""
import argparse
import contextlib
import datetime
import importlib.metadata
import importlib.util
import os
import platform
import re
import shlex
import statistics
import sys
import tempfile
import time

import quiet
from timing import Job, Worker, interleave, median, ratio_text, ratios

from rir_keras import precision, runs
from rir_keras.markdown import table

SECTIONS = ("layers", "models", "export", "profile", "accuracy")
TIMED = ("layers", "models", "export", "profile")  # the sections that need a quiet machine
TITLES = {
    "layers": "1. One layer: RiRConv2D against Conv2D + BatchNorm + ReLU",
    "models": "2. Whole models: training throughput, TensorFlow, JAX and the PyTorch peer",
    "export": "3. Inference latency of the exported SavedModel",
    "profile": "4. Where the time goes, and what makes the default path fast",
    "accuracy": "5. Time to 85%, 90% and 92% test accuracy, from the training campaigns' logs",
}
LAYER_SIZES = ((32, 16), (16, 32), (8, 64))  # (height = width, channels): the ResNet-32 stages
PLACEMENTS = ("init", "constant", "shortcut")
MODELS = ("rir32", "resnet32", "cnn32")
BF16_MODELS = ("rir32", "resnet32")  # also timed in mixed_bfloat16 where the CPU computes bfloat16
# The campaigns whose logs section 5 reads, in the order they ran (`make campaign`; the first trained on
# CIFAR-10 (JPEG copy), the others on the official CIFAR-10), and the test accuracies it times.
DEFAULT_CAMPAIGNS = [os.path.join("results", f"table32-cifar10{stage}") for stage in ("", "-fast", "-fast-bf16", "-long")]
ACCURACY_MARKS = (0.85, 0.90, 0.92)
TRAINING_PASSES = 3  # a training step's work in forward passes
BATCH = 128


# --------------------------------------------------------------------------- the machine


def native_bf16():
    """The flags by which this CPU computes bfloat16 natively (none: bfloat16 would run emulated)."""
    return [flag for flag in precision.NATIVE_BFLOAT16_FLAGS if flag in runs.cpu()["flags"]]


def version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine():
    """One line naming the machine (`rir_keras.runs.cpu`: model, cores, the flags that decide the number
    formats) and the software."""
    cpu = runs.cpu()
    software = ", ".join(f"{p} {version(p)}" for p in ("tensorflow", "keras", "jax", "torch") if version(p))
    return (f"{platform.machine()} CPU `{cpu['model']}`, {cpu['cores']} cores, flags of "
            f"{'/'.join(runs.CPU_FLAGS)}: {', '.join(cpu['flags']) or 'none'} (bfloat16 "
            f"{'native' if native_bf16() else 'emulated'}); Python {platform.python_version()}, {software}")


# --------------------------------------------------------------------------- sections


class Session:
    """Worker processes shared by the sections of one run, with their log."""

    def __init__(self, repeats):
        self.repeats = repeats
        self.workers = {}
        self.log = tempfile.NamedTemporaryFile("w", prefix="bench-workers-", suffix=".log", delete=False)

    def worker(self, framework, **env):
        """The worker of ``framework`` whose environment adds ``env``, started on first use."""
        key = (framework, tuple(sorted(env.items())))
        if key not in self.workers:
            say(f"starting the {framework} worker {env or ''}(log: {self.log.name})")
            self.workers[key] = Worker(framework, self.log, env)
        return self.workers[key]

    def close(self):
        for worker in self.workers.values():
            worker.close()
        self.log.close()


def say(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def layers_section(session, args):
    tf = session.worker("tensorflow")
    rows, medians, graphs = [], {placement: [] for placement in PLACEMENTS}, {}
    for size, channels in LAYER_SIZES:
        for mode in ("forward", "train"):
            for jit in (False, True):
                say(f"layers: {size}x{size}x{channels}, {mode}, XLA {'on' if jit else 'off'}")
                jobs = [
                    Job(layer, tf, f"layer-{size}-{mode}-{jit}-{layer}", args.layer_steps, "layer_step",
                        layer=layer, size=size, channels=channels, batch_size=BATCH, mode=mode, jit_compile=jit)
                    for layer in ("plain",) + PLACEMENTS
                ]
                plain, *placed = interleave(jobs, session.repeats)
                if size == LAYER_SIZES[0][0] and not jit:
                    graphs[mode] = jobs
                for job in placed:
                    medians[job.label].append(median(ratios(job, plain)))
                rows.append([f"{size}x{size}x{channels} → {channels}", mode, "on" if jit else "off",
                             f"{median(plain.seconds) * 1e3:.2f}"]
                            + [ratio_text(ratios(job, plain)) for job in placed])
    structure = "; ".join(
        f"{job.label}: {graphs['forward'][i].info['convolutions']} / {job.info['convolutions']} convolution ops, "
        f"{graphs['forward'][i].info['graph_ops']} / {job.info['graph_ops']} ops in all"
        for i, job in enumerate(graphs["train"]))
    worst = max(medians["init"])
    pooled = ", ".join(f"{p} {statistics.geometric_mean(medians[p]):.3f}" for p in PLACEMENTS)
    verdict = (f"**\"init\" within 5% of plain: {'yes' if worst <= 1.05 else 'no'}** (worst row's median ratio "
               f"{worst:.3f}). Geometric mean of the {len(medians['init'])} rows' median ratios to plain: {pooled}.")
    return "\n".join([
        f"Batch {BATCH}, 3x3 kernels, stride 1, channels in = channels out, float32, TensorFlow backend. "
        "A forward pass is `model(x, training=False)`; a training step is forward in training mode, "
        "loss `mean(y**2)`, gradients and an SGD (momentum 0.9) update of the layer's variables. Both are "
        f"one `tf.function(jit_compile=XLA)`. Each repeat makes {args.layer_steps} rounds of one call of "
        "each variant, the order rotated every round. Columns after `plain` are time ratios to plain (lower is faster): median [min-max] "
        "over the repeats, each repeat's ratio taken between calls timed back to back.",
        "",
        table(["input → output channels", "pass", "XLA", "plain ms (median)", "init / plain",
               "constant / plain", "shortcut / plain"], rows),
        "",
        verdict,
        "",
        f"What each variant's traced graph holds (forward / training step, {LAYER_SIZES[0][0]}x{LAYER_SIZES[0][0]}x"
        f"{LAYER_SIZES[0][1]}, counted from `get_concrete_function().graph`): {structure}.",
    ])


def models_section(session, args):
    jobs = []
    frameworks = ["tensorflow"] + (["jax"] if args.jax and importlib.util.find_spec("jax") else [])
    for framework in frameworks:
        worker = session.worker(framework)
        for model in MODELS:
            say(f"models: building {model} on {framework}")
            jobs.append(Job(f"{framework}:{model}", worker, f"train-{model}", args.model_steps, "keras_train",
                            model=model, batch_size=BATCH, jit_compile="auto"))
    bf16_jobs = []  # TensorFlow, mixed_bfloat16, where the CPU computes it
    for model in BF16_MODELS if native_bf16() else ():
        say(f"models: building {model} on tensorflow, mixed_bfloat16")
        bf16_jobs.append(Job(f"tensorflow:{model}:mixed_bfloat16", session.worker("tensorflow"),
                             f"train-{model}-bf16", args.model_steps, "keras_train", model=model, batch_size=BATCH,
                             jit_compile="auto", policy="mixed_bfloat16"))
    jobs += bf16_jobs
    torch_jobs = []
    if args.torch and importlib.util.find_spec("torch"):
        for variant, options in torch_variants(native_bf16=bool(native_bf16())):
            say(f"models: building the PyTorch ResNet-32, {variant}")
            torch_jobs.append(Job(f"torch:{variant}", session.worker("torch"), f"train-resnet32-{variant}",
                                  args.model_steps, "torch_train", batch_size=BATCH, **options))
        jobs += torch_jobs
    limits = [Job(f"matmul:{dtype}", session.worker("tensorflow"), f"matmul-{dtype}", 1, "matmul", dtype=dtype)
              for dtype in ("float32", "bfloat16") if dtype == "float32" or native_bf16()]
    interleave(jobs + limits, session.repeats, progress=lambda m: say(f"models: {m}"))
    by_label = {job.label: job for job in jobs}
    baseline = by_label["tensorflow:resnet32"]
    limit = {job.info["dtype"]: job.info["flop"] / median(job.seconds) for job in limits}
    rows = []
    for job in jobs:
        framework, model, *policy = job.label.split(":")
        backend = "PyTorch" if framework == "torch" else f"Keras, {framework} backend"
        xla = "n/a" if framework == "torch" else ("on" if job.info["jit_compile"] else "off")
        model = f"ResNet-32 (torch_resnet32.py), {model}" if framework == "torch" else " ".join([model, *policy])
        macs = job.info.get("forward_macs") or baseline.info["forward_macs"]  # the peer: ResNet-32's
        achieved = TRAINING_PASSES * 2 * macs * BATCH / median(job.seconds)
        rows.append([backend, model, xla,
                     f"{job.info['parameters']:,}", f"{median(job.seconds) * 1e3:.0f}",
                     f"{BATCH / median(job.seconds):.0f}", ratio_text(ratios(baseline, job)),
                     f"{achieved / 1e9:.0f}", f"{100 * achieved / limit['float32']:.0f}%",
                     f"{median(job.cpu_seconds):.2f}" if job.cpu_seconds else "n/a"])
    lines = [
        f"Training steps of batch {BATCH} on synthetic data (random normal 32x32x3 images, random labels: "
        "throughput only, no accuracy), one fixed batch in memory. Keras models are built by "
        "`rir_keras.applications.registry` at full width and compiled by `rir_keras.training.compile_model` "
        "with `TrainConfig` defaults (SGD momentum 0.9, `jit_compile=\"auto\"`: off for TensorFlow on a "
        "CPU-only machine, on for JAX); one step is `model.train_on_batch`. The PyTorch peer is "
        "`benchmarks/torch_resnet32.py` (He et al.'s CIFAR layout, option-A shortcuts) in PyTorch's default NCHW "
        "layout, in channels_last (often faster on CPU), and channels_last with `torch.compile` (forward and "
        "backward; inductor's CPU code); with bfloat16 autocast too where the CPU computes bfloat16 "
        f"natively ({'it does: ' + ', '.join(native_bf16()) if native_bf16() else 'this one does not: no bfloat16 rows'}"
        "; our models then also in Keras' `mixed_bfloat16` policy: bfloat16 computation, float32 variables). SGD "
        "momentum 0.9, cross-entropy, default threads. Each framework runs in its own process; each "
        f"repeat times {args.model_steps} steps of every row in turns. Parameters include batch-norm "
        "statistics.",
        "",
        table(["framework", "model", "XLA", "parameters", "ms / step (median)", "images / s",
               "throughput / TF ResNet32", "GFLOP/s", "share of the float32 limit", "CPU s / step (median)"], rows),
        "",
        "**The limit.** A 4096 x 4096 matrix product in TensorFlow on the same cores, timed in turns with the "
        "models: " + "; ".join(f"{dtype} {flops / 1e9:.0f} GFLOP/s" for dtype, flops in limit.items())
        + ". A training step costs about 3 forward passes (forward, and the backward pass's two products); "
        f"ResNet32's forward pass, {baseline.info['forward_macs'] / 1e6:.1f} M multiply-adds per image (counted "
        "from each model's kernels, `jobs.forward_macs`), makes "
        f"{TRAINING_PASSES * 2 * baseline.info['forward_macs'] / 1e9:.2f} GFLOP per trained image. GFLOP/s is "
        "each model's own count times its images/s; the share is that over the float32 matrix product's.",
        "",
        "CPU s / step is the worker process's CPU time (all its threads) per step: less sensitive than wall "
        "time to other processes' load, but it counts threads that spin while waiting.",
    ]
    summary = []
    for framework in frameworks:
        rir, resnet = by_label[f"{framework}:rir32"], by_label[f"{framework}:resnet32"]
        summary.append(f"- {framework}: RiR32 time / ResNet32 time = {ratio_text(ratios(rir, resnet))}.")
    if "jax" in frameworks:
        jax_job = by_label["jax:resnet32"]
        summary.append(f"- ResNet32 throughput, JAX / TensorFlow = {ratio_text(ratios(baseline, jax_job))}.")
    for job in bf16_jobs:
        model = job.label.split(":")[1]
        summary.append(f"- tensorflow {model.replace('32', '-32')}: mixed_bfloat16 throughput / float32 = "
                       f"{ratio_text(ratios(by_label[f'tensorflow:{model}'], job))}.")
    if torch_jobs:
        best = min(torch_jobs, key=lambda job: median(job.seconds))
        ours = "; ".join(f"{label.replace(':', ' ').replace('32', '-32')} {ratio_text(ratios(best, by_label[label]))}"
                         for label in [f"{f}:{m}" for f in frameworks for m in ("resnet32", "rir32")]
                         + [job.label for job in bf16_jobs])
        summary.append(f"- **The peer's best** is {best.label.split(':')[1]} ({BATCH / median(best.seconds):.0f} "
                       f"images/s). Our training throughput over it: {ours}.")
        info = torch_jobs[0].info
        summary.append(f"- Same batch, input size and optimizer. Parameters: ours {baseline.info['parameters']:,}, "
                       f"PyTorch {info['parameters']:,}, of which {info['trainable_parameters']:,} trainable in "
                       f"both (the rest are batch-norm statistics); torch {info['torch']}, {info['threads']} threads.")
    else:
        summary.append("- PyTorch is not installed (`pip install -e '.[bench]'`): no peer measured.")
    return "\n".join(lines + ["", "Ratios (median [min-max] over repeats):", ""] + summary
                     + ["", "**Goals** (TensorFlow, the default path):", ""] + goals(by_label, torch_jobs, limit, bf16_jobs))


def goals(by_label, torch_jobs, limit, bf16_jobs=()):
    """The speed goals, each met or missed, from the models section's jobs."""
    rir, resnet = by_label["tensorflow:rir32"], by_label["tensorflow:resnet32"]
    share = TRAINING_PASSES * 2 * rir.info["forward_macs"] * BATCH / median(rir.seconds) / limit["float32"]
    time_ratio = median(ratios(rir, resnet))
    lines = [f"- RiR-32 at 70% or more of the float32 limit: {100 * share:.0f}%, "
             f"{'met' if share >= 0.7 else 'missed'}.",
             f"- RiR-32 time / ResNet-32 time at most 1.05: {ratio_text(ratios(rir, resnet))}, "
             f"{'met' if time_ratio <= 1.05 else 'missed'} (by the median)."]
    if torch_jobs:
        best = min(torch_jobs, key=lambda job: median(job.seconds))
        over = median(ratios(best, rir))
        lines.append(f"- RiR-32 at least the peer's best throughput ({best.label.split(':')[1]}): "
                     f"{ratio_text(ratios(best, rir))} of it, {'met' if over >= 1.0 else 'missed'} (by the median).")
    rir_bf16 = by_label.get("tensorflow:rir32:mixed_bfloat16")
    if rir_bf16 is not None:
        speedup = median(ratios(rir, rir_bf16))
        lines.append(f"- RiR-32 in mixed_bfloat16 at 1.6x or more of its float32 throughput: "
                     f"{ratio_text(ratios(rir, rir_bf16))}, {'met' if speedup >= 1.6 else 'missed'} (by the median).")
        if torch_jobs:
            over = median(ratios(best, rir_bf16))
            lines.append(f"- RiR-32 in mixed_bfloat16 at least the peer's best: {ratio_text(ratios(best, rir_bf16))} "
                         f"of it, {'met' if over >= 1.0 else 'missed'} (by the median).")
    return lines


def torch_variants(native_bf16):
    """The PyTorch peer's configurations: ``(name, torch_train options)``; bfloat16 only where native."""
    variants = [("NCHW, eager", {}), ("channels_last, eager", {"channels_last": True}),
                ("channels_last, torch.compile", {"channels_last": True, "compile": True})]
    if native_bf16:
        variants += [("channels_last, eager, bfloat16 autocast", {"channels_last": True, "bfloat16": True}),
                     ("channels_last, torch.compile, bfloat16 autocast",
                      {"channels_last": True, "compile": True, "bfloat16": True})]
    return variants


def export_section(session, args):
    tf = session.worker("tensorflow")
    jobs = []
    for batch, steps in ((1, args.latency_steps), (BATCH, max(1, args.model_steps))):
        for model in ("rir32", "resnet32"):
            say(f"export: {model} at batch {batch}")
            jobs.append(Job(f"{model}:{batch}:saved_model", tf, f"serve-{model}-{batch}", steps,
                            "saved_model_predict", model=model, batch_size=batch))
        jobs.append(Job(f"rir32:{batch}:keras", tf, f"predict-rir32-{batch}", steps, "keras_predict",
                        model="rir32", batch_size=batch))
    interleave(jobs, session.repeats, progress=lambda m: say(f"export: {m}"))
    rows = []
    for job in jobs:
        model, batch, kind = job.label.split(":")
        api = job.info["api"] if kind == "saved_model" else "Keras `predict_on_batch` (XLA off), for reference"
        rows.append([model, batch, api, f"{median(job.seconds) * 1e3:.2f}",
                     f"{int(batch) / median(job.seconds):.0f}"])
    rir1, res1 = jobs[0], jobs[1]
    rir128, res128 = jobs[3], jobs[4]
    return "\n".join([
        "Each model (full width, float32, untrained weights) is exported as a TensorFlow SavedModel, loaded "
        "back in the same worker process, and its serving function called on a fixed batch of random images "
        "(outputs returned as numpy). Latency is wall time per call, median over repeats; "
        f"each repeat makes {args.latency_steps} calls at batch 1 and {max(1, args.model_steps)} at batch {BATCH}.",
        "",
        table(["model", "batch", "how it is served", "ms / call (median)", "images / s"], rows),
        "",
        f"- RiR32 / ResNet32 latency: batch 1 {ratio_text(ratios(rir1, res1))}, "
        f"batch {BATCH} {ratio_text(ratios(rir128, res128))}.",
    ])


PROFILE_VARIANTS = (
    # (label, worker environment, keras_train options)
    ("default: oneDNN kernels, fused batch norm, masked and pooled shortcuts, XLA off, float32", {}, {}),
    ("TensorFlow's own CPU kernels (`TF_ENABLE_ONEDNN_OPTS=0`)", {"TF_ENABLE_ONEDNN_OPTS": "0"}, {}),
    ("Keras' BatchNormalization computation (not fused)", {}, {"kernels": "keras-batch-norm"}),
    ("slices in the shortcuts (`x[..., :c]` padded back, `x[:, ::2, ::2]`)", {}, {"kernels": "slices"}),
    ("one inter-op thread (`TF_NUM_INTEROP_THREADS=1`)", {"TF_NUM_INTEROP_THREADS": "1"}, {}),
    ("XLA on (`jit_compile=True`)", {}, {"jit_compile": True}),
)
BF16_VARIANTS = (
    ("mixed_bfloat16, XLA off", {}, {"policy": "mixed_bfloat16"}),
    ("mixed_bfloat16, XLA on", {}, {"policy": "mixed_bfloat16", "jit_compile": True}),
    ("mixed_bfloat16, batch norm on inputs cast to float32 (as before issue 33)", {},
     {"policy": "mixed_bfloat16", "kernels": "float32-batch-norm"}),
    ("mixed_bfloat16, one inter-op thread", {"TF_NUM_INTEROP_THREADS": "1"}, {"policy": "mixed_bfloat16"}),
    ("mixed_bfloat16, the shortcuts' mask at its full H x W x C shape", {},
     {"policy": "mixed_bfloat16", "kernels": "full-mask"}),
    ("mixed_bfloat16, no mask in the shortcuts (a different network: the bound on what the mask costs)", {},
     {"policy": "mixed_bfloat16", "kernels": "no-mask"}),
    ("float32 variables and tensors, oneDNN asked to compute in bfloat16 (`TF_SET_ONEDNN_FPMATH_MODE=BF16`)",
     {"TF_SET_ONEDNN_FPMATH_MODE": "BF16"}, {}),
)


def profile_section(session, args):
    native = bool(native_bf16())
    jobs = []
    for index, (label, env, options) in enumerate(PROFILE_VARIANTS + (BF16_VARIANTS if native else ())):
        say(f"profile: rir32, {label}")
        options = {"jit_compile": False, **options}
        jobs.append(Job(label, session.worker("tensorflow", **env), f"profile-{index}", args.profile_steps,
                        "keras_train", model="rir32", batch_size=BATCH, **options))
    tf = session.worker("tensorflow")
    say("profile: data pipeline")
    data = Job("data", tf, "array-batches", args.data_steps, "array_batches", batch_size=BATCH)
    interleave(jobs + [data], session.repeats, progress=lambda m: say(f"profile: {m}"))
    default = jobs[0]
    rows = [[job.label, f"{median(job.seconds) * 1e3:.0f}", f"{BATCH / median(job.seconds):.0f}",
             ratio_text(ratios(default, job))] for job in jobs]
    batch_ms = median(data.seconds) * 1e3
    share = [d / s for d, s in zip(data.seconds, default.seconds)]
    traces = {}
    for model, policy in TRACES:
        if policy != "float32" and not native:
            continue
        say(f"profile: op trace of {model}, {policy}")
        trace = tf.setup(f"trace-{model}-{policy}", "op_profile", model=model, batch_size=BATCH,
                         steps=args.trace_steps, policy=policy)
        traces[f"{NAMES[model]} {policy}"] = {
            op: seconds / trace["steps"] for op, seconds in trace["op_seconds"].items()}
    op_rows = op_table_rows(traces, top=12)
    fastest = max(jobs[1:], key=lambda job: median(ratios(default, job)))
    verdict = (f"Faster than the default: **{fastest.label}** ({ratio_text(ratios(default, fastest))} × the default). "
               if median(ratios(default, fastest)) > 1.02 else
               f"No variant beats the default by more than 2% (the closest: {fastest.label}, "
               f"{ratio_text(ratios(default, fastest))}). ")
    if native:  # the bfloat16 variants against the bfloat16 path that `auto` picks
        bf16 = jobs[len(PROFILE_VARIANTS)]
        verdict += (f"Against {bf16.label} (what `--precision auto` runs here): " + "; ".join(
            f"{job.label.removeprefix('mixed_bfloat16, ')} {ratio_text(ratios(bf16, job))}"
            for job in jobs[len(PROFILE_VARIANTS) + 1:]) + ". ")
    return "\n".join([
        f"RiR32, full width, batch {BATCH}, synthetic data, `train_on_batch` as in section 2: the default "
        "path, then each of its speed-ups undone in turn, then other settings. Rows that need another "
        "environment run in a worker process of their own; all rows are timed in turns "
        f"({args.profile_steps} step(s) of each per repeat). Speed-up is the default's time / the variant's "
        "time (higher is faster).",
        "",
        table(["variant", "ms / step (median)", "images / s", "speed-up vs default"], rows),
        "",
        verdict
        + ("" if native else "This CPU has no bfloat16 arithmetic (see the machine line): mixed_bfloat16 "
           "would run emulated, so it is not measured."),
        "",
        "**Data pipeline.** One training batch from `rir_keras.data.ArrayBatches` as `rir_keras.training` "
        "configures it (shuffle, pad-4 crop + flip, float32; the model normalizes) from 50,000 uint8 "
        f"images in memory: {batch_ms:.2f} ms / batch (median; {args.data_steps} batches a repeat), "
        f"= {ratio_text([100 * s for s in share])} % of a default training step. `model.fit` fetches "
        "batches on a background thread (PyDataset's default), so this mostly overlaps the step.",
        "",
        f"**Time per op type**, TensorFlow profiler (`tf.profiler.experimental`), {args.trace_steps} "
        "`train_on_batch` steps of the default path (XLA off) after one warm-up, each op's time "
        "summed over the executor's threads (ops can run two at a time, so the sum can exceed wall time); "
        f"ordered by {next(iter(traces))}'s time:",
        "",
        table(["op type"] + [f"{name} {column}" for name in traces for column in ("ms / step", "share")], op_rows),
        *(["", bfloat16_gains(traces)] if native else []),
    ])


NAMES = {"rir32": "RiR32", "resnet32": "ResNet32"}
# Op traces of section 4; the bfloat16 ones only where the CPU computes bfloat16.
TRACES = (("rir32", "float32"), ("resnet32", "float32"), ("rir32", "mixed_bfloat16"), ("resnet32", "mixed_bfloat16"))


def bfloat16_gains(traces):
    """Where mixed_bfloat16 gains time and where not: RiR32's op time per step, float32 against bfloat16,
    for the convolutions and for everything else (its three largest named)."""
    f32, bf16 = traces.get("RiR32 float32"), traces.get("RiR32 mixed_bfloat16")
    if not bf16:
        return ""
    ms = lambda ops, names: 1e3 * sum(ops.get(op, 0.0) for op in names)  # noqa: E731
    change = lambda names: f"{ms(f32, names):.0f} -> {ms(bf16, names):.0f} ms, {ms(f32, names) / ms(bf16, names):.2f}x"  # noqa: E731
    convolutions = sorted({op for op in (*f32, *bf16) if "Conv2D" in op}, key=lambda op: -f32.get(op, 0.0))
    rest = [op for op in {*f32, *bf16} if op not in convolutions]
    largest = sorted(rest, key=lambda op: -bf16.get(op, 0.0))[:3]
    return (f"**Where bfloat16 gains.** RiR32's op time per step, float32 -> mixed_bfloat16: all ops "
            f"{change(list({*f32, *bf16}))}; convolutions {change(convolutions)} ("
            + "; ".join(f"{op} {change([op])}" for op in convolutions)
            + f"); everything else {change(rest)}, of which " + "; ".join(f"{op} {change([op])}" for op in largest)
            + ". Ops that do not speed up in bfloat16 bound what the convolutions' speed-up can give.")


def op_table_rows(traces, top):
    """Rows ``op, then ms / step and share for each model``, the first model's ``top`` ops first,
    then one row for all the others."""
    first = next(iter(traces.values()))
    ordered = sorted(first, key=lambda op: -first[op])
    shown = ordered[:top]
    totals = {model: sum(ops.values()) for model, ops in traces.items()}
    rows = []
    for op in shown + ["(all others)"]:
        row = [op]
        for model, ops in traces.items():
            seconds = ops.get(op, 0.0) if op in shown else sum(s for o, s in ops.items() if o not in shown)
            row += [f"{seconds * 1e3:.1f}", f"{100 * seconds / totals[model]:.1f}%"]
        rows.append(row)
    return rows


def accuracy_section(session, args):
    from rir_keras import runs
    from rir_keras.commands import campaign

    rows, waiting = [], 0
    for folder in args.campaign_folder:
        plan = campaign.read_plan(folder)
        for name, seed, run in campaign.runs_of(folder, plan):
            progress, log = runs.progress(run), runs.read_log(os.path.join(run, "log.csv"))
            accuracies, seconds = log.get("val_accuracy", []), log.get("seconds", [])
            if not accuracies:
                waiting += 1
                continue
            data, _ = campaign.trained_on([runs.read_json(os.path.join(run, "run.json"))], plan)
            marks = []
            for mark in ACCURACY_MARKS:
                reached = campaign.time_to_accuracy(run, mark)
                marks.append(f"epoch {reached[0]}: {reached[1] / 60:.0f} min logged, "
                             f"{reached[0] * statistics.median(seconds) / 60:.0f} at the median epoch" if reached
                             else "not reached" if progress.finished else "not yet")
            rows.append([name, seed, f"`{folder}`", data, "; ".join(runs.session_precisions(run)), plan["recipe"],
                         f"{len(accuracies)} of {progress.epochs_total or plan['epochs']}",
                         f"{100 * accuracies[-1]:.2f}" + (" (final)" if progress.finished else ""), *marks,
                         f"{sum(seconds) / 60:.0f}"])
    marks = ", ".join(f"{100 * mark:.0f}%" for mark in ACCURACY_MARKS)
    return "\n".join([
        f"The runs of the training campaigns in {', '.join(f'`{folder}`' for folder in args.campaign_folder)} "
        "(`make campaign`; all the training images, test accuracy on all the test images after each epoch). "
        f"For each run that has begun: the first epoch whose test accuracy reached {marks}, and the minutes its "
        "epochs took until then as logged (`log.csv`, column `seconds`); a finished run that never reached a "
        "mark says so. The campaign runs at the lowest priority beside other work, so logged minutes are an "
        "upper bound on a quiet machine's; the same epochs at the run's median epoch time are closer to it "
        "(most epochs run on a quiet machine; section 2's images/s gives a quiet epoch's training time). "
        "Data is the archive the run recorded (runs before 0.9 recorded only the dataset's name: those of "
        "`results/table32-cifar10` trained on CIFAR-10 (JPEG copy)). docs/results.md says which epochs ran with "
        f"which version. Runs planned but not begun: {waiting}. Nothing is timed in this section.",
        "",
        table(["model", "seed", "campaign", "data", "precision", "recipe", "epochs", "test accuracy (%)",
               *(f"{100 * mark:.0f}% reached (logged)" for mark in ACCURACY_MARKS), "minutes logged in all"], rows),
    ])


RUNNERS = {"layers": layers_section, "models": models_section, "export": export_section,
           "profile": profile_section, "accuracy": accuracy_section}


# --------------------------------------------------------------------------- markdown


HEADER = """# Benchmarks

Written by `benchmarks/run.py` (do not edit by hand: run it again). Each section below says the
command that produced it, the machine, the date and the repeats. Every figure is a median over
repeats; ratios are taken repeat by repeat between variants timed in turns in the same run (the
machine is shared, so absolute times are noisy and ratios are the figures to read), and given as
median [min-max]. Section 2 runs on synthetic data: it measures throughput, not accuracy.

Run all sections: `make bench` (installs torch==2.13.0, the CPU build, then runs
`.venv/bin/python benchmarks/run.py --output docs/benchmarks.md`), or one section:
`.venv/bin/python benchmarks/run.py --sections layers --output docs/benchmarks.md`.
Each section runs on a quiet machine only: the training campaign is paused for it, and it waits for
idle CPUs (or refuses); its header records the load before and after.

**What makes training fast on a CPU** (version 0.4.0; section 4 measures each, undone one at a
time, and section 2 sets the result against the CPU's limit and the PyTorch peer): TensorFlow's
oneDNN kernels, which TensorFlow leaves off on CPUs without AVX512 (`import rir_keras` turns them on
unless `TF_ENABLE_ONEDNN_OPTS` is set; import it before Keras); batch normalization trained through
TensorFlow's fused kernel (`rir_keras.layers.BatchNormalization`); block shortcuts that zero the
transient channels with a 0/1 mask and subsample with a window-1 pooling, where slices had
gradients several times slower. Tried and left as they were: XLA on the CPU (slower), one inter-op
thread (no change). mixed_bfloat16: on CPUs that compute bfloat16 natively (AVX512_BF16, AMX; the
machine line says) `--precision auto` trains in it (its accuracy was measured to hold: docs/results.md),
section 2 times our models in it beside float32 and section 4 profiles it and times what was tried to
make it faster (batch norm in float32, one inter-op thread, XLA, the shortcuts' mask in another shape,
and no mask at all as the bound on the mask's cost); elsewhere it runs emulated and is not measured.
What bounds it: the convolutions' weight gradients (`Conv2DBackpropFilter`), a third of the step, gain
the least from bfloat16 in oneDNN, and element-wise ops gain little (batch norm's gradient), nothing (the
shortcuts' mask) or lose (ReLU's gradient). The batch size stays the recipe's 128: a larger one would change the
training, not only its speed. Data loading costs well under 1% of a step and overlaps it (section 4).
"""


def begin(name):
    return f"<!-- begin section: {name} -->"


def end(name):
    return f"<!-- end section: {name} -->"


def read_sections(path):
    """The sections already in ``path``: ``{name: markdown}``."""
    if not path or not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    found = {}
    for name in SECTIONS:
        match = re.search(re.escape(begin(name)) + r"\n(.*?)\n" + re.escape(end(name)), text, re.S)
        if match:
            found[name] = match.group(1)
    return found


def section_markdown(name, body, command, seconds, repeats, conditions):
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join([
        f"## {TITLES[name]}",
        "",
        f"Command: `{command}` · {stamp} · "
        + (f"{repeats} repeats · section took {seconds / 60:.1f} min · {conditions.describe()}" if conditions
           else "read from logs, nothing timed"),
        "",
        *([f"Machine: {machine()}", ""] if conditions else []),
        body,
    ])


def write_document(path, sections):
    parts = [HEADER]
    for name in SECTIONS:
        body = sections.get(name, f"## {TITLES[name]}\n\nNot run yet: "
                                  f"`.venv/bin/python benchmarks/run.py --sections {name} --output {path}`.")
        parts += [begin(name), body, end(name), ""]
    text = "\n".join(parts)
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    return text


# --------------------------------------------------------------------------- command line


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated, from {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--output", help="markdown file to write; its other sections are kept")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats of every variant (default 7)")
    parser.add_argument("--layer-steps", type=int, default=5, help="calls per repeat, section layers")
    parser.add_argument("--model-steps", type=int, default=1, help="training steps per repeat, section models")
    parser.add_argument("--latency-steps", type=int, default=20, help="batch-1 calls per repeat, section export")
    parser.add_argument("--profile-steps", type=int, default=1, help="training steps per repeat, section profile")
    parser.add_argument("--data-steps", type=int, default=20, help="batches per repeat, section profile")
    parser.add_argument("--trace-steps", type=int, default=3, help="profiled training steps, section profile")
    parser.add_argument("--no-jax", dest="jax", action="store_false", help="skip the JAX backend")
    parser.add_argument("--no-torch", dest="torch", action="store_false", help="skip the PyTorch peer")
    parser.add_argument("--campaign-pid", default=quiet.DEFAULT_PID_FILE,
                        help="pid file of the training campaign, paused (SIGSTOP) during each timed section")
    parser.add_argument("--campaign-folder", nargs="+", default=DEFAULT_CAMPAIGNS,
                        help="the `rir-keras reproduce` folders whose logs section accuracy reads")
    parser.add_argument("--max-busy", type=float, default=0.5,
                        help="a section starts only when at most this share of each core is busy")
    parser.add_argument("--wait", type=float, default=300, help="seconds to wait for a quiet machine")
    parser.add_argument("--allow-busy", action="store_true",
                        help="measure even on a busy machine (the section says so)")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown or not chosen:
        parser.error(f"--sections must name some of {', '.join(SECTIONS)}. Received: --sections={args.sections!r}")
    for name in ("repeats", "layer_steps", "model_steps", "latency_steps", "profile_steps", "data_steps",
                 "trace_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1. Received: {getattr(args, name)}")
    args.sections = chosen
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    command = shlex.join([".venv/bin/python", "benchmarks/run.py", *argv])
    sections = read_sections(args.output)
    session = Session(args.repeats)
    try:
        for name in args.sections:
            timed = name in TIMED
            with (quiet.quiet_machine(args.campaign_pid, args.max_busy, args.wait, args.allow_busy, say) if timed
                  else contextlib.nullcontext()) as conditions:
                start = time.perf_counter()
                body = RUNNERS[name](session, args)
                seconds = time.perf_counter() - start
            sections[name] = section_markdown(name, body, command, seconds, args.repeats, conditions)
            text = write_document(args.output, sections)  # after each section: a crash keeps the rest
            say(f"{name} done")
    finally:
        session.close()
    if not args.output:
        print(text)


if __name__ == "__main__":
    main()
