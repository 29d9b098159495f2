"""Request building and response deciphering, with no I/O.

Everything here is a pure function of its inputs, so the wire format can be tested without a
server: how a query becomes a URL, how credentials become a header, and how an answer
``(status, headers, body)`` becomes decoded JSON or the right exception.
"""

from __future__ import annotations

import base64
import email.utils
import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol
from urllib.parse import quote, urlsplit

from attrs import field, frozen

from .errors import (
    AmplitudeError,
    APIError,
    AuthenticationError,
    BadRequest,
    ConfigurationError,
    NotFound,
    RateLimited,
    RateLimitKind,
    ResponseValidationError,
    ServerError,
    TransportError,
)
from .queries.fields import encode_params

__all__ = [
    "BASE_URLS",
    "ERROR_BODY_LIMIT",
    "MIN_SECRET_LENGTH",
    "REDACTED",
    "Redactor",
    "Region",
    "Request",
    "basic_auth",
    "build_request",
    "check_base_url",
    "check_credentials",
    "decipher",
    "encode_params",
    "parse_retry_after",
    "strict_json",
    "without_userinfo",
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

ERROR_BODY_LIMIT: Final = 64 * 1024
"""Bytes of an error answer (non-2xx) worth reading: enough for any error envelope's message;
a transport reads no further."""

REDACTED: Final = "[REDACTED]"
"""What a credential is replaced with in error text."""

MIN_SECRET_LENGTH: Final = 8
"""Keys shorter than this are not searched for as free text (they would match ordinary words;
real Amplitude keys are 32 characters). Their ``key:secret`` and base64 forms always are."""

# Any HTTP credential scheme followed by a token, ours or not: an echoed header is redacted
# even when it was rewritten on the way (a proxy's own credentials, a different encoding).
_AUTH_VALUE = re.compile(r"\b(Basic|Bearer|Digest|Api-Key)(\s+)[A-Za-z0-9+/=._~%-]{8,}", re.I)


def _encodings(text: str) -> set[str]:
    """``text`` and the spellings of it a server may echo (matched in any letter case)."""
    raw = text.encode()
    standard = base64.b64encode(raw).decode("ascii")
    url_safe = base64.urlsafe_b64encode(raw).decode("ascii")
    forms = {text, standard, standard.rstrip("="), url_safe, url_safe.rstrip("="), raw.hex()}
    forms.add("".join(f"%{byte:02X}" for byte in raw))
    forms.update([quote(form, safe="") for form in forms])
    return forms


@frozen
class Redactor:
    """Removes one project's credentials from text that may have come from a server.

    Build it with :meth:`for_keys`; calling it returns the text with the API key, the secret key
    and ``key:secret`` replaced by :data:`REDACTED`, each in any letter case and in every
    encoding a server may echo: base64 (standard or URL-safe, with or without padding; the
    ``Authorization`` value is the pair's), hex, and percent-encoded (of the text or of every
    byte). Any ``Basic``/``Bearer`` token is redacted as well.
    """

    secrets: tuple[str, ...] = field(default=(), repr=False)
    _pattern: re.Pattern[str] | None = field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        # Longest first, so "key:secret" is replaced whole rather than as "key" and "secret".
        ordered = sorted({s for s in self.secrets if s}, key=len, reverse=True)
        pattern = re.compile("|".join(map(re.escape, ordered)), re.I) if ordered else None
        object.__setattr__(self, "_pattern", pattern)

    @classmethod
    def for_keys(cls, api_key: str, secret_key: str) -> Redactor:
        """The redactor for a project's ``api_key`` and ``secret_key``."""
        forms = _encodings(f"{api_key}:{secret_key}")
        for key in (api_key, secret_key):
            if len(key) >= MIN_SECRET_LENGTH:
                forms |= _encodings(key)
        return cls(tuple(forms))

    def __call__(self, text: str) -> str:
        """Return ``text`` with every credential replaced by :data:`REDACTED`."""
        if self._pattern is not None:
            text = self._pattern.sub(REDACTED, text)
        return _AUTH_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)

    def scrub(self, error: AmplitudeError) -> AmplitudeError:
        """``error`` with every credential redacted from its text. API errors are redacted when
        deciphered; transport and decoding errors may quote a server too, so they are rebuilt
        when their text holds a secret."""
        text = str(error)
        if self(text) == text:
            return error
        if isinstance(error, TransportError):
            return TransportError(self(error.message), path=error.path, timeout=error.timeout)
        if isinstance(error, ResponseValidationError):
            return ResponseValidationError(
                self(error.message), path=error.path, field=self(error.field)
            )
        return AmplitudeError(self(text))


