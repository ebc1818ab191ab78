"""Checks of user settings that raise :class:`SMAInputError` naming the setting and what is allowed."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

from .errors import SMAInputError


def check_int(name: str, value: Any, low: int, hint: str = "") -> None:
    """``value`` is a whole number (not a bool) ``>= low``; ``hint`` is appended to the bound."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise SMAInputError(f"{name} must be a whole number >= {low}{hint}, got {value!r}.")


def check_number(name: str, value: Any, low: float, *, strict: bool = False, below: float | None = None) -> None:
    """``value`` is a finite real number (not a bool) ``>= low`` (``> low`` if ``strict``), ``< below`` if given."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if strict else value >= low) and (below is None or value < below)
    if not ok:
        bound = f"in [{low:g}, {below:g})" if below is not None else f"{'>' if strict else '>='} {low:g}"
        raise SMAInputError(f"{name} must be a finite number {bound}, got {value!r}.")


def check_choice(name: str, value: Any, allowed: Iterable[str]) -> None:
    """``value`` is one of ``allowed``."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise SMAInputError(f"{name} must be one of {', '.join(allowed)}; got {value!r}.")
