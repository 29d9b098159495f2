"""Retry policy: a pure decision from (attempts so far, error) to "retry after d seconds" or not.

- 5xx (:class:`ServerError`), HTTP 408 and :class:`TransportError`: retried up to
  ``max_retries`` times with exponential backoff and "equal" jitter: the n-th wait is drawn from
  [c/2, c) with c = min(cap, base * 2**(n-1)), so waits have a floor and grow.
- 429 (:class:`RateLimited`): always the same query again, counted separately with a much larger
  cap, after pausing the whole pool (the budget was evidently shared or misread): for a full
  window after a "rate" 429 (or one that does not say which limit), a backoff after a
  "concurrent" one (in-flight slots free within a response time). A ``Retry-After`` header may
  lengthen that pause (up to ``retry_after_cap``) but never shorten it: ``Retry-After: 0`` or a
  date in the past from a misbehaving server cannot start a retry storm.
- Everything else (400, 401, 403, 404, other statuses, :class:`InvalidQuery`,
  :class:`QueryTooExpensive`, :class:`ClientClosed`, undecodable or oversized responses) is never
  retried.
- The time one request spends waiting between attempts (backoffs and 429 pauses added up) is
  bounded by ``max_retry_time``: a retry that would go past it is not made, the error is raised.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Final

import attrs
from attrs import field, frozen

from ._settings import (
    check_factor,
    non_negative_int,
    non_negative_number,
    optional_positive_number,
    positive_number,
)
from .errors import APIError, RateLimited, ServerError, TransportError

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "MAX_RATE_LIMITED_RETRIES",
    "MAX_RETRIES",
    "MAX_RETRY_TIME",
    "NO_ATTEMPTS",
    "RETRY_AFTER_CAP",
    "Attempts",
    "RetryDecision",
    "RetryPolicy",
    "is_retryable",
]

# The policy's constants, together.
MAX_RETRIES: Final = 4
"""Retries of transient failures (5xx, 408, transport errors) per request: the one default of
the library and the command line."""
MAX_RATE_LIMITED_RETRIES: Final = 50
"""Retries after 429 answers per request; counted apart from :data:`MAX_RETRIES`."""
BACKOFF_BASE: Final = 1.0
"""Seconds: the first backoff draws from [BASE/2, BASE), the n-th from [c/2, c) with
c = BASE * 2**(n-1)."""
BACKOFF_CAP: Final = 60.0
"""Seconds: no backoff draws from a longer range (so no backoff is longer)."""
RETRY_AFTER_CAP: Final = 900.0
"""Seconds: the longest ``Retry-After`` honoured."""
MAX_RETRY_TIME: Final = 3600.0
"""Seconds one request may spend waiting between its attempts (backoffs and 429 pauses summed):
twelve 5-minute windows of 429s, or far more than the transient retries ever need."""
DEFAULT_WINDOW: Final = 300.0
"""Seconds: Amplitude's cost window, for a policy used without a client to fill it in."""

RETRYABLE_STATUSES: Final = frozenset({408})
"""Statuses retried besides 5xx (429 has its own rule)."""


@frozen
class Attempts:
    """Failures of one request so far: ``errors`` transient ones, ``rate_limited`` 429s, and
    ``waited`` seconds of retry delays decided for it."""

    errors: int = 0
    rate_limited: int = 0
    waited: float = 0.0

    def after(self, error: BaseException) -> Attempts:
        """Return the count including ``error``."""
        if isinstance(error, RateLimited):
            return attrs.evolve(self, rate_limited=self.rate_limited + 1)
        return attrs.evolve(self, errors=self.errors + 1)

    def after_wait(self, seconds: float) -> Attempts:
        """Return the count including a retry delay of ``seconds``."""
        return attrs.evolve(self, waited=self.waited + seconds)


NO_ATTEMPTS: Final = Attempts()
"""A request before its first failure (shared: attempts are immutable)."""


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


