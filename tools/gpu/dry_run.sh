#!/usr/bin/env bash
# The GPU path end to end on this CPU, with the same scripts and a tiny budget (make gpu-dry-run).
# A fresh virtual environment without TensorFlow stands in for the GPU machine's image: Python 3.12
# where this machine has one (else python3), jax[cpu] 0.11.2 as there, numpy, h5py, Pillow, ...;
# tools/gpu/run.sh installs the carried wheels and rir_keras into it offline, as it will there. Two
# "fresh machines" (separate live folders): call 1 trains Table 1 one epoch and stops each run
# between epochs; `collect` brings its state back here; call 2 (machine 2) continues it to the end
# and runs tune and bench; call 3 (machine 2, warm) trains the wide stages, and it and the calls after
# it bring their weights back in small volumes (--volume-mib), a few runs a call, until none wait;
# then the results are checked, and one wide run ships into a temporary store. State: .gpu/dry/ (ignored).
set -euo pipefail
cd "$(dirname "$0")/../.."
DRY=.gpu/dry
SHARED=${SHARED:-../shared/datasets}
PY=${GPU_DRY_PYTHON:-}
if [ -z "$PY" ]; then  # the first Python 3.12 that runs (a pyenv shim may not), else python3
    for candidate in python3.12 ~/.pyenv/versions/3.12*/bin/python3.12 python3; do
        if "$candidate" -c 'import sys, venv' >/dev/null 2>&1; then PY=$candidate; break; fi
    done
fi
version=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
venv=$DRY/venv-py$version
if [ ! -f "$venv/.ready" ]; then
    echo "dry run: creating $venv (Python $version, no TensorFlow; a few minutes the first time)"
    rm -rf "$venv"
    "$PY" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    jax='jax[cpu]==0.11.2'
    [ "$version" = 3.12 ] || jax='jax[cpu]'  # 0.11 needs Python 3.12
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$jax" numpy h5py pillow matplotlib \
        pyyaml psutil absl-py rich ml-dtypes packaging requests grpcio protobuf typing-extensions setuptools wheel
    touch "$venv/.ready"
fi
"$venv/bin/python" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("tensorflow") is not None)' \
    || { echo "dry run: error: $venv has TensorFlow" >&2; exit 1; }
