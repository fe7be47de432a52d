#!/usr/bin/env python3
"""Make a lossless WebP archive of a dataset for the lent GPU machine: the same pixels, smaller.

    python tools/gpu/make_webp.py SOURCE.tar.gz --output .devdata/cifar100/cifar100-webp.tar.gz

The device tool carries at most 64 MiB a call, and lossless PNG is the biggest lossless form of
these images (CIFAR-100: 126 MiB as PNG). This writes every PNG member as lossless WebP (Pillow:
``lossless=True, quality=100``; exact pixels, as the tests check) and copies WebP members as they
are, so it takes a PNG archive or one that is WebP already. Same layout (``<split>/<class>/NNNN``,
so the same labels and names). The result still travels in parts (tools/gpu/parts.py). The archive
is reproducible: members in the source's order, fixed times and owners, no gzip timestamp. Only the
standard library and Pillow are needed.
"""
import argparse
import gzip
import io
import os
import sys
import tarfile
import time

WEBP_METHOD = 4  # Pillow's effort (0-6): 6 saves about 1% more and takes several times longer


def convert(source, output):
    """Write ``output`` (.tar.gz of lossless WebP) from ``source`` (.tar.gz of PNG or WebP images);
    returns the number of images converted from PNG."""
    from PIL import Image

    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    temporary = output + ".writing"
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
                    image.convert("RGB").save(buffer, "WEBP", lossless=True, quality=100, method=WEBP_METHOD)
                data, name = buffer.getvalue(), name[:-4] + ".webp"
                count += 1
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            writer.addfile(info, io.BytesIO(data))
    os.replace(temporary, output)
    return count


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", help="the archive of PNG or WebP images")
    parser.add_argument("--output", required=True, help="the WebP archive to write")
    parser.add_argument("--force", action="store_true", help="write it again even if it exists")
    args = parser.parse_args(argv)
    if os.path.isfile(args.output) and not args.force:
        print(f"{args.output} exists ({os.path.getsize(args.output) / 2**20:.1f} MiB); --force writes it again")
        return 0
    if not os.path.isfile(args.source):
        print(f"make_webp: error: source archive not found. Received: source={args.source!r}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    count = convert(args.source, args.output)
    print(f"{args.output}: {count} images converted from PNG, lossless WebP, {os.path.getsize(args.output) / 2**20:.1f} MiB "
          f"in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
