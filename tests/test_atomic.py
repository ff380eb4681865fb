"""Atomic result files: a reader sees the old file or the new one, and one run's set, never a mix."""

from __future__ import annotations

import os
import stat

import pytest

from vse.atomic import write_atomic, write_set


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_write_atomic_replaces_and_keeps_mode_0644(tmp_path):
    path = tmp_path / "sub" / "table.md"
    write_atomic(path, "one\n")
    write_atomic(path, b"two\n")
    assert path.read_bytes() == b"two\n"
    assert mode(path) == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == ["table.md"]  # no temporary file left


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "scores.png"
    write_atomic(path, b"old")

    def killed(*args):  # a SIGTERM arriving just before the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, b"new" * 1000)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["scores.png"]


def test_write_set_swaps_the_whole_set_and_keeps_other_files(tmp_path):
    out = tmp_path / "results" / "exp"
    write_set(out, {"config.json": "{1}", "results.jsonl": "r1", "table.md": "t1"})
    (out / "notes.txt").write_text("mine")
    write_set(out, {"config.json": "{2}", "results.jsonl": "r2", "table.md": "t2"})
    assert {p.name: p.read_text() for p in out.iterdir()} == {
        "config.json": "{2}",
        "results.jsonl": "r2",
        "table.md": "t2",
        "notes.txt": "mine",
    }
    assert mode(out / "table.md") == 0o644
    assert sorted(p.name for p in out.parent.iterdir()) == ["exp"]  # no staging or old folder left


def test_write_set_failing_half_way_leaves_the_previous_set_whole(tmp_path, monkeypatch):
    out = tmp_path / "exp"
    write_set(out, {"a": "1", "b": "1"})
    real_fsync = os.fsync
    calls = []

    def fail_on_second(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError("disk full")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fail_on_second)
    with pytest.raises(OSError, match="disk full"):
        write_set(out, {"a": "2", "b": "2"})
    assert {p.name: p.read_text() for p in out.iterdir()} == {"a": "1", "b": "1"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]


@pytest.mark.parametrize("name", ["../x", "a/b", "", "."])
def test_write_set_takes_plain_names_only(tmp_path, name):
    with pytest.raises(ValueError, match="plain file names"):
        write_set(tmp_path / "x", {name: "1"})
