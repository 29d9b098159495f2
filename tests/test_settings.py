"""Configuration is checked where it is given: bad values and conflicting options name the field."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from amplitude_async.client import DEFAULT_MAX_BODY_BYTES, DEFAULT_TIMEOUT, AmplitudeClient
from amplitude_async.errors import ConfigurationError
from amplitude_async.limits import Limits
from amplitude_async.retry import MAX_RETRIES, RetryPolicy
from amplitude_async.sansio import Request
from amplitude_async.scheduler import Scheduler
from amplitude_async.testing import VirtualClock
from amplitude_async.transport import Response

NAN, INF = float("nan"), float("inf")


class NullTransport:
    async def send(self, request: Request) -> Response:
        raise AssertionError("nothing is sent in these tests")

    async def aclose(self) -> None:
        pass


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("concurrent", "5"),
        ("concurrent", 5.0),
        ("concurrent", True),
        ("concurrent", 0),
        ("cost_per_window", None),
        ("cost_per_window", -1),
        ("window", NAN),
        ("window", INF),
        ("window", 0.0),
        ("window", "300"),
        ("hour", -INF),
        ("cost_per_hour", INF),
        ("user_concurrent", NAN),
        ("user_queries_per_hour", 1.5),
    ],
)
def test_limits_refuse_bad_values_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=f"Limits.{field}") as info:
        Limits(**{field: value})  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)
    assert info.value.field == f"Limits.{field}"


def test_limits_accept_integers_for_durations() -> None:
    assert Limits(window=300, hour=3600) == Limits()


@pytest.mark.parametrize("factor", [NAN, INF, -INF, 0, -0.5, "0.1", None, True])
def test_limits_scaled_refuses_non_finite_or_non_positive_factors(factor: object) -> None:
    with pytest.raises(ConfigurationError, match="factor"):
        Limits().scaled(factor)  # type: ignore[arg-type]


def test_limits_scaled_past_the_float_range_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="window"):
        Limits(window=1e300, hour=1e300).scaled(1e10)


@pytest.mark.parametrize("timeout", [NAN, INF, 0, -1.0, "60", True])
def test_client_timeout_must_be_a_finite_positive_number(timeout: object) -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        AmplitudeClient("k", "s", timeout=timeout)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, -1, 1.5, "64", True])
def test_client_max_body_bytes_must_be_a_positive_integer(size: object) -> None:
    with pytest.raises(ConfigurationError, match="max_body_bytes"):
        AmplitudeClient("k", "s", max_body_bytes=size)  # type: ignore[arg-type]


@pytest.mark.parametrize("max_retries", [-1, "3", 2.5])
def test_client_max_retries_must_be_a_count(max_retries: object) -> None:
    with pytest.raises(ConfigurationError, match="max_retries"):
        AmplitudeClient("k", "s", max_retries=max_retries)  # type: ignore[arg-type]


@pytest.mark.parametrize("url", ["not a url", "127.0.0.1:8080", "file:///etc/passwd", ""])
def test_client_refuses_a_base_url_that_is_not_one(url: str) -> None:
    with pytest.raises(ConfigurationError, match="base_url"):
        AmplitudeClient("k", "s", base_url=url)


def test_one_default_retry_count_for_library_and_command_line() -> None:
    # The command line builds RetryPolicy() (scaled); the client without options does the same.
    assert AmplitudeClient("k", "s").retry_policy.max_retries == MAX_RETRIES
    assert RetryPolicy().max_retries == MAX_RETRIES
    assert AmplitudeClient("k", "s", max_retries=1).retry_policy.max_retries == 1


def test_defaults_of_the_built_in_transport() -> None:
    client = AmplitudeClient("k", "s")
    transport: Any = client._transport
    assert transport._timeout.total == DEFAULT_TIMEOUT
    assert transport._max_body_bytes == DEFAULT_MAX_BODY_BYTES


async def test_conflicting_options_name_both() -> None:
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"max_retries": 2, "retry_policy": RetryPolicy()}, "max_retries", "retry_policy"),
        ({"session": "SESSION", "transport": NullTransport()}, "session", "transport"),
        ({"timeout": 5.0, "transport": NullTransport()}, "timeout", "transport"),
        ({"max_body_bytes": 10, "transport": NullTransport()}, "max_body_bytes", "transport"),
        ({"limits": Limits(), "scheduler": Scheduler()}, "limits", "scheduler"),
        ({"clock": VirtualClock(), "scheduler": Scheduler()}, "clock", "scheduler"),
    ]
    async with aiohttp.ClientSession() as session:
        for kwargs, first, second in cases:
            if kwargs.get("session") == "SESSION":
                kwargs["session"] = session
            with pytest.raises(ConfigurationError) as info:
                AmplitudeClient("k", "s", **kwargs)
            assert info.value.field == first
            assert f"{second}=" in str(info.value)
