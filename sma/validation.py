"""Checks of user settings that raise :class:`SMAInputError` naming the setting and what is allowed."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
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


@dataclass(frozen=True)
class Limit:
    """What one setting allows; kept in the setting's dataclass field, read by the checks, the node and the CLI.

    Attributes:
        low / high: inclusive bounds of a number (``low`` exclusive when ``strict``).
        below: an exclusive upper bound (a probability below 1).
        whole: a whole number (int) rather than any real number.
        choices: the allowed strings (numbers are then not checked).
        switch: True or False only.
        optional: None is allowed and means "automatic" or "off" (see ``sma.training.config``).
        hint: appended to the bound in messages (" (0 = off)").
    """

    low: float | None = None
    high: float | None = None
    below: float | None = None
    whole: bool = False
    strict: bool = False
    choices: tuple[str, ...] | None = None
    switch: bool = False
    optional: bool = False
    hint: str = ""

    def check(self, name: str, value: Any) -> None:
        """Raise :class:`SMAInputError` when ``value`` is not allowed for the setting ``name``."""
        if value is None and self.optional:
            return
        if self.choices is not None:
            check_choice(name, value, self.choices)
            return
        if self.switch:
            if not isinstance(value, bool):
                raise SMAInputError(f"{name} must be true or false, got {value!r}.")
            return
        if self.whole:
            check_int(name, value, int(self.low if self.low is not None else -2**63), self.hint)
        else:
            check_number(name, value, self.low if self.low is not None else -math.inf, strict=self.strict,
                         below=self.below)
        if self.high is not None and value > self.high:
            raise SMAInputError(f"{name} must be at most {self.high:g}{self.hint}, got {value!r}.")


def setting(default: Any, **limit: Any) -> Any:
    """A dataclass field holding a setting's default and its :class:`Limit`."""
    return field(default=default, metadata={"limit": Limit(**limit)})


def limit_of(owner: Any, name: str) -> Limit | None:
    """The :class:`Limit` of field ``name`` of the dataclass (type or instance) ``owner``, if it has one."""
    found = {f.name: f for f in fields(owner)}.get(name)
    return found.metadata.get("limit") if found is not None else None


def check_limits(instance: Any) -> None:
    """Check every field of a dataclass instance that has a :class:`Limit`."""
    for f in fields(instance):
        limit = f.metadata.get("limit")
        if limit is not None:
            limit.check(f.name, getattr(instance, f.name))