def is_retryable(error: BaseException) -> bool:
    """Whether the policy ever retries ``error`` (so giving up on it means retries ran out)."""
    return isinstance(error, RateLimited | ServerError | TransportError) or (
        type(error) is APIError and error.status in RETRYABLE_STATUSES
    )


@frozen
class RetryPolicy:
    """Decides retries; ``window`` is the cost window (seconds) a "rate" 429 pauses for.

    Durations are in seconds and must be finite (``backoff_base`` and ``window`` above zero);
    counts are non-negative integers. ``random`` returns a float in [0, 1); inject a fixed one in
    tests.
    """

    max_retries: int = field(default=MAX_RETRIES, validator=non_negative_int)
    max_rate_limited_retries: int = field(
        default=MAX_RATE_LIMITED_RETRIES, validator=non_negative_int
    )
    backoff_base: float = field(default=BACKOFF_BASE, validator=positive_number)
    backoff_cap: float = field(default=BACKOFF_CAP, validator=positive_number)
    retry_after_cap: float = field(default=RETRY_AFTER_CAP, validator=non_negative_number)
    max_retry_time: float = field(default=MAX_RETRY_TIME, validator=non_negative_number)
    window: float | None = field(default=None, validator=optional_positive_number)
    """Seconds a "rate" 429 pauses the pool: the limits' cost window. ``None`` (the default)
    lets the client fill in its limits' window; a value given is taken as it is."""
    random: Callable[[], float] = field(default=random.random, eq=False, repr=False)

    def scaled(self, factor: float) -> RetryPolicy:
        """Return a copy with every duration multiplied by ``factor``, like
        :meth:`Limits.scaled <amplitude_async.limits.Limits.scaled>` (a fast clock);
        ``factor`` must be a finite number above zero."""
        factor = check_factor(factor)
        return attrs.evolve(
            self,
            backoff_base=self.backoff_base * factor,
            backoff_cap=self.backoff_cap * factor,
            retry_after_cap=self.retry_after_cap * factor,
            max_retry_time=self.max_retry_time * factor,
            window=None if self.window is None else self.window * factor,
        )

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with equal jitter for the ``attempt``-th failure (1-based).

        The ceiling ``c = min(backoff_cap, backoff_base * 2**(attempt-1))`` doubles per attempt
        and the wait is drawn from ``[c/2, c)``: jitter still spreads the retries of many
        requests, and the floor keeps a retry from following its failure at once.
        """
        exponent = min(max(0, attempt - 1), 64)  # the cap is reached long before
        ceiling = min(self.backoff_cap, self.backoff_base * 2.0**exponent)
        return ceiling * (0.5 + 0.5 * self.random())

    def decide(self, attempts: Attempts, error: BaseException) -> RetryDecision:
        """Decide after ``error``; ``attempts`` already counts it (see :meth:`Attempts.after`)
        and the delays of the retries before it (see :meth:`Attempts.after_wait`)."""
        if isinstance(error, RateLimited):
            if attempts.rate_limited > self.max_rate_limited_retries:
                return GIVE_UP
            if error.limit == "concurrent":
                pause = self.backoff(attempts.rate_limited)
            else:
                pause = self.window if self.window is not None else DEFAULT_WINDOW
            if error.retry_after is not None and error.retry_after > pause:
                # The server may ask for longer, never for less: a Retry-After of 0 (or a date
                # already past) would otherwise resend at once, again and again.
                pause = max(pause, min(error.retry_after, self.retry_after_cap))
            decision = RetryDecision(retry=True, delay=pause, pause_pool=True)
        else:
            if not is_retryable(error) or attempts.errors > self.max_retries:
                return GIVE_UP
            decision = RetryDecision(retry=True, delay=self.backoff(attempts.errors))
        if attempts.waited + decision.delay > self.max_retry_time:
            return GIVE_UP
        return decision
