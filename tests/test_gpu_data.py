"""The GPU runner's data (tools/gpu/parts.py, tools/gpu/make_webp.py): lossless archives travel in
parts over several device calls, and are joined, checked and read with exactly their pixels."""
import json
import os

import numpy as np
import pytest

from conftest import load_script
from rir_keras.data import load_split


@pytest.fixture(scope="module")
def parts():
    return load_script("tools/gpu/parts.py")


def test_parts_join_only_when_all_have_come_and_give_back_the_archive(parts, tmp_path, data_dir):
    archive = data_dir / "cifar10-png-mini.tar.gz"
    here, there = tmp_path / "here", tmp_path / "there"
    plan = parts.split(str(archive), str(here), 1 << 20)
    assert [p["size"] for p in plan["parts"]] == [1 << 20, 1 << 20, archive.stat().st_size - 2 * (1 << 20)]
    assert plan["sha256"] == parts.sha256(str(archive))
    there.mkdir()
    said = []
    carried = ["cifar10-png-mini.tar.gz.parts.json"] + [p["file"] for p in plan["parts"]]  # one call each
    for name in carried[:-1]:
        os.replace(here / name, there / name)
        assert parts.assemble(str(there), say=said.append) == ["cifar10-png-mini.tar.gz"]
        assert not (there / "cifar10-png-mini.tar.gz").exists()
    assert "still to carry: cifar10-png-mini.tar.gz.part3" in said[-1]
    os.replace(here / carried[-1], there / carried[-1])
    assert parts.assemble(str(there), say=said.append) == []
    assert (there / "cifar10-png-mini.tar.gz").read_bytes() == archive.read_bytes()
    assert sorted(os.listdir(there)) == ["cifar10-png-mini.tar.gz", "cifar10-png-mini.tar.gz.parts.json"]
    assert parts.assemble(str(there), say=said.append) == []  # joined once; a later call finds it whole


def test_a_damaged_part_is_not_joined(parts, tmp_path, data_dir):
    archive = data_dir / "cifar10-png-mini.tar.gz"
    parts.split(str(archive), str(tmp_path), 1 << 20)
    part = tmp_path / "cifar10-png-mini.tar.gz.part2"
    part.write_bytes(b"x" + part.read_bytes()[1:])  # same size, other bytes: a transfer gone wrong
    said = []
    assert parts.assemble(str(tmp_path), say=said.append) == ["cifar10-png-mini.tar.gz"]
    assert "still to carry: cifar10-png-mini.tar.gz.part2" in said[0]
    assert not (tmp_path / "cifar10-png-mini.tar.gz").exists()


def test_a_plan_whose_parts_do_not_add_up_is_an_error(parts, tmp_path, data_dir):
    parts.split(str(data_dir / "cifar10-png-mini.tar.gz"), str(tmp_path), 1 << 20)
    plan_file = tmp_path / "cifar10-png-mini.tar.gz.parts.json"
    plan = json.loads(plan_file.read_text())
    plan["sha256"] = "0" * 64
    plan_file.write_text(json.dumps(plan))
    with pytest.raises(ValueError, match="do not have the plan's SHA-256"):
        parts.assemble(str(tmp_path), say=lambda m: None)
    assert not (tmp_path / "cifar10-png-mini.tar.gz").exists()
    assert not (tmp_path / "cifar10-png-mini.tar.gz.joining").exists()


def test_split_refuses_a_bad_part_size_by_name(parts, tmp_path, data_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parts.main(["split", str(data_dir / "cifar10-png-mini.tar.gz"), "--into", str(tmp_path), "--part-mib", "0"])
    assert exit_info.value.code == 2 and "--part-mib=0" in capsys.readouterr().err


def test_make_webp_keeps_every_pixel_and_label(tmp_path, data_dir):
    make_webp = load_script("tools/gpu/make_webp.py")
    source = data_dir / "cifar10-png-mini.tar.gz"
    output = tmp_path / "cifar10-webp.tar.gz"
    assert make_webp.convert(str(source), str(output)) == 1200
    again = tmp_path / "again-webp.tar.gz"
    assert make_webp.convert(str(output), str(again)) == 0  # WebP in: copied as it is
    assert again.read_bytes() == output.read_bytes()  # and reproducible
    for split in ("train", "test"):
        png, webp = load_split(source, split), load_split(output, split)
        np.testing.assert_array_equal(webp.images, png.images)
        np.testing.assert_array_equal(webp.labels, png.labels)
        assert webp.class_names == png.class_names
