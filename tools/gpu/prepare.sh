#!/usr/bin/env bash
# Here, before a GPU session: what its calls carry, in folders git ignores.
#   .whl/             the wheels the GPU machine lacks (fetch_wheels.sh)
#   .devdata/cifar10/  the official CIFAR-10 (cifar10-webp.tar.gz, 103.6 MiB) in parts, with its plan
#   .devdata/cifar100/ the official CIFAR-100 as lossless WebP (make_webp.py from the PNG archive, or the
#                      WebP archive as it is) in parts, with its plan
# Each part is as big as one call can carry beside the working tree and the wheels (PART_MIB, else
# computed from the tree's size); tools/gpu/parts.py joins them on the GPU machine. Then it prints
# the calls that bring each dataset over, each within the device tool's 64 MiB.
#   bash tools/gpu/prepare.sh            (SHARED=../shared/datasets by default)
set -euo pipefail
cd "$(dirname "$0")/../.."
SHARED=${SHARED:-../shared/datasets}
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}  # Pillow for make_webp.py
if ! ls .whl/*.whl >/dev/null 2>&1; then
    bash tools/gpu/fetch_wheels.sh
fi
PART_MIB=${PART_MIB:-$(python3 tools/gpu/runner.py size --part-mib --carry .whl)}
echo "parts of at most $PART_MIB MiB (what a call can carry beside the working tree and .whl)"
mkdir -p .devdata/cifar10 .devdata/cifar100 .devdata/webp
python3 tools/gpu/parts.py split "$SHARED/cifar10/cifar10-webp.tar.gz" --into .devdata/cifar10 --part-mib "$PART_MIB"
# CIFAR-100: lossless WebP, from whichever lossless archive the shared folder holds.
if [ -f "$SHARED/cifar100/cifar100-webp.tar.gz" ]; then
    cifar100="$SHARED/cifar100/cifar100-webp.tar.gz"
else
    cifar100=.devdata/webp/cifar100-webp.tar.gz
    "$PYTHON" tools/gpu/make_webp.py "$SHARED/cifar100/cifar100-png.tar.gz" --output "$cifar100"
fi
python3 tools/gpu/parts.py split "$cifar100" --into .devdata/cifar100 --part-mib "$PART_MIB"
python3 tools/gpu/runner.py size --carry .whl .devdata/cifar10/cifar10-webp.tar.gz.part1 || echo "  OVER THE LIMIT"
echo "the calls, in order (tools/gpu/README.md): each data call's command is"
echo "  python3 tools/gpu/parts.py assemble .devdata/cifar10 .devdata/cifar100"
for d in cifar10 cifar100; do
    for part in .devdata/$d/*.part[0-9]*; do
        echo "  carry: [\".devdata/$d/$(basename "${part%.part*}").parts.json\", \"$part\"]"
    done
done
