"""Atomic writes (rir_keras.atomic) and markdown tables (rir_keras.markdown)."""
import json

import pytest

from rir_keras import atomic, markdown


def test_markdown_table_aligns_each_column():
    table = markdown.table(["a", "b"], [[1, "x"], [2.5, None]], align=["---", "---:"])
    assert table.splitlines() == ["| a | b |", "| --- | ---: |", "| 1 | x |", "| 2.5 | None |"]
    assert markdown.table(["a"], []).splitlines() == ["| a |", "| --- |"]


def test_markdown_table_names_a_bad_align():
    with pytest.raises(ValueError, match=r"one separator per column \(2\). Received: align=\['---'\]"):
        markdown.table(["a", "b"], [], align=["---"])


def test_writes_replace_the_file_and_leave_no_temporary(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("old")
    atomic.write_json({"b": 1, "a": [2]}, path)
    assert json.loads(path.read_text()) == {"a": [2], "b": 1}
    assert path.read_text().startswith('{\n  "a"')  # indented, keys sorted
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
