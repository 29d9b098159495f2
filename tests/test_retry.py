"""The pure retry policy."""

from __future__ import annotations

import pytest

from amplitude_async.errors import (
    APIError,
    AuthenticationError,
    BadRequest,
    InvalidQuery,
    NotFound,
    QueryTooExpensive,
    RateLimited,
    ResponseValidationError,
    ServerError,
    TransportError,
)
from amplitude_async.retry import (
    BACKOFF_CAP,
    MAX_RETRIES,
    Attempts,
    RetryDecision,
    RetryPolicy,
)


def policy(draw: float = 1.0 - 1e-12, **kwargs: float) -> RetryPolicy:
    return RetryPolicy(random=lambda: draw, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "error",
    [
        ServerError(503, "unavailable"),
        APIError(408, "timeout"),
        TransportError("connection reset"),
        TransportError("timed out", timeout=True),
    ],
)
def test_transient_errors_back_off_exponentially_then_give_up(error: Exception) -> None:
    rules = policy(backoff_base=1.0)
    attempts = Attempts()
    delays = []
    for _ in range(MAX_RETRIES):
        attempts = attempts.after(error)
        decision = rules.decide(attempts, error)
        assert decision.retry
        assert not decision.pause_pool
        delays.append(decision.delay)
    assert delays == pytest.approx([1.0, 2.0, 4.0, 8.0])
    assert not rules.decide(attempts.after(error), error).retry


def test_full_jitter_draws_below_a_capped_ceiling() -> None:
    assert policy(0.5).backoff(1) == pytest.approx(0.5)
    assert policy(0.0).backoff(3) == 0.0
    assert policy(0.999).backoff(40) == pytest.approx(0.999 * BACKOFF_CAP)


@pytest.mark.parametrize(
    "error",
    [
        BadRequest(400, "Invalid chart definition"),
        AuthenticationError(401, "bad key"),
        AuthenticationError(403, "forbidden"),
        NotFound(404, "no chart"),
        APIError(418, "teapot"),
        InvalidQuery("start", "must be a date"),
        QueryTooExpensive(1800, 1000, "cost_per_window"),
        ResponseValidationError("missing data"),
        ValueError("not ours"),
    ],
)
def test_permanent_errors_are_never_retried(error: Exception) -> None:
    assert policy().decide(Attempts().after(error), error) == RetryDecision(retry=False)


def test_rate_limited_pauses_the_pool_and_has_its_own_count() -> None:
    rules = policy(window=300.0)
    rate = RateLimited(429, "Exceeded rate limit with query of cost 1800", limit="rate")
    attempts = Attempts(errors=MAX_RETRIES).after(rate)  # transient retries used up: irrelevant
    assert rules.decide(attempts, rate) == RetryDecision(retry=True, delay=300.0, pause_pool=True)
    hinted = RateLimited(429, "slow down", retry_after=12.5)
    assert rules.decide(Attempts().after(hinted), hinted).delay == 12.5
    huge = RateLimited(429, "slow down", retry_after=1e6)
    assert rules.decide(Attempts().after(huge), huge).delay == rules.retry_after_cap
    concurrent = RateLimited(429, "Exceeded concurrent limit", limit="concurrent")
    decision = policy(0.5).decide(Attempts().after(concurrent), concurrent)
    assert decision.pause_pool
    assert decision.delay == pytest.approx(0.5)
    many = Attempts(rate_limited=rules.max_rate_limited_retries)
    assert rules.decide(many, rate).retry
    assert not rules.decide(many.after(rate), rate).retry


def test_attempts_count_kinds_apart() -> None:
    attempts = Attempts().after(ServerError(500, "x")).after(RateLimited(429, "y"))
    assert attempts == Attempts(errors=1, rate_limited=1)


def test_scaled_multiplies_every_duration() -> None:
    policy = RetryPolicy(backoff_base=2.0, backoff_cap=40.0, retry_after_cap=100.0, window=300.0)
    fast = policy.scaled(0.01)
    assert (
        fast.backoff_base,
        fast.backoff_cap,
        fast.retry_after_cap,
        fast.window,
    ) == pytest.approx((0.02, 0.4, 1.0, 3.0))
    assert (fast.max_retries, fast.max_rate_limited_retries) == (
        policy.max_retries,
        policy.max_rate_limited_retries,
    )
    with pytest.raises(ValueError, match="positive"):
        policy.scaled(0)
