#!/usr/bin/env python3
"""Make the CIFAR-100 copy the lent GPU machine trains on: JPEG quality 95 from the lossless PNG archive.

    python tools/gpu/make_cifar100_jpeg.py [SOURCE.tar.gz] [--output .devdata/cifar100/cifar100-jpeg95.tar.gz]

The PNG archive (126 MiB) is over the device tool's 64 MiB limit on what a call carries; this copy
is about 41 MiB. Same layout (``<split>/<class>/NNNN.jpg``, so the same labels), every image encoded
by Pillow at quality 95 with its default 4:2:0 chroma subsampling (4:4:4 would be about 53 MiB).
JPEG is lossy: report accuracies on it as "CIFAR-100 (JPEG q95 copy)". The archive is
reproducible: members in the source's order, fixed times and owners, no gzip timestamp. Only the
standard library and Pillow are needed.
"""
import argparse
import gzip
import io
import os
import sys
import tarfile
import time

DEFAULT_SOURCE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "datasets", "cifar100",
                              "cifar100-png.tar.gz")
DEFAULT_OUTPUT = os.path.join(".devdata", "cifar100", "cifar100-jpeg95.tar.gz")
QUALITY = 95


def convert(source, output, quality=QUALITY):
    """Write ``output`` (.tar.gz of JPEGs) from ``source`` (.tar.gz of PNGs); returns the image count."""
    from PIL import Image

    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    temporary = output + ".part"
    count = 0
    with tarfile.open(source, "r|gz") as reader, open(temporary, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as compressed, \
            tarfile.open(fileobj=compressed, mode="w|", format=tarfile.USTAR_FORMAT) as writer:
        for member in reader:
            name = member.name
            if member.isdir():
                info = tarfile.TarInfo(name)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                writer.addfile(info)
                continue
            if not member.isfile():
                continue
            data = reader.extractfile(member).read()
            if name.lower().endswith(".png"):
                with Image.open(io.BytesIO(data)) as image:
                    buffer = io.BytesIO()
                    image.convert("RGB").save(buffer, "JPEG", quality=quality)
                data, name = buffer.getvalue(), name[:-4] + ".jpg"
                count += 1
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            writer.addfile(info, io.BytesIO(data))
    os.replace(temporary, output)
    return count


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", nargs="?", default=DEFAULT_SOURCE, help="the PNG archive (default: %(default)s)")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="default: %(default)s")
    parser.add_argument("--quality", type=int, default=QUALITY)
    parser.add_argument("--force", action="store_true", help="write it again even if it exists")
    args = parser.parse_args(argv)
    if os.path.isfile(args.output) and not args.force:
        print(f"{args.output} exists ({os.path.getsize(args.output) / 2**20:.1f} MiB); --force writes it again")
        return 0
    if not os.path.isfile(args.source):
        print(f"make_cifar100_jpeg: error: source archive not found: {args.source}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    count = convert(args.source, args.output, args.quality)
    print(f"{args.output}: {count} images, JPEG quality {args.quality}, {os.path.getsize(args.output) / 2**20:.1f} MiB "
          f"in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
