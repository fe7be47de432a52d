#!/usr/bin/env bash
# The GPU path end to end on this CPU, with the same scripts and a tiny budget (make gpu-dry-run).
# A fresh virtual environment without TensorFlow stands in for the GPU machine's image: Python 3.12
# where this machine has one (else python3), jax[cpu] 0.11.2 as there, numpy, h5py, Pillow, ...;
# tools/gpu/run.sh installs the carried wheels and rir_keras into it offline, as it will there. Two
# calls on two "fresh machines" (separate live folders): the first trains Table 1 one epoch and
# stops each run between epochs; `collect` brings its state back here; the second continues it to
# the end and runs every later stage; then the results are checked. State: .gpu/dry/ (ignored).
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
rm -rf "$DRY/results" "$DRY"/live-* "$DRY"/out-* "$DRY"/site-*
tiny="--width-multiplier 0.125 --train-limit 128 --test-limit 64 --batch-size 32"
common=(--results "$DRY/results" --epochs 2 --train-args "$tiny" --min-stage-seconds 5
        --tune-grid tiny --tune-trials 2 --tune-epochs 1 --tune-workers 2
        --bench-models rir32,resnet32 --bench-precisions float32 --bench-batch 32 --bench-steps 4 --bench-width 0.125)
call() {  # call N [runner options]: one device call on a fresh machine N
    local n=$1
    shift
    echo "dry run: call $n"
    PYTHON="$venv/bin/python" WHEELS=$wheels SITE="$DRY/site-$n" OUT="$DRY/out-$n" RIR_KERAS_DATA="$DRY/data" \
        bash tools/gpu/run.sh --live "$DRY/live-$n" "${common[@]}" "$@"
    python3 tools/gpu/runner.py collect "$DRY/out-$n" --results "$DRY/results"
}
start=$(date +%s)
call 1 --stages table1 --stop-after-epochs 1 --budget 900
call 2 --budget 1500
PYTHONPATH="$DRY/site-2" KERAS_BACKEND=jax JAX_PLATFORMS=cpu "$venv/bin/python" -P -m rir_keras.cli reproduce \
    --status "$DRY/results/table32-cifar10-paper-gpu"
python3 - "$DRY/results" <<'PY'
import glob, json, os, sys
results = sys.argv[1]
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
    if not os.path.isfile(os.path.join(results, campaign, "results.md")):
        problems.append(f"{campaign}: no results.md")
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
echo "dry run: passed in $(( $(date +%s) - start )) s (set-up excluded)"
