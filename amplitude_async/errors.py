"""Exceptions raised by amplitude_async.

Every exception derives from :class:`AmplitudeError`::

    AmplitudeError
    ├── InvalidQuery (also ValueError)        bad input, raised before anything is sent
    ├── QueryTooExpensive                     cost above a whole budget, raised before sending
    ├── ConfigurationError (also ValueError)  bad client settings, such as missing credentials
    ├── ClientClosed                          the client (or its session) was closed
    ├── ResponseValidationError               a response that cannot be decoded
    ├── ResponseTooLarge                      a response body over the client's cap
    ├── TransportError                        connection failures and timeouts
    ├── BudgetUnavailable                     the shared budget store cannot be reached
    ├── QuotaExhausted                        a monthly quota is used up, raised before sending
    ├── CohortTimeout                         a cohort job did not complete in time
    └── APIError                              the API answered with an error status
        ├── BadRequest                        400
        ├── AuthenticationError               401, 403
        ├── NotFound                          404
        ├── RateLimited                       429
        └── ServerError                       5xx

Warnings: :class:`CacheUnavailable` (a result cache failed; the query was answered without it).

No exception text ever contains credentials: API errors carry the request *path* only, and
text taken from a server's answer passes :class:`amplitude_async.sansio.Redactor` first (a
server that echoes the ``Authorization`` header cannot put the keys into a traceback).
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "APIError",
    "AmplitudeError",
    "AuthenticationError",
    "BadRequest",
    "BudgetUnavailable",
    "CacheUnavailable",
    "ClientClosed",
    "CohortTimeout",
    "ConfigurationError",
    "InvalidQuery",
    "NotFound",
    "QueryTooExpensive",
    "QuotaExhausted",
    "RateLimitKind",
    "RateLimited",
    "ResponseTooLarge",
    "ResponseValidationError",
    "ServerError",
    "TransportError",
]

RateLimitKind = Literal["concurrent", "rate"]


class AmplitudeError(Exception):
    """Root of every exception this library raises."""


class InvalidQuery(AmplitudeError, ValueError):
    """A query was built with bad input; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class ConfigurationError(AmplitudeError, ValueError):
    """The client was configured wrongly; ``field`` names the setting."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class QueryTooExpensive(AmplitudeError):
    """A query's cost exceeds a whole budget, so it could never be admitted."""

    def __init__(self, cost: int, budget: int, budget_name: str, hint: str = "") -> None:
        self.cost = cost
        self.budget = budget
        self.budget_name = budget_name
        self.hint = hint
        text = f"query cost {cost} exceeds the {budget_name} budget of {budget}"
        super().__init__(f"{text}; {hint}" if hint else text)


class ResponseValidationError(AmplitudeError):
    """A response body could not be decoded into the expected result type."""

    def __init__(self, message: str, *, path: str = "", field: str = "") -> None:
        self.path = path
        self.field = field
        self.message = message
        where = f" (field {field!r})" if field else ""
        on = f" from {path}" if path else ""
        super().__init__(f"cannot decode response{on}{where}: {message}")


class ClientClosed(AmplitudeError):
    """The client was closed (or the aiohttp session it was given was closed by its owner).

    Raised for calls made after :meth:`AmplitudeClient.aclose
    <amplitude_async.client.AmplitudeClient.aclose>`, for queued calls the close cancelled and
    for retries the close prevented. A request cut by the close is never sent again.
    """

    def __init__(self, message: str = "the client is closed", *, path: str = "") -> None:
        self.path = path
        self.message = message
        super().__init__(f"{message} ({path})" if path else message)


class ResponseTooLarge(AmplitudeError):
    """A response body exceeded the client's ``max_body_bytes``; the rest was not read.

    ``limit`` is the cap in bytes; ``content_length`` the size the server announced, if any.
    """

    def __init__(self, limit: int, *, path: str = "", content_length: int | None = None) -> None:
        self.limit = limit
        self.path = path
        self.content_length = content_length
        size = f" ({content_length} bytes announced)" if content_length is not None else ""
        on = f" from {path}" if path else ""
        super().__init__(f"response body{on} exceeds max_body_bytes={limit}{size}")


class TransportError(AmplitudeError):
    """The request did not complete: connection failure, reset or timeout."""

    def __init__(self, message: str, *, path: str = "", timeout: bool = False) -> None:
        self.path = path
        self.timeout = timeout
        self.message = message
        super().__init__(f"{message} ({path})" if path else message)


class BudgetUnavailable(AmplitudeError):
    """The budget store (for example Redis) failed or could not be reached, so nothing could be
    admitted: a waiting request gives up after the scheduler's ``unavailable_wait``."""


class QuotaExhausted(AmplitudeError):
    """A monthly quota (``quota``, such as ``"cohort_requests_per_month"``) is used up for
    ``month`` (``"YYYY-MM"``, UTC): ``used`` of ``limit``. Raised before anything is sent."""

    def __init__(self, quota: str, limit: int, used: int, month: str) -> None:
        self.quota = quota
        self.limit = limit
        self.used = used
        self.month = month
        super().__init__(
            f"the {quota} quota of {limit} is used up for {month} (UTC): {used} used; "
            "it starts again with the next calendar month"
        )


class CohortTimeout(AmplitudeError):
    """A cohort download job was still running after the wait allowed for it. ``request_id``
    names the job: a later download with it resumes without a new request."""

    def __init__(self, request_id: str, waited: float, *, status: str = "") -> None:
        self.request_id = request_id
        self.waited = waited
        self.status = status
        last = f" (last status {status!r})" if status else ""
        super().__init__(
            f"cohort job {request_id} did not complete within {waited:g} s{last}; "
            f"resume with request_id={request_id!r}"
        )


class APIError(AmplitudeError):
    """The API answered with an error status.

    ``message`` and ``details`` come from Amplitude's error envelope when present;
    ``path`` is the request path (never the query string's credentials).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        details: str | None = None,
        path: str = "",
        error_type: str | None = None,
    ) -> None:
        self.status = status
        self.message = message
        self.details = details
        self.path = path
        self.error_type = error_type
        text = f"HTTP {status} from {path or '?'}: {message}"
        if details and details != message:
            text += f" ({details})"
        super().__init__(text)


class BadRequest(APIError):
    """HTTP 400: the query definition was rejected."""


class AuthenticationError(APIError):
    """HTTP 401/403: bad keys, missing permission or the wrong region."""


class NotFound(APIError):
    """HTTP 404: for example an unknown saved chart."""


class RateLimited(APIError):
    """HTTP 429: a project limit was exceeded.

    ``limit`` is ``"concurrent"`` or ``"rate"`` when the message says which, ``query_cost``
    the cost the server reported, ``retry_after`` seconds from a ``Retry-After`` header.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        details: str | None = None,
        path: str = "",
        error_type: str | None = None,
        limit: RateLimitKind | None = None,
        query_cost: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status, message, details=details, path=path, error_type=error_type)
        self.limit = limit
        self.query_cost = query_cost
        self.retry_after = retry_after


class ServerError(APIError):
    """HTTP 5xx: a transient failure on Amplitude's side (504 may mean the query is too big)."""


class CacheUnavailable(AmplitudeError, UserWarning):
    """A warning, never raised: the result cache failed (Redis down, say); queries went on
    without it."""