def _no_redaction(text: str) -> str:
    return text


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


def basic_auth(api_key: str, secret_key: str) -> str:
    """Return the ``Authorization`` header value for HTTP Basic with the project's keys."""
    token = base64.b64encode(f"{api_key}:{secret_key}".encode()).decode("ascii")
    return f"Basic {token}"


def build_request(
    base_url: str, query: _Wire, *, authorization: str, encoded: str | None = None
) -> Request:
    """Build the GET request for ``query`` against ``base_url``; ``encoded``: its parameters
    already percent-encoded (:func:`encode_params`), when the caller has them."""
    path = query.path
    if encoded is None:
        encoded = encode_params(query.params())
    url = base_url.rstrip("/") + path + (f"?{encoded}" if encoded else "")
    headers = {"Authorization": authorization, "Accept": "application/json"}
    return Request(path=path, url=url, headers=headers)


_USERINFO = re.compile(r"(?<=//)[^/?#]*@")


def without_userinfo(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by :data:`REDACTED`, for messages."""
    return _USERINFO.sub(f"{REDACTED}@", url)


def check_base_url(url: object) -> str:
    """Return ``url`` without a trailing slash, or raise :class:`ConfigurationError` unless it
    is an absolute ``http``/``https`` URL with a host (and no query, fragment or user info)."""
    hint = "must be an http(s) URL such as https://amplitude.com"
    if not isinstance(url, str):
        raise ConfigurationError("base_url", f"{hint}, got {url!r}")
    if _USERINFO.search(url):
        # Never echoed: it may hold a password. The keys travel in the Authorization header.
        raise ConfigurationError(
            "base_url", "must not contain a user name or password (user:password@host)"
        )
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 -- raises ValueError for a port out of range
    except ValueError:
        raise ConfigurationError("base_url", f"{hint}, got {url!r}") from None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or url != url.strip()
    ):
        raise ConfigurationError("base_url", f"{hint}, got {url!r}")
    return url.rstrip("/")


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


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


# One decoder, built once: json.loads with options would build a new one on every call.
_STRICT = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


def _loads(body: bytes | str) -> Any:
    """Strict JSON: no NaN/Infinity (Python's json would accept them), no overflow to inf."""
    if not isinstance(body, str):
        # As json.loads does: UTF-8, -16 or -32, told apart by the first bytes.
        body = body.decode(json.detect_encoding(body), "surrogatepass")
    return _STRICT.decode(body)


def strict_json(body: bytes | str) -> Any:
    """Decode ``body`` as a 2xx answer is decoded: strict JSON, no ``NaN``/``Infinity`` and no
    number that overflows (:class:`ValueError`; :class:`RecursionError` when nested too
    deeply)."""
    return _loads(body)


def _envelope(
    body: bytes, redact: Callable[[str], str]
) -> tuple[str | None, str | None, str | None]:
    """Read ``(type, message, details)`` from Amplitude's error envelope, or the plain text.

    The raw text is redacted before it is cut to length (so no half of a secret survives the
    cut), and each field again after JSON decoding (which may have unescaped one).
    """
    text = redact(body[:ERROR_BODY_LIMIT].decode("utf-8", errors="replace").strip())
    try:
        payload = _loads(text) if text else None
    except (ValueError, RecursionError):
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
    redact: Callable[[str], str] = _no_redaction,
) -> Any:
    """Turn an answer into decoded JSON, or raise the matching :class:`APIError`.

    ``headers`` must be case-insensitive for ``Retry-After`` lookups when it comes from a
    real response; a plain dict is accepted with either spelling. Text taken from an error body
    passes ``redact`` (a :class:`Redactor`) before it goes into the exception. A 2xx body must
    be strict JSON: ``NaN``, ``Infinity`` and numbers that overflow are refused.
    """
    if 200 <= status < 300:
        try:
            return _loads(body)
        except ValueError as exc:
            raise ResponseValidationError(f"body is not JSON: {exc}", path=path) from None
        except RecursionError:
            raise ResponseValidationError("body is nested too deeply", path=path) from None
    error_type, message, details = (
        None if text is None else redact(text) for text in _envelope(body, redact)
    )
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
