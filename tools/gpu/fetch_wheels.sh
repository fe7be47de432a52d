#!/usr/bin/env bash
# Download the wheels the lent GPU machines lack (tools/gpu/requirements.txt) for their Python (3.12,
# manylinux x86-64) into a folder git ignores, by default .whl/ (the device tool carries it).
#   bash tools/gpu/fetch_wheels.sh [--python-version 3.12] [--dest .whl]
# Needs pip and the package registry; nothing else. One version of each package is kept.
set -euo pipefail
cd "$(dirname "$0")/../.."
version=3.12
dest=.whl
python=${PYTHON:-python3}
while [ $# -gt 0 ]; do
    case "$1" in
        --python-version) version=$2; shift 2 ;;
        --dest) dest=$2; shift 2 ;;
        *) echo "usage: $0 [--python-version X.Y] [--dest DIR]" >&2; exit 2 ;;
    esac
done
mkdir -p "$dest"
rm -f "$dest"/*.whl  # a stale second version would stop the install there
"$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$version" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d "$dest" -r tools/gpu/requirements.txt
ls -l "$dest"/*.whl | awk '{printf "%10d  %s\n", $5, $9}'
du -sh "$dest" | awk '{print "wheels: " $1 " in " $2}'
