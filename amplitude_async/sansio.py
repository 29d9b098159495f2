"""Request building and response deciphering, with no I/O.

Everything here is a pure function of its inputs, so the wire format can be tested without a
server: how a query becomes a URL, how credentials become a header, and how an answer
``(status, headers, body)`` becomes decoded JSON or the right exception.
"""

from __future__ import annotations

import base64
import email.utils
import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol
from urllib.parse import quote

from attrs import frozen

from .errors import (
    APIError,
    AuthenticationError,
    BadRequest,
    ConfigurationError,
    NotFound,
    RateLimited,
    RateLimitKind,
    ResponseValidationError,
    ServerError,
)

__all__ = [
    "BASE_URLS",
    "Region",
    "Request",
    "basic_auth",
    "build_request",
    "check_credentials",
    "decipher",
    "encode_params",
    "parse_retry_after",
]

Region = Literal["us", "eu"]

BASE_URLS: Final[Mapping[str, str]] = {
    "us": "https://amplitude.com",
    "eu": "https://analytics.eu.amplitude.com",
}
"""REST hosts by data-residency region (``analytics.amplitude.com`` is the web app, not the API)."""

# Amplitude decodes the query string strictly: a literal "+" must travel as %2B and a space as
# %20 (form-style "+" for space would be read as a plus sign), so nothing but RFC 3986's
# unreserved characters is left unescaped.
_SAFE: Final = ""

_RATE_COST = re.compile(r"query of cost\s+(\d+)", re.IGNORECASE)


class _Wire(Protocol):
    """What a query must offer to be sent: its path and its ordered wire parameters."""

    @property
    def path(self) -> str: ...

    def params(self) -> tuple[tuple[str, str], ...]: ...


@frozen
class Request:
    """A ready-to-send GET request; ``url`` is already percent-encoded."""

    path: str
    url: str
    headers: Mapping[str, str]

    def __repr__(self) -> str:
        # Headers carry the credentials, so they never show up in logs or tracebacks.
        return f"Request(path={self.path!r}, url={self.url!r})"


def encode_params(params: Iterable[tuple[str, str]]) -> str:
    """Percent-encode ordered ``(name, value)`` pairs as Amplitude expects (space → ``%20``)."""
    return "&".join(
        f"{quote(name, safe=_SAFE)}={quote(value, safe=_SAFE)}" for name, value in params
    )


def basic_auth(api_key: str, secret_key: str) -> str:
    """Return the ``Authorization`` header value for HTTP Basic with the project's keys."""
    token = base64.b64encode(f"{api_key}:{secret_key}".encode()).decode("ascii")
    return f"Basic {token}"


def build_request(base_url: str, query: _Wire, *, authorization: str) -> Request:
    """Build the GET request for ``query`` against ``base_url``."""
    path = query.path
    params = query.params()
    url = base_url.rstrip("/") + path + (f"?{encode_params(params)}" if params else "")
    headers = {"Authorization": authorization, "Accept": "application/json"}
    return Request(path=path, url=url, headers=headers)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def _envelope(body: bytes) -> tuple[str | None, str | None, str | None]:
    """Read ``(type, message, details)`` from Amplitude's error envelope, or the plain text."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        payload = json.loads(text) if text else None
    except ValueError:
        return None, text[:500] or None, None
    if isinstance(payload, Mapping):
        error = payload.get("error")
        if isinstance(error, Mapping):
            return (
                _opt_str(error.get("type")),
                _opt_str(error.get("message")),
                _details(error) or _details(payload),
            )
        if isinstance(error, str):
            return None, error, _details(payload)
        message = payload.get("message") or payload.get("detail")
        return None, _opt_str(message), _details(payload)
    return None, text[:500] or None, None


def _details(obj: Mapping[str, Any]) -> str | None:
    """``metadata.details`` (or a bare ``details``) as text; JSON for anything but a string."""
    metadata = obj.get("metadata")
    details = metadata.get("details") if isinstance(metadata, Mapping) else None
    if details is None:
        details = obj.get("details")
    if details is None or isinstance(details, str):
        return details or None
    return json.dumps(details, separators=(",", ":"), default=str)


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _rate_limit_kind(text: str) -> RateLimitKind | None:
    lowered = text.lower()
    if "concurrent limit" in lowered:
        return "concurrent"
    if "rate limit" in lowered:
        return "rate"
    return None


def decipher(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    path: str = "",
    now: datetime | None = None,
) -> Any:
    """Turn an answer into decoded JSON, or raise the matching :class:`APIError`.

    ``headers`` must be case-insensitive for ``Retry-After`` lookups when it comes from a
    real response; a plain dict is accepted with either spelling.
    """
    if 200 <= status < 300:
        try:
            return json.loads(body)
        except ValueError as exc:
            raise ResponseValidationError(f"body is not JSON: {exc}", path=path) from None
    error_type, message, details = _envelope(body)
    message = message or details or f"HTTP {status}"
    kwargs: dict[str, Any] = {"details": details, "path": path, "error_type": error_type}
    if status == 429:
        text = f"{message} {details or ''}"
        cost = _RATE_COST.search(text)
        retry_after = headers.get("Retry-After", headers.get("retry-after"))
        raise RateLimited(
            status,
            message,
            limit=_rate_limit_kind(text),
            query_cost=int(cost.group(1)) if cost else None,
            retry_after=parse_retry_after(retry_after, now=now),
            **kwargs,
        )
    cls: type[APIError]
    if status == 400:
        cls = BadRequest
    elif status in (401, 403):
        cls = AuthenticationError
    elif status == 404:
        cls = NotFound
    elif status >= 500:
        cls = ServerError
    else:
        cls = APIError
    raise cls(status, message, **kwargs)


def check_credentials(api_key: str | None, secret_key: str | None) -> tuple[str, str]:
    """Return both keys, or raise :class:`InvalidQuery` naming the missing one."""
    if not api_key:
        raise ConfigurationError("api_key", "missing: pass api_key= or set AMPLITUDE_API_KEY")
    if not secret_key:
        raise ConfigurationError(
            "secret_key", "missing: pass secret_key= or set AMPLITUDE_SECRET_KEY"
        )
    return api_key, secret_key
