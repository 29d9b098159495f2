"""Retry policy: a pure decision from (attempts so far, error) to "retry after d seconds" or not.

- 5xx (:class:`ServerError`), HTTP 408 and :class:`TransportError`: retried up to
  ``max_retries`` times with exponential backoff and full jitter.
- 429 (:class:`RateLimited`): always the same query again, counted separately with a much larger
  cap, after pausing the whole pool (the budget was evidently shared or misread): for
  ``Retry-After`` seconds when given (capped), else for a full window after a "rate" 429, or a
  backoff after a "concurrent" one (in-flight slots free within a response time).
- Everything else (400, 401, 403, 404, other statuses, :class:`InvalidQuery`,
  :class:`QueryTooExpensive`, undecodable responses) is never retried.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Final

import attrs
from attrs import field, frozen

from .errors import APIError, RateLimited, ServerError, TransportError

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "MAX_RATE_LIMITED_RETRIES",
    "MAX_RETRIES",
    "RETRY_AFTER_CAP",
    "Attempts",
    "RetryDecision",
    "RetryPolicy",
]

# The policy's constants, together.
MAX_RETRIES: Final = 4
"""Retries of transient failures (5xx, 408, transport errors) per request."""
MAX_RATE_LIMITED_RETRIES: Final = 50
"""Retries after 429 answers per request; counted apart from :data:`MAX_RETRIES`."""
BACKOFF_BASE: Final = 1.0
"""Seconds: the first backoff draws from [0, BASE), the n-th from [0, BASE * 2**(n-1))."""
BACKOFF_CAP: Final = 60.0
"""Seconds: no backoff draws from a longer range."""
RETRY_AFTER_CAP: Final = 900.0
"""Seconds: the longest ``Retry-After`` honoured."""
RETRYABLE_STATUSES: Final = frozenset({408})
"""Statuses retried besides 5xx (429 has its own rule)."""


@frozen
class Attempts:
    """Failures of one request so far: ``errors`` transient ones, ``rate_limited`` 429s."""

    errors: int = 0
    rate_limited: int = 0

    def after(self, error: BaseException) -> Attempts:
        """Return the count including ``error``."""
        if isinstance(error, RateLimited):
            return Attempts(self.errors, self.rate_limited + 1)
        return Attempts(self.errors + 1, self.rate_limited)


@frozen
class RetryDecision:
    """What to do after a failure.

    ``retry`` false: raise the error. Otherwise wait ``delay`` seconds and send again; with
    ``pause_pool`` the wait is applied to the whole pool (``Scheduler.pause``), not just this
    request.
    """

    retry: bool
    delay: float = 0.0
    pause_pool: bool = False


GIVE_UP: Final = RetryDecision(retry=False)


@frozen
class RetryPolicy:
    """Decides retries; ``window`` is the cost window (seconds) a "rate" 429 pauses for.

    ``random`` returns a float in [0, 1); inject a fixed one in tests.
    """

    max_retries: int = MAX_RETRIES
    max_rate_limited_retries: int = MAX_RATE_LIMITED_RETRIES
    backoff_base: float = BACKOFF_BASE
    backoff_cap: float = BACKOFF_CAP
    retry_after_cap: float = RETRY_AFTER_CAP
    window: float = 300.0
    random: Callable[[], float] = field(default=random.random, eq=False, repr=False)

    def scaled(self, factor: float) -> RetryPolicy:
        """Return a copy with every duration multiplied by ``factor``, like
        :meth:`Limits.scaled <amplitude_async.limits.Limits.scaled>` (a fast clock)."""
        if factor <= 0:
            raise ValueError(f"scale factor must be positive, got {factor!r}")
        return attrs.evolve(
            self,
            backoff_base=self.backoff_base * factor,
            backoff_cap=self.backoff_cap * factor,
            retry_after_cap=self.retry_after_cap * factor,
            window=self.window * factor,
        )

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff for the ``attempt``-th failure (1-based)."""
        exponent = min(max(0, attempt - 1), 64)  # the cap is reached long before
        return self.random() * min(self.backoff_cap, self.backoff_base * 2.0**exponent)

    def decide(self, attempts: Attempts, error: BaseException) -> RetryDecision:
        """Decide after ``error``; ``attempts`` already counts it (see :meth:`Attempts.after`)."""
        if isinstance(error, RateLimited):
            if attempts.rate_limited > self.max_rate_limited_retries:
                return GIVE_UP
            if error.retry_after is not None and error.retry_after >= 0:
                pause = min(error.retry_after, self.retry_after_cap)
            elif error.limit == "concurrent":
                pause = self.backoff(attempts.rate_limited)
            else:
                pause = self.window
            return RetryDecision(retry=True, delay=pause, pause_pool=True)
        transient = isinstance(error, ServerError | TransportError) or (
            type(error) is APIError and error.status in RETRYABLE_STATUSES
        )
        if not transient or attempts.errors > self.max_retries:
            return GIVE_UP
        return RetryDecision(retry=True, delay=self.backoff(attempts.errors))
