"""Event data behind the emulator: a columnar, indexed event log.

:class:`Dataset` holds events as parallel arrays sorted by time, plus the indexes the answer
engine needs (events per type, per user, sessions, first events), all built once. Records
(:class:`EventRecord`) are materialised only on demand by :attr:`Dataset.events`.

The package's modules follow that split: :mod:`.records` (records, the export format, cohorts
and the property rules), :mod:`.store` (the columnar :class:`Dataset`) and :mod:`.synthetic`
(the generator). Two ways to get one:

- :class:`SyntheticDataset` generates a plausible product deterministically from a seed: users
  with location, device and custom ``gp:`` properties, sessions with a heavy-ish tail, a
  Sign Up → Complete Profile → Purchase funnel with drop-off, retention decaying over days,
  version upgrades and revenue. It also defines built-in cohorts and saved charts.
- :meth:`Dataset.from_export` reads Amplitude's export format (JSON lines, plain or gzip).

Decisions kept here:

- a user is an Amplitude ID; ``user_id`` is the last non-null one seen for it;
- user properties are recorded per event (at event time), so a property that changes
  (``version`` after an upgrade, ``paying`` after the first purchase) changes from that event on;
- built-in user properties use their query names (``version``, ``os``, ``device``, ``dma``, ...);
  custom ones are ``gp:name``;
- an event's revenue is its ``$revenue`` or ``revenue`` property, else ``price``/``$price``
  times ``quantity``/``$quantity`` (default 1) when a price is present;
- a session is (user, ``session_id``) with ``session_id`` ≠ -1; it starts at its first event and
  its length is last minus first event time, capped at one day.
"""

from __future__ import annotations

__all__ = [
    "BUILTIN_USER_PROPERTIES",
    "Cohort",
    "Dataset",
    "EventRecord",
    "SyntheticDataset",
    "as_number",
    "event_revenue",
    "user_property_key",
    # Shared with the answer engine and the generator's users.
    "ADD_TO_CART",
    "COMPLETE_PROFILE",
    "OPEN_APP",
    "PURCHASE",
    "RATE_ITEM",
    "SEARCH",
    "SESSION_CAP_MS",
    "SHARE",
    "SIGN_UP",
    "VIEW_ITEM",
    "Value",
    "builtin_charts",
    "format_export_time",
]

from .records import (
    BUILTIN_USER_PROPERTIES,
    SESSION_CAP_MS,
    Cohort,
    EventRecord,
    Value,
    as_number,
    event_revenue,
    format_export_time,
    user_property_key,
)
from .store import Dataset
from .synthetic import (
    ADD_TO_CART,
    COMPLETE_PROFILE,
    OPEN_APP,
    PURCHASE,
    RATE_ITEM,
    SEARCH,
    SHARE,
    SIGN_UP,
    VIEW_ITEM,
    SyntheticDataset,
    builtin_charts,
)
