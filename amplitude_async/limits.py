"""Request pools and the project budgets that govern them."""

from __future__ import annotations

import enum

import attrs
from attrs import field, frozen

from ._settings import check_factor, positive_int, positive_number

__all__ = ["DEFAULT_LIMITS", "Limits", "Pool"]


class Pool(enum.StrEnum):
    """Which set of limits a query counts against."""

    STANDARD = "standard"
    """Every endpoint but user activity and user search: concurrency plus cost windows."""
    USER = "user"
    """User activity and user search: their own concurrency and queries per hour."""
    COHORT = "cohort"
    """Requests for a cohort's members (the first step of a download): their own concurrency
    and requests per window, on top of a slot of the standard pool."""


@frozen
class Limits:
    """A project's budgets; defaults are Amplitude's documented values. Durations in seconds.

    Counts must be positive integers and durations positive finite numbers; anything else raises
    :class:`~amplitude_async.errors.ConfigurationError` naming the field (a ``ValueError``).
    """

    concurrent: int = field(default=5, validator=positive_int)
    cost_per_window: int = field(default=1000, validator=positive_int)
    window: float = field(default=300.0, validator=positive_number)
    cost_per_hour: int = field(default=108_000, validator=positive_int)
    hour: float = field(default=3600.0, validator=positive_number)
    user_concurrent: int = field(default=10, validator=positive_int)
    user_queries_per_hour: int = field(default=360, validator=positive_int)
    cohort_concurrent: int = field(default=4, validator=positive_int)
    """Cohort download requests (step 1 of a download) in flight at once."""
    cohort_requests_per_window: int = field(default=60, validator=positive_int)
    """Cohort download requests per ``cohort_window``."""
    cohort_window: float = field(default=600.0, validator=positive_number)
    """The sliding window of ``cohort_requests_per_window``, in seconds."""
    cohort_requests_per_month: int = field(default=500, validator=positive_int)
    """Cohort download requests per calendar month (UTC), counted in the budget store."""

    def scaled(self, factor: float) -> Limits:
        """Return a copy with every duration multiplied by ``factor`` (a fast clock for tests);
        ``factor`` must be a finite number above zero."""
        factor = check_factor(factor)
        return attrs.evolve(
            self,
            window=self.window * factor,
            hour=self.hour * factor,
            cohort_window=self.cohort_window * factor,
        )


DEFAULT_LIMITS = Limits()
"""Amplitude's documented limits (a shared default for keyword arguments)."""
