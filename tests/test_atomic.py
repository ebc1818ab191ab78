"""Atomic writes keep the old file on failure and explain a full disk."""
import errno

import pytest

from sma.atomic import atomic_write_path
from sma.errors import SMAInputError


def test_replaces_target_only_on_success(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with atomic_write_path(target) as tmp:
        tmp.write_bytes(b"new")
        assert target.read_bytes() == b"old"
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_failure_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_full_disk_is_explained(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(SMAInputError, match="not enough disk space"):
        with atomic_write_path(target):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_written_file_gets_umask_permissions(tmp_path):
    import os

    target = tmp_path / "out.bin"
    old = os.umask(0o022)
    try:
        with atomic_write_path(target) as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == 0o644
