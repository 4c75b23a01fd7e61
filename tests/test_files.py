"""Atomic writes: old content or new content, never a partial file; normal permissions."""

import os

import pytest

from pytest_hemorrhage import files
from pytest_hemorrhage.files import atomic_write_bytes, atomic_write_text


def test_writes_and_replaces(tmp_path):
    target = tmp_path / "sub" / "report.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.json"]


def test_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "f", b"x")
    finally:
        os.umask(old)
    assert oct((tmp_path / "f").stat().st_mode & 0o777) == oct(0o644)


def test_interrupt_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "snap.safetensors"
    target.write_bytes(b"old")

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b"new content")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["snap.safetensors"]


def test_atomic_path_publishes_what_the_writer_wrote(tmp_path):
    target = tmp_path / "model.gguf"
    with files.atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_bytes(b"weights")  # a writer that takes a file name, not bytes
        assert not target.exists()
    assert target.read_bytes() == b"weights"
    assert [p.name for p in tmp_path.iterdir()] == ["model.gguf"]


def test_atomic_path_removes_the_partial_file_on_error(tmp_path):
    target = tmp_path / "model.gguf"
    with pytest.raises(RuntimeError, match="quantiser failed"):
        with files.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("quantiser failed")
    assert list(tmp_path.iterdir()) == []
