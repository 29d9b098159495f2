"""The pure wire layer: URL encoding, auth header and the status → exception mapping."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from amplitude_async.errors import (
    APIError,
    AuthenticationError,
    BadRequest,
    ConfigurationError,
    NotFound,
    RateLimited,
    ResponseValidationError,
    ServerError,
)
from amplitude_async.sansio import (
    basic_auth,
    check_credentials,
    decipher,
    encode_params,
    parse_retry_after,
)


def envelope(code: int, message: str, details: str | None = None) -> bytes:
    error: dict[str, object] = {"http_code": code, "type": "invalid", "message": message}
    if details is not None:
        error["metadata"] = {"details": details}
    return json.dumps({"error": error}).encode()


def test_space_is_percent_20_and_plus_is_percent_2b() -> None:
    encoded = encode_params([("e", '{"event_type":"Play Song+1"}')])
    assert "%20" in encoded
    assert "%2B" in encoded
    assert "+" not in encoded
    assert " " not in encoded


def test_ampersand_and_equals_in_values_are_escaped() -> None:
    encoded = encode_params([("p", "a&b=c"), ("q", "x")])
    assert encoded == "p=a%26b%3Dc&q=x"


def test_non_ascii_is_utf8_percent_encoded() -> None:
    assert encode_params([("p", "Zürich")]) == "p=Z%C3%BCrich"


@given(st.lists(st.tuples(st.text(min_size=1), st.text()), max_size=5))
def test_encoding_round_trips_strictly(params: list[tuple[str, str]]) -> None:
    encoded = encode_params(params)
    pairs = [part.split("=", 1) for part in encoded.split("&")] if params else []
    assert [(unquote(k), unquote(v)) for k, v in pairs] == params


def test_basic_auth_header() -> None:
    header = basic_auth("key", "secret")
    assert header.startswith("Basic ")
    assert base64.b64decode(header[6:]) == b"key:secret"


def test_missing_credentials_name_the_field() -> None:
    with pytest.raises(ConfigurationError, match="api_key"):
        check_credentials(None, "s")
    with pytest.raises(ConfigurationError, match="secret_key"):
        check_credentials("k", "")


def test_success_returns_json() -> None:
    assert decipher(200, {}, b'{"data": [1]}') == {"data": [1]}


def test_success_with_garbage_body_is_a_validation_error() -> None:
    with pytest.raises(ResponseValidationError, match="not JSON"):
        decipher(200, {}, b"<html>oops</html>", path="/api/2/users")


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequest),
        (401, AuthenticationError),
        (403, AuthenticationError),
        (404, NotFound),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (504, ServerError),
        (418, APIError),
    ],
)
def test_status_maps_to_exception(status: int, cls: type[APIError]) -> None:
    body = envelope(status, "Invalid chart definition", "Invalid user property country")
    with pytest.raises(cls) as info:
        decipher(status, {}, body, path="/api/2/events/segmentation")
    error = info.value
    assert type(error) is cls
    assert error.status == status
    assert error.message == "Invalid chart definition"
    assert error.details == "Invalid user property country"
    assert error.error_type == "invalid"
    assert error.path == "/api/2/events/segmentation"


def test_concurrent_limit_429() -> None:
    body = envelope(429, "Too Many Requests", "Exceeded concurrent limit with query of cost 415")
    with pytest.raises(RateLimited) as info:
        decipher(429, {}, body)
    assert info.value.limit == "concurrent"
    assert info.value.query_cost == 415
    assert info.value.retry_after is None


def test_rate_limit_429_with_retry_after() -> None:
    body = envelope(429, "Too Many Requests: Exceeded rate limit with query of cost 1800")
    with pytest.raises(RateLimited) as info:
        decipher(429, {"Retry-After": "12"}, body)
    assert info.value.limit == "rate"
    assert info.value.query_cost == 1800
    assert info.value.retry_after == 12.0


def test_429_without_recognisable_message() -> None:
    with pytest.raises(RateLimited) as info:
        decipher(429, {}, b"slow down")
    assert info.value.limit is None
    assert info.value.query_cost is None
    assert info.value.message == "slow down"


def test_error_with_garbage_body_keeps_status() -> None:
    with pytest.raises(ServerError) as info:
        decipher(502, {}, b"\xff\xfe<html>bad gateway")
    assert info.value.status == 502
    assert "bad gateway" in info.value.message


def test_error_with_empty_body() -> None:
    with pytest.raises(NotFound, match="HTTP 404"):
        decipher(404, {}, b"")


def test_retry_after_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None) is None
