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
    ERROR_BODY_LIMIT,
    REDACTED,
    Redactor,
    basic_auth,
    check_base_url,
    check_credentials,
    decipher,
    encode_params,
    parse_retry_after,
    without_userinfo,
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


# -- redaction ---------------------------------------------------------------------------------

KEY, SECRET = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"


def credential_forms(key: str, secret: str) -> list[str]:
    auth = basic_auth(key, secret)
    token = auth.removeprefix("Basic ")
    pair = f"{key}:{secret}"
    return [auth, token, token.rstrip("="), pair, quote_all(pair), quote_all(token)]


def quote_all(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def test_redactor_removes_every_form_of_the_credentials() -> None:
    redact = Redactor.for_keys(KEY, SECRET)
    for form in [*credential_forms(KEY, SECRET), KEY, SECRET]:
        text = redact(f"echo: <{form}> end")
        assert text == f"echo: <{REDACTED}> end" or text == f"echo: <Basic {REDACTED}> end"
    assert KEY not in repr(redact)
    assert SECRET not in repr(redact)


@given(
    key=st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1),
    secret=st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1),
    before=st.text(max_size=20),
    after=st.text(max_size=20),
)
def test_redactor_never_lets_the_header_value_through(
    key: str, secret: str, before: str, after: str
) -> None:
    redact = Redactor.for_keys(key, secret)
    auth = basic_auth(key, secret)
    for form in (auth, auth.removeprefix("Basic "), f"{key}:{secret}"):
        assert form not in redact(before + form + after)


def test_short_keys_are_not_searched_as_free_text() -> None:
    redact = Redactor.for_keys("key", "secret")
    assert redact("Invalid API key or secret") == "Invalid API key or secret"
    assert redact(basic_auth("key", "secret")) == f"Basic {REDACTED}"
    assert redact("key:secret") == REDACTED


def test_foreign_authorization_values_are_redacted_too() -> None:
    redact = Redactor.for_keys(KEY, SECRET)
    assert redact("got Authorization: Bearer abc.def.ghi-jkl") == (
        f"got Authorization: Bearer {REDACTED}"
    )


@pytest.mark.parametrize("status", [400, 401, 404, 429, 500, 418])
def test_decipher_redacts_error_text(status: int) -> None:
    redact = Redactor.for_keys(KEY, SECRET)
    auth = basic_auth(KEY, SECRET)
    bodies = [
        envelope(status, f"bad header {auth}", details=f"you sent {KEY}:{SECRET}"),
        f"plain text {auth} and {SECRET}".encode(),
        # The 500-character cut of plain text must not leave half a token behind.
        ("x" * 480 + auth).encode(),
    ]
    for body in bodies:
        with pytest.raises(APIError) as info:
            decipher(status, {}, body, path="/api/2/events/list", redact=redact)
        exc = info.value
        for text in (str(exc), exc.message, exc.details or "", exc.error_type or ""):
            for form in [*credential_forms(KEY, SECRET), KEY, SECRET]:
                assert form not in text
            assert auth.removeprefix("Basic ")[:12] not in text


def test_error_bodies_are_read_only_up_to_the_limit() -> None:
    body = b"first words " + b"x" * (ERROR_BODY_LIMIT * 4)
    with pytest.raises(ServerError) as info:
        decipher(500, {}, body)
    assert info.value.message.startswith("first words")
    assert len(info.value.message) <= 500


# -- strict JSON -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body", [b"NaN", b"[Infinity]", b'{"a": -Infinity}', b"[1e400]", b"[" * 100_000]
)
def test_success_bodies_must_be_strict_finite_json(body: bytes) -> None:
    with pytest.raises(ResponseValidationError):
        decipher(200, {}, body)


def test_deeply_nested_error_bodies_still_give_an_api_error() -> None:
    with pytest.raises(BadRequest):
        decipher(400, {}, b"[" * 60_000)


def test_large_finite_numbers_stay_numbers() -> None:
    assert decipher(200, {}, b"[1e308, -2.5, 3]") == [1e308, -2.5, 3]


# -- base URL ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "",
        "amplitude.com",
        "ftp://amplitude.com",
        "http://",
        "https://amplitude.com?x=1",
        "https://amplitude.com#top",
        "http://127.0.0.1:99999",
        " https://amplitude.com",
        None,
        42,
    ],
)
def test_bad_base_urls_are_refused(url: object) -> None:
    with pytest.raises(ConfigurationError, match="base_url"):
        check_base_url(url)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://amplitude.com/", "https://amplitude.com"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("https://proxy.example/amplitude/", "https://proxy.example/amplitude"),
        ("http://[::1]:9000", "http://[::1]:9000"),
    ],
)
def test_good_base_urls_lose_only_the_trailing_slash(url: str, expected: str) -> None:
    assert check_base_url(url) == expected


MIXED_KEY, MIXED_SECRET = "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z", "Zy9xWv8uTs7rQp6oNm5lKj4iHg3fEd2c"


def spellings(text: str) -> list[str]:
    """``text`` in each spelling a server might echo it in."""
    raw = text.encode()
    standard = base64.b64encode(raw).decode()
    url_safe = base64.urlsafe_b64encode(raw).decode()
    every_byte = "".join(f"%{b:02X}" for b in raw)
    forms = [text, text.lower(), text.upper(), raw.hex(), raw.hex().upper(), standard]
    forms += [standard.rstrip("="), url_safe, url_safe.rstrip("="), every_byte]
    return [*forms, every_byte.lower(), quote_all(text), quote_all(standard)]


def test_every_spelling_of_each_secret_is_redacted() -> None:
    redact = Redactor.for_keys(MIXED_KEY, MIXED_SECRET)
    for text in (MIXED_SECRET, MIXED_KEY, f"{MIXED_KEY}:{MIXED_SECRET}"):
        for form in spellings(text):
            assert redact(f"you sent '{form}'.") == f"you sent '{REDACTED}'.", form
    # A short key is not free text, but the pair is redacted in every spelling.
    short = Redactor.for_keys("key", MIXED_SECRET)
    assert short("the key is KEY") == "the key is KEY"
    for form in spellings(f"key:{MIXED_SECRET}"):
        assert short(f"<{form}>") == f"<{REDACTED}>"


@pytest.mark.parametrize(
    "url", ["http://user:PASSWORD@127.0.0.1:8787", "https://PASSWORD@h", "ftp://u:PASSWORD@h:x"]
)
def test_base_urls_with_credentials_are_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(ConfigurationError, match="user name or password") as caught:
        check_base_url(url)
    assert caught.value.field == "base_url"
    assert "PASSWORD" not in str(caught.value)
    assert without_userinfo(url).count("PASSWORD") == 0
    assert check_base_url("http://host/a@b") == "http://host/a@b"
