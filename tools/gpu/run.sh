#!/usr/bin/env bash
# The command for the lent GPU machine, run there by the device tool from the repository root:
#   bash tools/gpu/run.sh [runner options]        (python3 tools/gpu/runner.py run --help lists them)
# Installs the carried wheels (.whl) and rir_keras itself offline into a folder of its own, points
# RIR_KERAS_DATA at the carried archives (.devdata/), joins those that came in parts, then runs tools/gpu/runner.py with the JAX
# backend; it writes the state to bring back into $OUT. tools/gpu/README.md has the whole session.
# Environment: PYTHON (python3), WHEELS (.whl), SITE (/tmp/rir-keras-site), OUT, RIR_KERAS_DATA.
set -uo pipefail
started=$(date +%s.%N)
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
SITE=${SITE:-/tmp/rir-keras-site}
export OUT=${OUT:-$PWD/.gpu/out}
mkdir -p "$OUT"
if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    echo "run.sh: error: no wheels in $WHEELS/: run 'bash tools/gpu/fetch_wheels.sh' here and carry .whl" >&2
    exit 2
fi
pip_install() {
    "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --disable-pip-version-check --target "$SITE" "$@"
}
pip_install "$WHEELS"/*.whl || { echo "run.sh: error: installing the wheels failed" >&2; exit 3; }
# rir_keras from this tree, into $SITE with its console script rir-keras.
pip_install --no-build-isolation . || { echo "run.sh: error: installing rir_keras failed" >&2; exit 3; }
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
export KERAS_BACKEND=jax
export RIR_KERAS_DATA=${RIR_KERAS_DATA:-$PWD/.devdata/cifar10:$PWD/.devdata/cifar100}
XLA_PYTHON_CLIENT_PREALLOCATE=false "$PYTHON" -P -c '
import importlib.util, sys, jax, keras, keras_tuner, rir_keras
tf = "absent" if importlib.util.find_spec("tensorflow") is None else "PRESENT"
print(f"run.sh: python {sys.version.split()[0]}, jax {jax.__version__}, keras {keras.__version__} "
      f"({keras.backend.backend()}), keras-tuner {keras_tuner.__version__}, tensorflow {tf}; devices {jax.devices()}")
' || { echo "run.sh: error: the installed packages do not import" >&2; exit 3; }
echo "run.sh: installed in $(awk "BEGIN {printf \"%.0f\", $(date +%s.%N) - $started}") s; RIR_KERAS_DATA=$RIR_KERAS_DATA"
# The archives that came in parts over earlier calls to this warm machine (tools/gpu/parts.py).
IFS=: read -ra data_folders <<< "$RIR_KERAS_DATA"
"$PYTHON" tools/gpu/parts.py assemble "${data_folders[@]}" || { echo "run.sh: error: joining the data parts failed" >&2; exit 3; }
exec "$PYTHON" -u tools/gpu/runner.py run --started "$started" --out "$OUT" "$@"
