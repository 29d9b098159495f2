"""Typed results of every Dashboard REST API endpoint.

These classes describe what an answer *means*; they know nothing of the wire format.
Renaming (``xValues`` ↔ ``x_values``), the ``data`` envelope, numbers sent as strings and
unknown keys are handled by :mod:`amplitude_async.converter`.

Numbers keep the JSON type they arrive with (an integer count stays an ``int`` even where the
annotation says ``float``). X values, retention and LTV dates stay strings as sent: the API
mixes ``2017-08-14``, ``2017-08-14T00:00:00``, ``15:05``, ``Aug 15`` and bucket labels such as
``0s-60s``.

Every result has ``rows(query=None)``: the answer as :class:`Row` objects whose label is what a
person would call the series (a group-by value, an event's name, a segment, a funnel step, a
retention cohort), whose x value is a ``date``/``datetime``/``time`` where the API sent one, and
whose value is a number. A result returned by the client knows its query (``result.query``, see
:func:`bind_query`), so labels use its event and segment names; a result decoded by hand takes
the query as an argument, and without one its labels come from the response alone.
``to_pandas(query=None)``, ``to_arrow(query=None)`` and ``to_polars(query=None)`` turn the same
rows into a ``pandas.DataFrame``, a ``pyarrow.Table`` or a ``polars.DataFrame`` with the same
columns and types (:mod:`amplitude_async.frames`); each library is imported only when its
method is called.
"""

from __future__ import annotations

from ..naming import event_name, segment_name
from .base import (
    CollapsedValue,
    ResponseMetadata,
    Row,
    SegmentMeta,
    SeriesLabel,
    SeriesMeta,
    Tabular,
    XValue,
    _ToPandas,
    bind_query,
    parse_x_value,
)
from .charts import ChartCSVResult
from .series import (
    ActiveUsersResult,
    AverageSessionLengthResult,
    ChartQueryResult,
    EventInfo,
    EventSegmentationResult,
    EventsListResult,
    RealtimeActiveUsersResult,
    SeriesResult,
    SessionLengthDistributionResult,
    SessionsPerUserResult,
    UserCompositionResult,
)
from .tables import (
    DaySeries,
    FunnelGroup,
    FunnelResult,
    LTVCell,
    LTVSeries,
    RetentionCell,
    RetentionResult,
    RetentionSeries,
    RevenueLTVResult,
)
from .users import Location, UserActivityResult, UserData, UserEvent, UserMatch, UserSearchResult

__all__ = [
    "ActiveUsersResult",
    "AverageSessionLengthResult",
    "ChartCSVResult",
    "ChartQueryResult",
    "CollapsedValue",
    "DaySeries",
    "EventInfo",
    "EventSegmentationResult",
    "EventsListResult",
    "FunnelGroup",
    "FunnelResult",
    "LTVCell",
    "LTVSeries",
    "Location",
    "RealtimeActiveUsersResult",
    "ResponseMetadata",
    "RetentionCell",
    "RetentionResult",
    "RetentionSeries",
    "RevenueLTVResult",
    "Row",
    "SegmentMeta",
    "SeriesLabel",
    "SeriesMeta",
    "SeriesResult",
    "SessionLengthDistributionResult",
    "SessionsPerUserResult",
    "Tabular",
    "UserActivityResult",
    "UserCompositionResult",
    "UserData",
    "UserEvent",
    "UserMatch",
    "UserSearchResult",
    "XValue",
    "_ToPandas",
    "bind_query",
    "event_name",
    "parse_x_value",
    "segment_name",
]
