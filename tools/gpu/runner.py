#!/usr/bin/env python3
"""The lent-GPU runner: train, tune and measure on a machine with JAX and CUDA but no TensorFlow.

    python tools/gpu/runner.py run [options]          # there, through tools/gpu/run.sh (which installs first)
    python tools/gpu/runner.py collect FOLDER         # here: what a run brought back, into results/
    python tools/gpu/runner.py size [--carry PATH..]  # here: what a device call would send, against 64 MiB

The data travel in parts over several calls (tools/gpu/parts.py); run.sh joins them before `run`.

`run` works through its stages in the order given, each as far as the time budget allows, and
stops cleanly before the budget ends (the device tool kills a command after 10 minutes):

    table1   Table 1: cnn32, resnet32, resnet_init32 and rir32 on CIFAR-10 (official, lossless WebP), concurrently
    wide10   Table 2: the 18-layer-wide four on CIFAR-10 (official, lossless WebP), concurrently
    wide100  Table 3: the 18-layer-wide four on CIFAR-100 (official, lossless WebP), concurrently
    tune     a slice of the KerasTuner grid (trials per minute)
    bench    training throughput per model (images/s, RiR/ResNet time ratio)

A training stage runs one `rir-keras train` process per model, each with a share of the GPU's
memory (XLA_PYTHON_CLIENT_MEM_FRACTION), into ``RESULTS/CAMPAIGN/MODEL/seed0``: the folder format of
`rir-keras reproduce` (campaign.json, run.json, sessions.jsonl, log.csv, backup/, then model.keras,
results.json, curves.png), so `rir-keras reproduce --status` reads it and a rerun anywhere continues
it. A process is stopped right after an epoch's backup when the next epoch would not end before the
budget (a kill loses at most the epoch in progress: runs resume exactly at epoch granularity).

Where state lives. Training happens in ``--live`` (default ``.gpu/live``, git-ignored), which
survives between calls while the device machine stays warm. At start, each run there is replaced by
the copy in ``--results`` (the working tree's results/, sent with every call) where that copy got
further; at the end, what changed is packed into ``--out`` (the device tool's $OUT), and `collect`
unpacks it here into results/, so that the next call sends the state on. How the state travels
(volumes, what comes back whole, a wide run's weights alone in parts, the size of a call) is
tools/gpu/transport.py's; this file holds the stages and the command line. The run folders are read
with `rir_keras.runs` (no Keras needed: ``collect`` and ``size`` run under a bare ``python3``).
"""
import argparse
import datetime
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time

# This process only orchestrates and writes reports (and loads a finished wide model to save its weights):
# it must not take the GPU from the trainers. JAX reads JAX_PLATFORMS once, when it is imported, and that is
# below, with rir_keras, where Keras is installed (the GPU machine): so the command sets it first, and the
# trainers get the environment as it was before (TRAINER_ENVIRONMENT). Not on import by a test: the
# variables would reach every process the test run starts afterwards.
TRAINER_ENVIRONMENT = dict(os.environ)
if __name__ == "__main__":
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ.setdefault("KERAS_BACKEND", "jax")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import parts  # noqa: E402  (tools/gpu/parts.py)
import transport  # noqa: E402  (tools/gpu/transport.py; it puts rir_keras on sys.path where it is not installed)
from transport import MIB, VOLUME_BYTES, WEIGHTS_FILE, WEIGHTS_PLAN  # noqa: E402
from rir_keras import atomic, runs  # noqa: E402

STAGES = ("table1", "wide10", "wide100", "tune", "bench")
TRAINING_STAGES = {  # stage: (paper table, dataset name under RIR_KERAS_DATA)
    "table1": ("32", "cifar10"),
    "wide10": ("18-wide", "cifar10"),
    "wide100": ("18-wide", "cifar100"),
}
PRECISION_TAGS = {"float32": "", "mixed_bfloat16": "-bf16", "mixed_float16": "-fp16"}


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def epochs_done(run):
    """Finished epochs: a finished run's logged ones, else those its backup holds."""
    if runs.finished(run):
        return len(runs.read_log(os.path.join(run, runs.LOG_FILE)).get("epoch", []))
    return transport.restorable_epochs(run)


def total_epochs(run):
    """The epochs the run was started for (its run.json), or None before it started."""
    return (runs.read_json(os.path.join(run, runs.SETTINGS_FILE), {}).get("config") or {}).get("epochs")


