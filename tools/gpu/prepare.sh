#!/usr/bin/env bash
# Here, before a GPU session: what its calls carry, in folders git ignores.
#   .whl/                                      the wheels the GPU machine lacks (fetch_wheels.sh)
#   .devdata/cifar10/cifar10-jpeg.tar.gz       CIFAR-10 (JPEG copy), as it is in ../shared (18.7 MiB)
#   .devdata/cifar100/cifar100-jpeg95.tar.gz   CIFAR-100 as JPEG quality 95 (make_cifar100_jpeg.py, ~40 MiB)
# then prints what each kind of call would send against the device tool's 64 MiB.
#   bash tools/gpu/prepare.sh            (SHARED=../shared/datasets by default)
set -euo pipefail
cd "$(dirname "$0")/../.."
SHARED=${SHARED:-../shared/datasets}
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}  # Pillow for the copy
if ! ls .whl/*.whl >/dev/null 2>&1; then
    bash tools/gpu/fetch_wheels.sh
fi
mkdir -p .devdata/cifar10
if ! cmp -s "$SHARED/cifar10/cifar10-jpeg.tar.gz" .devdata/cifar10/cifar10-jpeg.tar.gz; then
    cp "$SHARED/cifar10/cifar10-jpeg.tar.gz" .devdata/cifar10/
fi
"$PYTHON" tools/gpu/make_cifar100_jpeg.py "$SHARED/cifar100/cifar100-png.tar.gz"
echo "a call that trains on CIFAR-10 (table1, wide10, tune, bench):"
python3 tools/gpu/runner.py size --carry .whl .devdata/cifar10 || echo "  OVER THE LIMIT"
echo "a call that trains on CIFAR-100 (wide100):"
python3 tools/gpu/runner.py size --carry .whl .devdata/cifar100 || echo "  OVER THE LIMIT"
