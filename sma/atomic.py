"""Atomic file writes: a temp file in the target folder, renamed over the target only when complete.

Temp files are named ``.<target name>.sma-<pid>-<random><suffix>``. A writer killed mid-write (power
loss, SIGKILL) leaves its temp file behind; the next write into that folder removes temp files whose
process is gone, so they never pile up and never replace a target.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import SMAInputError

TEMP_MARKER = "sma-"
_TEMP_NAME = re.compile(rf"^\..+\.{TEMP_MARKER}(?P<pid>\d+)-[A-Za-z0-9_]+\.[A-Za-z0-9]+$")
_UNWRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Temp files of this module's writers in ``folder`` whose process no longer runs."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return [Path(folder) / name for name in sorted(names)
            if (m := _TEMP_NAME.match(name)) and int(m["pid"]) != os.getpid() and not _alive(int(m["pid"]))]


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete :func:`stale_temp_files` of ``folder``; returns what was removed."""
    removed = []
    for path in stale_temp_files(folder):
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path)
    return removed


def error_code(error: BaseException) -> int | None:
    """The errno of a failed write: ``OSError.errno``, or the ``(os error N)`` that safetensors puts in its
    messages (it reports a full disk as a ``SafetensorError``)."""
    code = getattr(error, "errno", None)
    if code is None and (found := re.search(r"os error (\d+)", str(error))):
        code = int(found.group(1))
    return code


def _write_error(target: Path, error: BaseException) -> SMAInputError | None:
    """The user-facing error for a full disk or an unwritable folder (None for other errors)."""
    code = error_code(error)
    reason = os.strerror(code) if code is not None else ""
    if code in (errno.ENOSPC, errno.EDQUOT):
        return SMAInputError(f"not enough disk space to write {target} ({reason}); free some space and try "
                             "again. Nothing was overwritten.")
    if code in _UNWRITABLE:
        return SMAInputError(f"cannot write {target}: the folder {target.parent} is not writable ({reason}); "
                             "pick another output folder or fix its permissions. Nothing was overwritten.")
    return None


def check_writable(folder: str | os.PathLike) -> None:
    """Raise now, not after an hour of training, when no file can be written into ``folder``.

    Creates (and removes) an empty temp file there.

    Raises:
        SMAInputError: the folder is read-only, not permitted, or its disk is full.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".write-check.{TEMP_MARKER}{os.getpid()}-", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(name)
    except OSError as error:
        friendly = _write_error(folder / "(new file)", error)
        if friendly is not None:
            raise friendly from error
        raise


@contextlib.contextmanager
def atomic_write_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success it replaces ``path``, on any error it is removed.

    The old file (if any) stays untouched until the new one is complete. A full disk or a read-only
    folder becomes an SMAInputError that says so. ``suffix``: the temp file's ending (for writers that
    go by it). Stale temp files of killed writers in the folder are removed first.
    """
    target = Path(path)
    tmp: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(target.parent)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.{TEMP_MARKER}{os.getpid()}-", suffix=suffix,
                                        dir=target.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the file gets the usual permissions
        os.replace(tmp, target)
    except Exception as error:  # noqa: BLE001 - only full-disk / read-only errors are re-worded
        friendly = _write_error(target, error)
        if friendly is not None:
            raise friendly from error
        raise
    finally:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
