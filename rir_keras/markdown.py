"""Markdown for the reports the package writes: a table and its cells."""


def cell(value, style="{:.4g}", missing=""):
    """One table cell: ``missing`` for None, ``style`` for a float, ``str`` for anything else."""
    if value is None:
        return missing
    return style.format(value) if isinstance(value, float) else str(value)


def table(header, rows, align=None):
    """A markdown table (no trailing newline). ``align``: one separator per column (``"---"``,
    ``"---:"``, ...), or one for all of them; default ``"---"``. Cells are written with ``str``."""
    align = align or "---"
    separators = [align] * len(header) if isinstance(align, str) else list(align)
    if len(separators) != len(header):
        raise ValueError(f"align must have one separator per column ({len(header)}). Received: align={align!r}")
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(separators) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
