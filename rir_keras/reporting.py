"""Writing reports: files written atomically, and markdown tables."""
import json
import os


def write_text(text, path):
    """Write ``text`` to ``path`` through a temporary file renamed into place: a kill mid-write
    leaves the previous, complete file."""
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, path)


def write_json(data, path):
    """Write ``data`` as indented JSON with sorted keys, atomically (``write_text``)."""
    write_text(json.dumps(data, indent=2, sort_keys=True), path)


def markdown_table(header, rows, align=None):
    """A markdown table (no trailing newline). ``align``: one separator per column (``"---"``,
    ``"---:"``, ...), or one for all of them; default ``"---"``. Cells are written with ``str``."""
    align = align or "---"
    separators = [align] * len(header) if isinstance(align, str) else list(align)
    if len(separators) != len(header):
        raise ValueError(f"align must have one separator per column ({len(header)}). Received: align={align!r}")
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(separators) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
