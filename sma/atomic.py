"""Atomic file writes: a temp file in the target folder, renamed over the target only when complete."""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import SMAInputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success it replaces ``path``, on any error it is removed.

    The old file (if any) stays untouched until the new one is complete. A full disk becomes an
    SMAInputError that says so. ``suffix``: the temp file's ending (for writers that go by it).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the file gets the usual permissions
        os.replace(tmp, target)
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise SMAInputError(
                f"not enough disk space to write {target} ({error.strerror}); free some space and try again. "
                "Nothing was overwritten.") from error
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