if [ "$version" = 3.12 ]; then
    wheels=.whl
    ls .whl/*.whl >/dev/null 2>&1 || bash tools/gpu/fetch_wheels.sh
else
    wheels=$DRY/wheels-py$version
    ls "$wheels"/*.whl >/dev/null 2>&1 || bash tools/gpu/fetch_wheels.sh --python-version "$version" --dest "$wheels"
fi
# The lossless mini archives stand in for the full ones, under the names the runner asks for: made
# lossless WebP (make_webp.py) and cut into parts (parts.py) as prepare.sh does with the full ones.
# The machine holds all parts but the last of each at first: nothing is joined then; run.sh joins
# them once the last parts came (a warm machine keeps what earlier calls carried).
rm -rf "$DRY/data" "$DRY/webp" "$DRY/held"
mkdir -p "$DRY/data" "$DRY/webp" "$DRY/held"
for d in cifar10:cifar10/cifar10-png-mini cifar100:cifar100/cifar100-mini; do
    "$venv/bin/python" tools/gpu/make_webp.py "$SHARED/${d#*:}.tar.gz" --output "$DRY/webp/${d%%:*}-webp.tar.gz" --force
    python3 tools/gpu/parts.py split "$DRY/webp/${d%%:*}-webp.tar.gz" --into "$DRY/data" --part-mib 0.5
    last=$(ls "$DRY/data/${d%%:*}-webp.tar.gz".part[0-9]* | sort -V | tail -1)
    mv "$last" "$DRY/held/"
done
waiting=$(python3 tools/gpu/parts.py assemble "$DRY/data")
echo "$waiting"
if ls "$DRY/data"/*-webp.tar.gz >/dev/null 2>&1 || [ "$(grep -c 'still to carry' <<< "$waiting")" != 2 ]; then
    echo "dry run: error: parts joined, or not reported missing, while the last parts were held back" >&2; exit 1
fi
mv "$DRY/held"/* "$DRY/data/"
rm -rf "$DRY/results" "$DRY"/live-* "$DRY"/out-* "$DRY"/site-* "$DRY/store"
# The full (mini) test split, 200 images: a run measured on a subset does not ship.
tiny="--width-multiplier 0.125 --train-limit 128 --batch-size 32"
common=(--results "$DRY/results" --epochs 2 --train-args "$tiny" --min-stage-seconds 5
        --tune-grid tiny --tune-trials 2 --tune-epochs 1 --tune-workers 2
        --bench-models rir32,resnet32 --bench-precisions float32 --bench-batch 32 --bench-steps 4 --bench-width 0.125)
call() {  # call N M [runner options]: device call N on machine M (a fresh one the first time)
    local n=$1 m=$2
    shift 2
    echo "dry run: call $n (machine $m)"
    PYTHON="$venv/bin/python" WHEELS=$wheels SITE="$DRY/site-$m" OUT="$DRY/out-$n" RIR_KERAS_DATA="$DRY/data" \
        bash tools/gpu/run.sh --live "$DRY/live-$m" "${common[@]}" "$@"
    python3 tools/gpu/runner.py collect "$DRY/out-$n" --results "$DRY/results"
}
waiting() {  # whether call N left finished runs' weights on the device
    python3 -c 'import json, sys; sys.exit(not any(f.endswith(".parts.json") for f in json.load(open(sys.argv[1]))["left_out"]))' \
        "$DRY/out-$1/manifest.json"
}
start=$(date +%s)
call 1 1 --stages table1 --stop-after-epochs 1 --budget 900
call 2 2 --skip wide10,wide100 --budget 1500
# A tiny wide model's weights (about 0.7 MiB) in volumes of 0.5 MiB: two parts each, six volumes a call.
call 3 2 --stages wide10,wide100 --volume-mib 0.5 --budget 1500
n=3
while waiting $n; do
    [ $n -lt 8 ] || { echo "dry run: error: weights still on the device after call $n" >&2; exit 1; }
    n=$((n + 1))
    call $n 2 --stages wide10,wide100 --volume-mib 0.5 --budget 300
done
PYTHONPATH="$DRY/site-2" KERAS_BACKEND=jax JAX_PLATFORMS=cpu "$venv/bin/python" -P -m rir_keras.commands.main reproduce \
    --status "$DRY/results/table32-cifar10-paper-gpu"
python3 - "$DRY/results" "$DRY/live-2/results" "$n" <<'PY'
import glob, json, os, sys
sys.path.insert(0, "tools/gpu")
import parts
from transport import WEIGHTS_FILE, WEIGHTS_PLAN
results, device, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
def load(path):
    with open(path) as handle:
        return json.load(handle)
problems = []
for name in ("rir32", "resnet32", "resnet_init32", "cnn32"):
    run = os.path.join(results, "table32-cifar10-paper-gpu", name, "seed0")
    r = load(os.path.join(run, "results.json"))
    sessions = [json.loads(line) for line in open(os.path.join(run, "sessions.jsonl"))]
    if not (r["backend"] == "jax" and r["resumed"] and r["epochs_this_run"] == 1 and len(r["history"]["epoch"]) == 2
            and [s["first_epoch"] for s in sessions] == [0, 1] and os.path.isfile(os.path.join(run, "model.keras"))
            and not os.path.exists(os.path.join(run, "backup"))):
        problems.append(f"table1 {name}: not stopped after epoch 1 and continued on the second machine")
for campaign in ("table18wide-cifar10-fast-gpu", "table18wide-cifar100-fast-gpu"):
    for name in ("rir18_wide", "resnet18_wide", "resnet_init18_wide", "cnn18_wide"):
        if not os.path.isfile(os.path.join(results, campaign, name, "seed0", "results.json")):
            problems.append(f"{campaign} {name}: not finished")
        run = os.path.join(campaign, name, "seed0")  # its weights alone, brought back in parts, joined here
        here, there = os.path.join(results, run, WEIGHTS_FILE), os.path.join(device, run, WEIGHTS_FILE)
        plan = load(os.path.join(results, run, WEIGHTS_PLAN)) if os.path.isfile(here) else {}
        if not (os.path.isfile(there) and plan.get("sha256") == parts.sha256(here) == parts.sha256(there)
                and len(plan["parts"]) >= 2 and not os.path.exists(os.path.join(results, run, "model.keras"))):
            problems.append(f"{run}: its weights did not come back in parts with the device's SHA-256 (or model.keras did)")
    if not os.path.isfile(os.path.join(results, campaign, "results.md")):
        problems.append(f"{campaign}: no results.md")
brought = [[f for f in load(os.path.join(results, "..", f"out-{n}", "manifest.json"))["packed"]
            if f.endswith(WEIGHTS_PLAN)] for n in range(3, calls + 1)]
plans = [f for call in brought for f in call]
if len(plans) != 8 or len(set(plans)) != 8 or sum(1 for call in brought if call) < 2:
    problems.append(f"wide weights: not each run's once over several calls: {brought}")
import hashlib
for campaign, archive in (("table32-cifar10-paper-gpu", "cifar10"), ("table18wide-cifar10-fast-gpu", "cifar10"),
                          ("table18wide-cifar100-fast-gpu", "cifar100")):  # trained on the joined lossless parts
    digest = hashlib.sha256(open(os.path.join(results, "..", "webp", f"{archive}-webp.tar.gz"), "rb").read()).hexdigest()
    for path in glob.glob(os.path.join(results, campaign, "*", "seed0", "results.json")):
        if load(path).get("data") != {"file": f"{archive}-webp.tar.gz", "sha256": digest}:
            problems.append(f"{path}: trained on {load(path).get('data')}, not the joined {archive}-webp.tar.gz")
tune = [json.loads(line) for line in open(os.path.join(results, "gpu-tune", "throughput.jsonl"))]
if tune[-1]["trials_after"] < 2:
    problems.append(f"tune: {tune[-1]}")
if not glob.glob(os.path.join(results, "gpu-bench", "throughput-*.md")):
    problems.append("bench: no throughput table")
print("dry run: " + ("PROBLEMS:\n  " + "\n  ".join(problems) if problems else "every stage checked"))
sys.exit(1 if problems else 0)
PY
# Shipping a wide run from its weights alone, on CIFAR-100 (the mini archive stands in, under the full
# one's name), with the runs' engine (this venv's JAX, this CPU, the runs' batch size): the count of
# correct test images must equal the run's own, image for image.
PYTHONPATH="$DRY/site-2" KERAS_BACKEND=jax JAX_PLATFORMS=cpu RIR_KERAS_DATA="$DRY/webp" "$venv/bin/python" \
    tools/ship_weights.py "$DRY/results/table18wide-cifar100-fast-gpu/rir18_wide/seed0" --store "$DRY/store" --batch-size 32
PYTHONPATH="$DRY/site-2" KERAS_BACKEND=jax JAX_PLATFORMS=cpu "$venv/bin/python" -P -c '
import sys
from rir_keras.applications import pretrained
entry = pretrained.entry("rir18_wide", "cifar100", sys.argv[1])
assert pretrained.check_manifest(sys.argv[1]) == 1 and entry["classes"] == pretrained.WEIGHTS_NAMES["cifar100"]["classes"]
print("dry run: shipped rir18_wide weights=cifar100 into %s: %d of %d" % (sys.argv[1], entry["correct"], entry["test_images"]))
' "$DRY/store"
echo "dry run: passed in $(( $(date +%s) - start )) s (set-up excluded)"
