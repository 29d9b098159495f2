"""Request pools and the project budgets that govern them."""

from __future__ import annotations

import enum
from typing import Any

import attrs
from attrs import field, frozen

__all__ = ["DEFAULT_LIMITS", "Limits", "Pool"]


class Pool(enum.StrEnum):
    """Which set of limits a query counts against."""

    STANDARD = "standard"
    """Every endpoint but user activity and user search: concurrency plus cost windows."""
    USER = "user"
    """User activity and user search: their own concurrency and queries per hour."""


def _positive(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"Limits.{attribute.name} must be positive, got {value!r}")


@frozen
class Limits:
    """A project's budgets; defaults are Amplitude's documented values. Durations in seconds."""

    concurrent: int = field(default=5, validator=_positive)
    cost_per_window: int = field(default=1000, validator=_positive)
    window: float = field(default=300.0, validator=_positive)
    cost_per_hour: int = field(default=108_000, validator=_positive)
    hour: float = field(default=3600.0, validator=_positive)
    user_concurrent: int = field(default=10, validator=_positive)
    user_queries_per_hour: int = field(default=360, validator=_positive)

    def scaled(self, factor: float) -> Limits:
        """Return a copy with every duration multiplied by ``factor`` (a fast clock for tests)."""
        if factor <= 0:
            raise ValueError(f"scale factor must be positive, got {factor!r}")
        return attrs.evolve(self, window=self.window * factor, hour=self.hour * factor)


DEFAULT_LIMITS = Limits()
"""Amplitude's documented limits (a shared default for keyword arguments)."""
