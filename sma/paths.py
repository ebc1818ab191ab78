"""Output file names from user input that can never leave their folder."""
from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from .errors import SMAInputError

_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
MAX_NAME_LENGTH = 120


def sanitize_file_stem(name: str) -> str:
    """A user-given name reduced to a safe file stem (no folders, no extension, no hidden/reserved names).

    ``"../../etc/passwd"`` -> ``"passwd"``; ``"my motion!.safetensors"`` -> ``"my motion_"``.
    Raises SMAInputError when nothing usable is left.
    """
    text = unicodedata.normalize("NFKC", str(name)).replace("\\", "/")
    text = text.rsplit("/", 1)[-1].strip()
    for suffix in (".safetensors", ".ckpt", ".pt", ".pth"):
        if text.lower().endswith(suffix):
            text = text[: -len(suffix)]
    text = _UNSAFE.sub("_", text).strip(" .")[:MAX_NAME_LENGTH].strip(" .")
    if not text or text.upper() in _RESERVED or set(text) <= {"_"}:
        raise SMAInputError(
            f"output name {name!r} has no usable characters: use letters, digits, spaces, '.', '_' or '-', "
            "e.g. 'my_motion'")
    return text


def safe_output_path(folder: str | Path, name: str, suffix: str = ".safetensors") -> Path:
    """``folder / (sanitized name + suffix)``, guaranteed to lie directly inside ``folder``."""
    root = Path(folder).resolve()
    path = (root / (sanitize_file_stem(name) + suffix)).resolve()
    if path.parent != root:
        raise SMAInputError(f"output name {name!r} would leave the folder {root}")
    return path
