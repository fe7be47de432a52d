"""Archives too big for one device call travel in parts, over several calls to one warm machine.

A device call carries at most 64 MiB, the working tree included; the official CIFAR-10 alone is
103.6 MiB (lossless WebP: nothing lossless is smaller). So, here, `split` cuts an archive into
numbered parts of at most ``part_bytes`` beside a small plan (``ARCHIVE.parts.json``: the
archive's name, size and SHA-256, and each part's); each call carries the plan and one or more
parts into the same git-ignored folder (``.devdata/...``). Files a call carried stay on the machine
while it is warm, so on the GPU machine `assemble` (run.sh runs it before the stages) finds the
parts of earlier calls, and once all are there joins them, checks the SHA-256 of the whole and
removes the parts. Until then it says which parts are missing, and the stages that need the
archive are skipped with a note. A machine that went cold lost its parts: carry them all again.

Standard library only: it runs before anything is installed.

    python3 tools/gpu/parts.py split ARCHIVE --into DIR --part-mib N
    python3 tools/gpu/parts.py assemble DIR [DIR ...]
"""
import argparse
import hashlib
import json
import os
import sys

MIB = 2 ** 20
PLAN_SUFFIX = ".parts.json"


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(MIB), b""):
            digest.update(block)
    return digest.hexdigest()


def split(archive, folder, part_bytes):
    """Cut ``archive`` into ``folder/NAME.partK`` (K from 1) of at most ``part_bytes`` each, and write
    ``folder/NAME.parts.json``; returns the plan. Parts of an earlier split of the same name go."""
    if part_bytes < 1:
        raise ValueError(f"part size must be at least one byte. Received: part_bytes={part_bytes}")
    name = os.path.basename(archive)
    os.makedirs(folder, exist_ok=True)
    for stale in os.listdir(folder):
        if stale.startswith(name + ".part"):
            os.remove(os.path.join(folder, stale))
    parts = []
    with open(archive, "rb") as source:
        for number in range(1, 10 ** 6):
            data = source.read(part_bytes)
            if not data:
                break
            part = f"{name}.part{number}"
            with open(os.path.join(folder, part), "wb") as target:
                target.write(data)
            parts.append({"file": part, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    plan = {"archive": name, "size": os.path.getsize(archive), "sha256": sha256(archive), "parts": parts}
    with open(os.path.join(folder, name + PLAN_SUFFIX), "w", encoding="utf-8") as handle:
        json.dump(plan, handle, indent=2)
    return plan


def assemble(folder, say=print):
    """Join every archive of ``folder`` whose plan's parts are all there and intact; returns the names
    of the archives still incomplete. An archive already there with the plan's SHA-256 stays."""
    waiting = []
    for plan_file in sorted(f for f in os.listdir(folder) if f.endswith(PLAN_SUFFIX)):
        with open(os.path.join(folder, plan_file), encoding="utf-8") as handle:
            plan = json.load(handle)
        target = os.path.join(folder, plan["archive"])
        if os.path.isfile(target) and os.path.getsize(target) == plan["size"] and sha256(target) == plan["sha256"]:
            continue
        missing = [p["file"] for p in plan["parts"] if not _intact(os.path.join(folder, p["file"]), p)]
        if missing:
            say(f"parts: {plan['archive']}: {len(plan['parts']) - len(missing)} of {len(plan['parts'])} parts "
                f"here; still to carry: {', '.join(missing)}")
            waiting.append(plan["archive"])
            continue
        partial = target + ".joining"
        with open(partial, "wb") as joined:
            for part in plan["parts"]:
                with open(os.path.join(folder, part["file"]), "rb") as handle:
                    joined.write(handle.read())
        if sha256(partial) != plan["sha256"]:
            os.remove(partial)
            raise ValueError(f"{target}: the joined parts do not have the plan's SHA-256 {plan['sha256']}")
        os.replace(partial, target)
        for part in plan["parts"]:
            os.remove(os.path.join(folder, part["file"]))
        say(f"parts: {plan['archive']}: joined from {len(plan['parts'])} parts, SHA-256 checked "
            f"({plan['size'] / MIB:.1f} MiB)")
    return waiting


def _intact(path, part):
    return os.path.isfile(path) and os.path.getsize(path) == part["size"] and sha256(path) == part["sha256"]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="parts.py", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    cut = commands.add_parser("split", help="cut an archive into parts and write its plan")
    cut.add_argument("archive")
    cut.add_argument("--into", required=True, help="the folder for the parts and the plan")
    cut.add_argument("--part-mib", type=float, required=True, help="the largest part, in MiB")
    join = commands.add_parser("assemble", help="join the archives whose parts are all there")
    join.add_argument("folders", nargs="+")
    args = parser.parse_args(argv)
    if args.command == "split":
        if not os.path.isfile(args.archive):
            parser.error(f"archive not found. Received: archive={args.archive!r}")
        if not args.part_mib > 0:
            parser.error(f"--part-mib must be a number > 0. Received: --part-mib={args.part_mib}")
        plan = split(args.archive, args.into, int(args.part_mib * MIB))
        print(f"parts: {plan['archive']} ({plan['size'] / MIB:.1f} MiB) in {len(plan['parts'])} parts of at most "
              f"{args.part_mib:g} MiB in {args.into}")
        return 0
    for folder in args.folders:
        if os.path.isdir(folder):
            assemble(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