# ----------------------------------------------------------------------------- the stages


class Budget:
    def __init__(self, started, seconds, margin):
        self.deadline = started + seconds  # when everything must have stopped, packing excluded
        self.margin = margin

    def left(self):
        return self.deadline - self.margin - time.time()


def campaign_name(stage, recipe, precision):
    table, dataset = TRAINING_STAGES[stage]
    family = "cifar100" if dataset.startswith("cifar100") else "cifar10"
    label = "table32" if table == "32" else "table18wide"
    return f"{label}-{family}-{recipe}{PRECISION_TAGS[precision]}-gpu"


def table_models(table):
    from rir_keras.applications import registry

    order = ("rir", "resnet_init", "resnet", "cnn")  # the CPU campaign's order: RiR and ResNet first
    return sorted(registry.group_members(table), key=lambda n: next(i for i, p in enumerate(order) if n.startswith(p)))


def python_command(*args):
    # -P: not the working directory first on sys.path, where the source tree's rir_keras (without its
    # applications and tuning subpackages, which setup.py maps from other folders) would shadow the installed one.
    return [sys.executable, "-P", "-m", "rir_keras.commands.main", *args]


class Runner:
    def __init__(self, args, child_env):
        self.args = args
        self.env = child_env
        self.budget = Budget(args.started, args.budget, args.margin)
        self.live = os.path.join(args.live, "results")
        self.logs = os.path.join(args.live, "logs")
        os.makedirs(self.live, exist_ok=True)
        os.makedirs(self.logs, exist_ok=True)
        self.touched = []  # folders under results/ this call worked on
        self.notes = []  # lines for summary.md

    def note(self, line):
        log(line)
        self.notes.append(line)

    def environment(self, memory_fraction):
        return {**self.env, "XLA_PYTHON_CLIENT_MEM_FRACTION": f"{memory_fraction:.3f}"}

    def touch(self, name):
        if name not in self.touched:
            self.touched.append(name)
        transport.sync_in(os.path.join(self.args.results, name), os.path.join(self.live, name), say=log)

    # -- training --------------------------------------------------------------------------------

    def no_archive(self, stage, dataset):
        """Say so, and True, where ``dataset`` has no archive under RIR_KERAS_DATA (tensorflow-datasets, the
        fallback, is not on the GPU machine)."""
        from rir_keras import data

        if not data.resolve_source(dataset).startswith(data.TFDS_PREFIX):
            return False
        self.note(f"{stage}: skipped: no archive for {dataset!r} under RIR_KERAS_DATA="
                  f"{os.environ.get(data.DATA_ENV_VAR)!r} (carry .devdata/; tools/gpu/README.md)")
        return True

    def train_stage(self, stage):
        from rir_keras import data, recipes

        args = self.args
        table, dataset = TRAINING_STAGES[stage]
        recipe, precision = (args.recipe, args.precision) if stage == "table1" else (args.wide_recipe,
                                                                                      args.wide_precision)
        chosen = resolve_precision(precision, "--precision" if stage == "table1" else "--wide-precision")
        precision = chosen.policy
        name = campaign_name(stage, recipe, precision)
        if self.no_archive(stage, dataset):
            return
        self.touch(name)
        folder = os.path.join(self.live, name)
        models = args.models or table_models(table)
        plan = {"table": table, "models": models, "seeds": [0], "recipe": recipe, "dataset": dataset,
                "family": data.dataset_family(dataset) or "",
                "epochs": recipes.get(recipe).config(epochs=args.epochs).epochs}
        atomic.write_json(plan, os.path.join(folder, "campaign.json"))
        model_runs = {model: os.path.join(folder, model, "seed0") for model in models}
        pending = [model for model in models if not runs.finished(model_runs[model])]
        if not pending:
            self.note(f"{stage}: {name} finished earlier")
            self.weights_alone(stage, model_runs)
            return self.report(name, plan)
        if self.budget.left() < args.min_stage_seconds:
            self.note(f"{stage}: skipped, {self.budget.left():.0f} s left (less than --min-stage-seconds)")
            return
        flags = ["--dataset", dataset, "--recipe", recipe, "--seed", "0", "--precision", precision, "--verbose", "2"]
        if args.epochs:
            flags += ["--epochs", str(args.epochs)]
        flags += args.train_args.split()
        share = args.memory / len(pending)
        self.note(f"{stage}: {name}: training {', '.join(pending)} concurrently, {share:.0%} of GPU memory each, "
                  f"{precision} ({chosen.reason}), {self.budget.left():.0f} s left")
        processes = {}
        for model in pending:
            output = open(os.path.join(self.logs, f"{name}-{model}.log"), "a", encoding="utf-8")
            command = python_command("train", "--model", model, "--output", model_runs[model], *flags)
            output.write(f"\n$ {' '.join(command)}\n")
            output.flush()
            processes[model] = (subprocess.Popen(command, env=self.environment(share), stdout=output,
                                                 stderr=subprocess.STDOUT, start_new_session=True), output)
        self.watch(stage, processes, model_runs)
        self.weights_alone(stage, model_runs)
        self.report(name, plan)

    def weights_alone(self, stage, model_runs):
        """Write WEIGHTS_FILE beside the model.keras of each finished run of a wide stage that has none
        (Table 1's model.keras, about 4 MiB, comes back whole)."""
        if TRAINING_STAGES[stage][0] == "32":
            return
        from rir_keras.commands.flags import load_model_file

        for model, run in model_runs.items():
            target, source = os.path.join(run, WEIGHTS_FILE), os.path.join(run, "model.keras")
            if not runs.finished(run) or os.path.isfile(target):
                continue
            if not os.path.isfile(source):
                self.note(f"{stage} {model}: no model.keras on this machine: its weights cannot come back")
                continue
            with atomic.atomic_output(target, suffix=".weights.h5") as partial:
                load_model_file(source).save_weights(partial)  # uncompiled: the weights alone
            self.note(f"{stage} {model}: weights alone in {WEIGHTS_FILE} ({os.path.getsize(target) / MIB:.1f} MiB, "
                      f"SHA-256 {parts.sha256(target)[:16]}...), to come back in parts")

    def watch(self, stage, processes, model_runs):
        """Wait for the processes; stop each right after a backup when its next epoch would end past the
        budget (or after --stop-after-epochs more epochs), kill what still runs when the budget ends."""
        args = self.args
        first = {model: epochs_done(model_runs[model]) for model in processes}
        seen = dict(first)
        stopped = set()
        while any(process.poll() is None for process, _ in processes.values()):
            time.sleep(0.25)
            for model, (process, _) in processes.items():
                if process.poll() is not None:
                    continue
                epochs = epochs_done(model_runs[model])
                if epochs > seen[model]:
                    seen[model] = epochs
                    history = runs.read_log(os.path.join(model_runs[model], runs.LOG_FILE))
                    seconds = [s for s in history.get("seconds", []) if not math.isnan(s)]
                    accuracy = history.get("val_accuracy", [math.nan])[-1]
                    total = total_epochs(model_runs[model])
                    log(f"{stage} {model}: epoch {epochs}/{total}, {seconds[-1] if seconds else math.nan:.1f} s, "
                        f"val_accuracy {accuracy:.4f}")
                    if total and epochs >= total:
                        continue  # writing its model and results: let it finish
                    recent = sorted(seconds[-3:])
                    estimate = recent[len(recent) // 2] if recent else 0.0
                    too_late = self.budget.left() < 1.15 * estimate + 5
                    enough = args.stop_after_epochs and epochs - first[model] >= args.stop_after_epochs
                    if too_late or enough:
                        why = "the next epoch would end past the budget" if too_late else "--stop-after-epochs"
                        log(f"{stage} {model}: stopped after epoch {epochs} ({why})")
                        stopped.add(model)
                        # SIGKILL, right after the backup: nothing finished is lost, and it stops at once.
                        # SIGTERM is now handled in Python (rir_keras.commands.main), and a short epoch could end first.
                        os.killpg(process.pid, signal.SIGKILL)
                if self.budget.left() <= 0 and process.poll() is None:
                    log(f"{stage} {model}: killed at the budget's end, mid-epoch (resumes from epoch {epochs})")
                    stopped.add(model)
                    os.killpg(process.pid, signal.SIGKILL)
        for model, (process, output) in processes.items():
            output.close()
            total = total_epochs(model_runs[model])
            run = model_runs[model]
            state = "finished" if runs.finished(run) else f"at epoch {epochs_done(run)}/{total}"
            if process.returncode != 0 and model not in stopped:
                self.note(f"{stage} {model}: FAILED (exit {process.returncode}), {state}; its log's end:")
                self.notes.append("```\n" + tail(output.name, 25) + "\n```")
                print(tail(output.name, 25), flush=True)
            else:
                self.note(f"{stage} {model}: {state} ({epochs_done(model_runs[model]) - first[model]} epochs this call)")

    def report(self, name, plan):
        """results.md (finished models beside the paper) and the status table, as `reproduce` writes them."""
        from rir_keras.commands import campaign

        folder = os.path.join(self.live, name)
        atomic.write_text(campaign.results_table(folder, plan), os.path.join(folder, "results.md"))
        status = campaign.status(folder)
        print(status, flush=True)
        self.notes.append("```\n" + status.replace(self.live + os.sep, "results/").strip() + "\n```")

    # -- tuning ------------------------------------------------------------------------------------

    def tune_stage(self):
        args = self.args
        if self.no_archive("tune", "cifar10"):
            return
        self.touch("gpu-tune")
        directory = os.path.join(self.live, "gpu-tune")
        project = f"{args.tune_model}-{args.tune_grid}-{args.tune_recipe}-e{args.tune_epochs}"
        before = completed_trials(os.path.join(directory, project))
        if before >= args.tune_trials:
            self.note(f"tune: {project}: {before} trials done earlier")
            return
        if self.budget.left() < args.min_stage_seconds:
            self.note(f"tune: skipped, {self.budget.left():.0f} s left")
            return
        command = python_command("tune", "--model", args.tune_model, "--grid", args.tune_grid,
                                 "--max-trials", str(args.tune_trials), "--epochs", str(args.tune_epochs),
                                 "--recipe", args.tune_recipe, "--dataset", "cifar10", "--directory", directory,
                                 "--project-name", project, "--verbose", "2", *args.train_args.split())
        workers = max(1, args.tune_workers)
        roles = [("single", None)] if workers == 1 else [("chief", "chief")] + [
            (f"worker{i}", f"worker{i}") for i in range(1, workers + 1)]
        port = free_port() if workers > 1 else None
        self.note(f"tune: {project}: {before} of {args.tune_trials} trials done; {workers} trainer(s), "
                  f"{self.budget.left():.0f} s left")
        processes = []
        start = time.time()
        for role, tuner_id in roles:
            env = self.environment(args.memory / workers)
            if tuner_id:
                env.update(KERASTUNER_TUNER_ID=tuner_id, KERASTUNER_ORACLE_IP="127.0.0.1",
                           KERASTUNER_ORACLE_PORT=str(port))
            if role == "chief":
                env["JAX_PLATFORMS"] = "cpu"  # the chief hands out trials and trains nothing
            output = open(os.path.join(self.logs, f"tune-{project}-{role}.log"), "a", encoding="utf-8")
            processes.append((role, subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT,
                                                     start_new_session=True), output))
            if role == "chief":
                time.sleep(3)  # let it listen before the workers call
        while any(p.poll() is None for _, p, _ in processes) and self.budget.left() > 0:
            time.sleep(1)
            if workers > 1 and all(p.poll() is not None for r, p, _ in processes if r != "chief"):
                break  # the workers are done: the chief has nothing left to hand out
        for role, process, output in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            output.close()
        minutes = (time.time() - start) / 60
        after = completed_trials(os.path.join(directory, project))
        rate = (after - before) / minutes if minutes else 0.0
        record = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "machine": device_name(), "project": project, "trainers": workers, "trials_before": before,
                  "trials_after": after, "minutes": round(minutes, 2), "trials_per_minute": round(rate, 3),
                  "epochs_per_trial": args.tune_epochs}
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "throughput.jsonl"), "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        self.note(f"tune: {after - before} trials in {minutes:.1f} min ({rate:.2f} trials/min, {workers} trainer(s)), "
                  f"{after} of {args.tune_trials} done")
        for role, process, output in processes:
            if process.returncode not in (0, -signal.SIGKILL):
                self.note(f"tune {role}: exit {process.returncode}; its log's end:")
                self.notes.append("```\n" + tail(output.name, 25) + "\n```")
                print(tail(output.name, 25), flush=True)

    # -- throughput ------------------------------------------------------------------------------------

    def bench_stage(self):
        args = self.args
        self.touch("gpu-bench")
        if self.budget.left() < args.min_stage_seconds:
            self.note(f"bench: skipped, {self.budget.left():.0f} s left")
            return
        output = os.path.join(self.logs, "bench.log")
        command = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "throughput.py"),
                   "--output", os.path.join(self.live, "gpu-bench"), "--batch-size", str(args.bench_batch),
                   "--steps", str(args.bench_steps), "--width-multiplier", str(args.bench_width),
                   "--precisions", *args.bench_precisions.split(","), "--models", *args.bench_models.split(",")]
        self.note(f"bench: {args.bench_models} at batch {args.bench_batch}, {self.budget.left():.0f} s left")
        with open(output, "a", encoding="utf-8") as handle:
            process = subprocess.Popen(command, env=self.environment(args.memory), stdout=handle,
                                       stderr=subprocess.STDOUT, start_new_session=True)
            while process.poll() is None and self.budget.left() > 0:
                time.sleep(1)
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        text = tail(output, 40)
        print(text, flush=True)
        self.note(f"bench: exit {process.returncode}")
        self.notes.append("```\n" + tail(output, 20) + "\n```")


