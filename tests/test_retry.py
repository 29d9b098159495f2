"""The pure retry policy."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from amplitude_async.errors import (
    APIError,
    AuthenticationError,
    BadRequest,
    ConfigurationError,
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


def test_equal_jitter_draws_between_half_and_the_whole_capped_ceiling() -> None:
    assert policy(0.5).backoff(1) == pytest.approx(0.75)
    assert policy(0.0).backoff(1) == pytest.approx(0.5)  # the floor: never an instant retry
    assert policy(0.0).backoff(3) == pytest.approx(2.0)
    assert policy(0.999).backoff(40) == pytest.approx(0.9995 * BACKOFF_CAP)


@given(
    draws=st.lists(st.floats(0.0, 1.0, exclude_max=True), min_size=8, max_size=8),
    base=st.floats(0.001, 10.0),
)
def test_backoff_floor_is_positive_and_grows(draws: list[float], base: float) -> None:
    floors = [policy(0.0, backoff_base=base).backoff(n) for n in range(1, 9)]
    assert floors[0] > 0
    assert floors == sorted(floors)
    for n, draw in enumerate(draws, start=1):
        delay = policy(draw, backoff_base=base).backoff(n)
        ceiling = min(BACKOFF_CAP, base * 2 ** (n - 1))
        assert ceiling / 2 <= delay <= ceiling


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
    longer = RateLimited(429, "slow down", retry_after=412.5)
    assert rules.decide(Attempts().after(longer), longer).delay == 412.5
    huge = RateLimited(429, "slow down", retry_after=1e6)
    assert rules.decide(Attempts().after(huge), huge).delay == rules.retry_after_cap
    concurrent = RateLimited(429, "Exceeded concurrent limit", limit="concurrent")
    decision = policy(0.5).decide(Attempts().after(concurrent), concurrent)
    assert decision.pause_pool
    assert decision.delay == pytest.approx(0.75)
    many = Attempts(rate_limited=rules.max_rate_limited_retries)
    assert rules.decide(many, rate).retry
    assert not rules.decide(many.after(rate), rate).retry


@pytest.mark.parametrize("retry_after", [0.0, 0.5, 299.0])
@pytest.mark.parametrize("limit", ["rate", None])
def test_retry_after_never_shortens_a_rate_pause(retry_after: float, limit: str | None) -> None:
    # Retry-After: 0 (or an HTTP date in the past, parsed to 0) from a misbehaving server.
    error = RateLimited(429, "Too Many Requests", limit=limit, retry_after=retry_after)  # type: ignore[arg-type]
    decision = policy(window=300.0).decide(Attempts().after(error), error)
    assert decision == RetryDecision(retry=True, delay=300.0, pause_pool=True)


def test_retry_after_never_shortens_a_concurrent_backoff_which_grows() -> None:
    rules = policy(0.0, backoff_base=1.0)
    error = RateLimited(429, "Exceeded concurrent limit", limit="concurrent", retry_after=0.0)
    attempts = Attempts()
    delays = []
    for _ in range(5):
        attempts = attempts.after(error)
        delays.append(rules.decide(attempts, error).delay)
    assert delays == pytest.approx([0.5, 1.0, 2.0, 4.0, 8.0])


def test_total_retry_wait_is_bounded() -> None:
    rules = policy(window=300.0, max_retry_time=1000.0)
    rate = RateLimited(429, "Exceeded rate limit", limit="rate")
    attempts = Attempts()
    waits = 0
    while True:
        attempts = attempts.after(rate)
        decision = rules.decide(attempts, rate)
        if not decision.retry:
            break
        attempts = attempts.after_wait(decision.delay)
        waits += 1
    assert waits == 3  # a fourth 300-second pause would pass 1000 seconds
    assert attempts.waited == 900.0
    server = ServerError(503, "unavailable")
    assert not rules.decide(Attempts(waited=999.5).after(server), server).retry
    assert rules.decide(Attempts(waited=998.0).after(server), server).retry


def test_attempts_count_kinds_apart() -> None:
    attempts = Attempts().after(ServerError(500, "x")).after(RateLimited(429, "y"))
    assert attempts == Attempts(errors=1, rate_limited=1)
    assert attempts.after_wait(2.5).after_wait(1.0).waited == 3.5


def test_scaled_multiplies_every_duration() -> None:
    policy = RetryPolicy(
        backoff_base=2.0, backoff_cap=40.0, retry_after_cap=100.0, max_retry_time=50.0, window=300.0
    )
    fast = policy.scaled(0.01)
    assert (
        fast.backoff_base,
        fast.backoff_cap,
        fast.retry_after_cap,
        fast.max_retry_time,
        fast.window,
    ) == pytest.approx((0.02, 0.4, 1.0, 0.5, 3.0))
    assert (fast.max_retries, fast.max_rate_limited_retries) == (
        policy.max_retries,
        policy.max_rate_limited_retries,
    )
    with pytest.raises(ConfigurationError, match="positive"):
        policy.scaled(0)


@pytest.mark.parametrize("factor", [float("nan"), float("inf"), -1.0, 0, "2", None, True])
def test_scaled_refuses_a_factor_that_is_not_a_finite_positive_number(factor: object) -> None:
    with pytest.raises(ConfigurationError, match="factor"):
        RetryPolicy().scaled(factor)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_retries", -1),
        ("max_retries", "3"),
        ("max_retries", 2.0),
        ("max_rate_limited_retries", None),
        ("backoff_base", 0.0),
        ("backoff_base", float("nan")),
        ("backoff_cap", float("inf")),
        ("retry_after_cap", -5.0),
        ("max_retry_time", float("nan")),
        ("window", "300"),
    ],
)
def test_bad_settings_name_their_field(name: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=f"RetryPolicy.{name}"):
        RetryPolicy(**{name: value})  # type: ignore[arg-type]
