"""Behavioral Cohorts: the cohort list, and the identifiers a cohort download uses.

Listing is a query like any other (:class:`CohortsList`, run with ``client.run``). Downloading
is a flow of three requests (request, poll, file) that :mod:`amplitude_async.cohorts` runs;
the checks of its identifiers live here, with the list, so both refuse bad input the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, ClassVar, Final

import attrs
from attrs import field, frozen

from .. import cost as _cost
from ..cohort_results import CohortJob, CohortsListResult
from ..errors import InvalidQuery
from .base import Query
from .fields import Codec, Params, wire

__all__ = [
    "CohortRequest",
    "CohortRequestStatus",
    "CohortsList",
    "check_cohort_id",
    "check_prop_key",
    "check_request_id",
    "file_path",
]

_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")


def _check_id(value: object, name: str, what: str) -> str:
    # Identifiers travel in the request path: nothing that could change the path gets through.
    if not isinstance(value, str):
        raise InvalidQuery(name, f"expected a {what} as a string, got {type(value).__name__}")
    if not value:
        raise InvalidQuery(name, f"the {what} is empty")
    if not _ID.fullmatch(value):
        raise InvalidQuery(
            name, f"malformed {what} {value!r}: expected letters, digits, '-' or '_' (at most 128)"
        )
    return value


def check_cohort_id(value: object, name: str = "cohort_id") -> str:
    """``value`` if it is a well-formed cohort id (such as ``9apg8e8f``), else InvalidQuery."""
    return _check_id(value, name, "cohort id")


def check_request_id(value: object, name: str = "request_id") -> str:
    """``value`` if it is a well-formed download request id, else InvalidQuery."""
    return _check_id(value, name, "request id")


def check_prop_key(value: object, name: str) -> str:
    """``value`` if it is a user property name worth asking for, else InvalidQuery."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidQuery(name, f"expected a user property name, got {value!r}")
    return value


def _decode_bool(text: str, name: str, index: int) -> bool:
    if text not in ("true", "false"):
        raise InvalidQuery(name, f"expected true or false, got {text!r}")
    return text == "true"


_BOOL: Final = Codec(lambda value: "true" if value else "false", _decode_bool)


def _check_bool(_: object, attribute: object, value: object) -> None:
    if not isinstance(value, bool):
        raise InvalidQuery("include_sync_info", f"expected true or false, got {value!r}")


@frozen
class CohortsList(Query[CohortsListResult]):
    """The project's behavioral cohorts (``/api/3/cohorts``); no query cost, standard pool.

    ``include_sync_info=True`` asks for each cohort's sync targets as well.
    """

    endpoint: ClassVar[str] = "cohorts_list"
    result_type = CohortsListResult
    _path: ClassVar[str] = "/api/3/cohorts"

    include_sync_info: bool = field(
        default=False, validator=_check_bool, metadata=wire("includeSyncInfo", codec=_BOOL)
    )

    def params(self) -> Params:
        # The flag is only ever sent as true: the API's documented form.
        return tuple(p for p in super().params() if p != ("includeSyncInfo", "false"))

    @property
    def cost(self) -> int:
        return _cost.UNCOSTED


def _cohort_id(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    check_cohort_id(value, attribute.name)


def _request_id(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    check_request_id(value, attribute.name)


def _to_prop_keys(value: Iterable[str] | str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    try:
        return tuple(value)
    except TypeError:
        raise InvalidQuery("prop_keys", f"expected property names, got {value!r}") from None


def _decode_props(text: str, name: str, index: int) -> bool:
    if text not in ("0", "1"):
        raise InvalidQuery(name, f"expected 0 or 1, got {text!r}")
    return text == "1"


_PROPS: Final = Codec(lambda value: "1" if value else "0", _decode_props)
_TEXT_ITEM: Final = Codec(str, lambda text, name, index: check_prop_key(text, name))


@frozen
class CohortRequest(Query[CohortJob]):
    """Step 1 of a cohort download (``/api/5/cohorts/request/{cohort_id}``): start the job.

    Used by :meth:`AmplitudeClient.download_cohort
    <amplitude_async.client.AmplitudeClient.download_cohort>`, which also takes the cohort
    pool's slot and the monthly quota; run on its own it would take neither. ``props=True``
    asks for every user property, ``prop_keys`` for chosen ones (they need ``props``).
    """

    endpoint: ClassVar[str] = "cohort_request"
    result_type = CohortJob

    cohort_id: str = field(validator=_cohort_id, metadata=wire("cohort_id", in_path=True))
    props: bool = field(default=False, metadata=wire("props", codec=_PROPS))
    prop_keys: tuple[str, ...] = field(
        default=(),
        converter=_to_prop_keys,
        metadata=wire("propKeys", codec=_TEXT_ITEM, repeated=True),
    )

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.props, bool):
            raise InvalidQuery("props", f"expected True or False, got {self.props!r}")
        for i, key in enumerate(self.prop_keys):
            check_prop_key(key, f"prop_keys[{i}]")
        if self.prop_keys and not self.props:
            raise InvalidQuery("prop_keys", "chosen properties need props=True")

    @property
    def path(self) -> str:
        return f"/api/5/cohorts/request/{self.cohort_id}"

    def params(self) -> Params:
        # props is sent only when asked for, as the API documents it (props=1).
        return tuple(p for p in super().params() if p != ("props", "0"))

    @property
    def cost(self) -> int:
        return _cost.UNCOSTED


@frozen
class CohortRequestStatus(Query[CohortJob]):
    """Step 2 of a cohort download (``/api/5/cohorts/request-status/{request_id}``): a poll."""

    endpoint: ClassVar[str] = "cohort_request_status"
    result_type = CohortJob

    request_id: str = field(validator=_request_id, metadata=wire("request_id", in_path=True))

    @property
    def path(self) -> str:
        return f"/api/5/cohorts/request-status/{self.request_id}"

    @property
    def cost(self) -> int:
        return _cost.UNCOSTED


def file_path(request_id: str) -> str:
    """The path of step 3, the file of a finished job (``request_id`` checked)."""
    return f"/api/5/cohorts/request/{check_request_id(request_id)}/file"
