"""``/api/2/useractivity`` and ``/api/2/usersearch``: one user's stream, finding users."""

from __future__ import annotations

from typing import Final

from amplitude_async import queries as q
from amplitude_async.testing.dataset import SESSION_CAP_MS, Dataset

from .predicates import _Scope
from .series import JSON


def _user_activity(scope: _Scope, query: q.UserActivity) -> JSON:
    ds = scope.ds
    u = ds.user_of_amplitude.get(query.user)
    if u is None:
        # The live API answers an unknown user with an empty page, not an error.
        return {"userData": dict(_UNKNOWN_USER), "events": []}
    events = ds.user_events[u]
    latest = ds.record(events[-1])
    sessions = {ds.session[i] for i in events if ds.session[i] != -1}
    usage = _usage_time(ds, u)
    revenues = [ds.eprops_revenue[ds.eprops[i]] for i in events]
    devices: list[str] = []
    for i in events:
        d = ds.device[i]
        if d >= 0 and ds.device_names[d] not in devices:
            devices.append(ds.device_names[d])
    user_data = {
        "user_id": ds.user_ids[u],
        "canonical_amplitude_id": query.user,
        "merged_amplitude_ids": [],
        "num_events": len(events),
        "num_sessions": len(sessions),
        "usage_time": usage,
        "first_used": scope.day_of(ds.time[events[0]]).isoformat(),
        "last_used": scope.day_of(ds.time[events[-1]]).isoformat(),
        "purchases": sum(1 for r in revenues if r),
        "revenue": round(sum(revenues), 6),
        "platform": latest.platform,
        "os": latest.user_property("os"),
        "version": latest.version_name,
        "device": latest.device_family,
        "device_type": latest.device_type,
        "carrier": None,
        "country": latest.country,
        "region": latest.region,
        "city": latest.city,
        "dma": latest.dma,
        "language": latest.language,
        "start_version": latest.start_version,
        "device_ids": devices,
        "last_location": None,
        "properties": dict(latest.user_properties),
    }
    ordered = list(events) if query.direction == "earliest" else list(reversed(events))
    offset = query.offset or 0
    chosen = ordered[offset : offset + (query.limit or q.MAX_LIMIT)]
    position = {i: n for n, i in enumerate(events)}
    rows = []
    for i in chosen:
        row = ds.record(i).to_export()
        row["event_id"] = position[i]
        rows.append(row)
    return {"userData": user_data, "events": rows}


_UNKNOWN_USER: Final[JSON] = {
    "user_id": None,
    "canonical_amplitude_id": 0,
    "merged_amplitude_ids": None,
    "num_events": 0,
    "num_sessions": 0,
    "usage_time": 0,
    "first_used": None,
    "last_used": None,
    "purchases": 0,
    "revenue": 0,
    "platform": None,
    "os": None,
    "version": None,
    "device": None,
    "device_type": None,
    "carrier": None,
    "country": None,
    "region": None,
    "city": None,
    "dma": None,
    "language": None,
    "start_version": None,
    "device_ids": None,
    "last_location": None,
    "properties": None,
}
"""The summary of a user the project has never seen: zeros and nulls."""


def _usage_time(ds: Dataset, u: int) -> int:
    spans: dict[int, list[int]] = {}
    for i in ds.user_events[u]:
        sid = ds.session[i]
        if sid == -1:
            continue
        span = spans.setdefault(sid, [ds.time[i], ds.time[i]])
        span[1] = ds.time[i]
    return sum(min(b - a, SESSION_CAP_MS) for a, b in spans.values())


_SEARCH_PREFIX_LIMIT: Final = 100


def _user_search(scope: _Scope, query: q.UserSearch) -> JSON:
    ds = scope.ds
    term = query.user
    found: list[int] = []
    if term.isascii() and term.isdigit() and int(term) in ds.user_of_amplitude:
        found.append(ds.user_of_amplitude[int(term)])
    for u in [*ds.users_with_device(term), *ds.users_with_user_id(term)]:
        if u not in found:
            found.append(u)
    kind = "match_user_or_device_id"
    if not found:
        kind = "match_user_prefix"
        found = sorted(
            (u for u, name in enumerate(ds.user_ids) if name is not None and name.startswith(term)),
            key=lambda u: (ds.user_ids[u] or "", u),
        )[:_SEARCH_PREFIX_LIMIT]
    if not found:
        return {"type": "nomatch", "matches": []}
    matches = [{"user_id": ds.user_ids[u], "amplitude_id": ds.amplitude_ids[u]} for u in found]
    return {"matches": matches, "type": kind}