def completed_trials(project):
    if not os.path.isdir(project):
        return 0
    count = 0
    for name in os.listdir(project):
        trial = runs.read_json(os.path.join(project, name, "trial.json"), {}) if name.startswith("trial_") else {}
        count += trial.get("status") == "COMPLETED"
    return count


def free_port():
    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        return handle.getsockname()[1]


def tail(path, lines):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:]).rstrip()
    except OSError:
        return ""


def gpu_devices():
    """The GPUs as `rir_keras.runs.accelerators` lists them, without initializing them in this process
    (nvidia-smi); empty where there is none."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        return []
    devices = []
    for line in out:
        name, _, capability = (part.strip() for part in line.rpartition(","))
        try:
            devices.append({"name": name, "platform": "gpu", "compute_capability": float(capability)})
        except ValueError:
            devices.append({"name": line.strip(), "platform": "gpu", "compute_capability": None})
    return devices


def device_name():
    """The accelerator in words, without initializing it in this process (nvidia-smi), else the CPU."""
    devices = gpu_devices()
    if devices:
        return f"{len(devices)} x {devices[0]['name']}"
    return runs.machine()


def resolve_precision(requested, flag):
    """``--precision``'s `rir_keras.precision.Choice` on the trainers' GPU (this process does not use it)."""
    from rir_keras import precision

    return precision.resolve(requested, devices=gpu_devices(), argument=flag)


def run(args):
    stages = [s for s in args.stages.split(",") if s and s not in args.skip.split(",")]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise SystemExit(f"runner: error: unknown stage(s) {unknown}; stages are {', '.join(STAGES)}")
    if not 0 < args.volume_mib <= VOLUME_BYTES / MIB:
        raise SystemExit(f"runner: error: --volume-mib must be > 0 and at most {VOLUME_BYTES // MIB}. "
                         f"Received: --volume-mib={args.volume_mib}")
    child_env = {**TRAINER_ENVIRONMENT, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
                 "JAX_COMPILATION_CACHE_DIR": os.path.abspath(os.path.join(args.live, "jax-cache")),
                 "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
    child_env.setdefault("KERAS_BACKEND", "jax")
    runner = Runner(args, child_env)
    runner.note(f"runner: {device_name()}; stages {', '.join(stages)}; budget {args.budget:.0f} s from the "
                f"command's start, {runner.budget.left():.0f} s left")
    try:
        for stage in stages:
            if runner.budget.left() <= 0:
                runner.note(f"{stage}: not started, the budget is spent")
                continue
            if stage in TRAINING_STAGES:
                runner.train_stage(stage)
            elif stage == "tune":
                runner.tune_stage()
            else:
                runner.bench_stage()
    finally:
        manifest = transport.pack(runner.live, runner.touched, args.out, volume_bytes=int(args.volume_mib * MIB),
                                  tree=args.results)
        weights = [os.path.dirname(f) for f in manifest["packed"] if os.path.basename(f) == WEIGHTS_PLAN]
        waiting = [os.path.dirname(f) for f in manifest["left_out"] if os.path.basename(f) == WEIGHTS_PLAN]
        runner.note(f"packed {len(manifest['packed'])} files into {', '.join(manifest['volumes']) or 'nothing'} "
                    f"under {args.out}" + (f"; the weights of {', '.join(weights)}" if weights else "")
                    + (f"; left on the device: {len(manifest['left_out'])} files" if manifest["left_out"] else "")
                    + (f" (the weights of {len(waiting)} runs: the next call brings them)" if waiting else ""))
        atomic.write_text("\n".join(runner.notes) + "\n", os.path.join(args.out, "summary.md"))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="runner.py", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    go = commands.add_parser("run", help="train, tune and measure on the GPU machine (via tools/gpu/run.sh)",
                             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    go.add_argument("--stages", default=",".join(STAGES), help="comma-separated, run in this order")
    go.add_argument("--skip", default="", help="comma-separated stages to leave out")
    go.add_argument("--budget", type=float, default=540,
                    help="seconds from --started until everything has stopped (the device tool allows 600)")
    go.add_argument("--started", type=float, default=time.time(), help="the command's start (epoch seconds)")
    go.add_argument("--margin", type=float, default=15, help="seconds kept for packing the state")
    go.add_argument("--volume-mib", type=float, default=VOLUME_BYTES / MIB,
                    help="the largest state-N.tar.gz, in MiB (at most 6 a call): the device tool brings back files of "
                         "at most 16 MiB; smaller in dry runs, to cut a tiny model's weights into several volumes")
    go.add_argument("--out", default=os.environ.get("OUT") or os.path.join(".gpu", "out"),
                    help="where the state goes back ($OUT)")
    go.add_argument("--results", default="results", help="the state sent with the call (the working tree's)")
    go.add_argument("--live", default=os.path.join(".gpu", "live"), help="the state on this machine")
    go.add_argument("--recipe", default="paper", help="table1's recipe")
    go.add_argument("--precision", default="float32",
                    help="table1's precision, or auto: rir_keras.precision's choice for the GPU (from nvidia-smi's "
                         "compute capability); the precision chosen names the campaign folder")
    go.add_argument("--wide-recipe", default="fast", help="the 18-layer-wide stages' recipe")
    go.add_argument("--wide-precision", default="float32",
                    help="the 18-layer-wide stages' precision, or auto (mixed_bfloat16 gave NaN validation losses on CPU "
                         "under jax 0.11.2 in the dry run: check the bench and a short run before choosing it)")
    go.add_argument("--models", nargs="+", help="train only these models of each table")
    go.add_argument("--epochs", type=int, help="override every recipe's epochs (dry runs)")
    go.add_argument("--train-args", default="", help="more flags for every train and tune command (dry runs)")
    go.add_argument("--stop-after-epochs", type=int, help="stop each run after this many epochs (dry runs)")
    go.add_argument("--memory", type=float, default=0.8, help="share of GPU memory for all trainers together")
    go.add_argument("--min-stage-seconds", type=float, default=90, help="start no stage with less time left")
    go.add_argument("--tune-model", default="rir32")
    go.add_argument("--tune-grid", default="paper")
    go.add_argument("--tune-recipe", default="paper")
    go.add_argument("--tune-epochs", type=int, default=10, help="epochs per trial")
    go.add_argument("--tune-trials", type=int, default=16, help="trials in all (earlier calls count)")
    go.add_argument("--tune-workers", type=int, default=4, help="concurrent trainers (KerasTuner's chief/workers)")
    go.add_argument("--bench-models", default="rir32,resnet32,resnet_init32,cnn32,rir18_wide,resnet18_wide")
    go.add_argument("--bench-precisions", default="float32,mixed_bfloat16")
    go.add_argument("--bench-batch", type=int, default=128)
    go.add_argument("--bench-steps", type=int, default=50, help="timed training steps per repeat")
    go.add_argument("--bench-width", type=float, default=1.0, help="width multiplier (dry runs)")
    go.set_defaults(func=run)
    back = commands.add_parser("collect", help="unpack what a run brought back into results/")
    back.add_argument("source", help="the folder holding manifest.json and state-N.tar.gz (the call's files_at)")
    back.add_argument("--results", default="results")
    back.set_defaults(func=lambda a: transport.collect(a.source, a.results) and 0)
    size = commands.add_parser("size", help="what a device call would send, against its 64 MiB limit")
    size.add_argument("--carry", nargs="*", default=[], help="the paths the call carries")
    size.add_argument("--part-mib", action="store_true",
                      help="print only the MiB one more carried file may hold (the part size of tools/gpu/parts.py)")
    size.set_defaults(func=lambda a: transport.print_size(a.carry, a.part_mib))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
