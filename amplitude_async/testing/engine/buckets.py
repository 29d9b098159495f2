"""Time: epoch milliseconds, buckets of local days/weeks/months/hours, period numbers and the
date labels the API uses."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Final

from amplitude_async import queries as q
from amplitude_async.testing.dataset import Dataset

_MINUTE_MS: Final = 60_000
_HOUR_MS: Final = 3_600_000
_DAY_MS: Final = 86_400_000


def _ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise TypeError("now must be a timezone-aware datetime")
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


class _Bucket:
    __slots__ = ("end", "label", "start")

    def __init__(self, label: str, start: int, end: int) -> None:
        self.label = label
        self.start = start
        self.end = end


def _next_period(day: date, interval: int) -> date:
    if interval == q.WEEKLY:
        return day + timedelta(days=7)
    if interval == q.MONTHLY:
        return (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return day + timedelta(days=1)


def _shift_periods(day: date, interval: int, count: int) -> date:
    """The period start ``count`` periods before ``day``'s period (calendar intervals)."""
    start = q.period_start(day, interval)
    if interval == q.MONTHLY:
        months = start.year * 12 + start.month - 1 - count
        return date(months // 12, months % 12 + 1, 1)
    return start - timedelta(days=count * (7 if interval == q.WEEKLY else 1))


def _buckets(ds: Dataset, start: date, end: date, interval: int) -> list[_Bucket]:
    """Buckets covering local days ``start``..``end`` (inclusive), clipped to them."""
    lo, hi = ds.midnight(start), ds.midnight(end + timedelta(days=1))
    if interval < 0:
        step = -interval
        out = []
        t = lo
        while t < hi:
            label = ds.local_time(t).strftime("%Y-%m-%dT%H:%M:%S")
            out.append(_Bucket(label, t, min(t + step, hi)))
            t += step
        return out
    out = []
    day = q.period_start(start, interval)
    while day <= end:
        following = _next_period(day, interval)
        b0 = max(ds.midnight(day), lo)
        b1 = min(ds.midnight(following), hi)
        out.append(_Bucket(day.isoformat(), b0, b1))
        day = following
    return out


def _month_day(day: date) -> str:
    return f"{day:%b} {day.day}"


def _long_date(day: date) -> str:
    return f"{day:%b} {day.day}, {day.year}"


def _period_index(day: date, interval: int) -> int:
    """A running number of the day/week/month holding ``day`` (differences count periods)."""
    if interval == q.MONTHLY:
        return day.year * 12 + day.month - 1
    if interval == q.WEEKLY:
        # Week starts are 7 days apart, so each falls in its own block of 7 ordinals.
        return q.period_start(day, interval).toordinal() // 7
    return day.toordinal()


def _period_of_index(index: int, interval: int) -> date:
    """The first day of the period numbered ``index`` by :func:`_period_index`."""
    if interval == q.MONTHLY:
        return date(index // 12, index % 12 + 1, 1)
    if interval == q.WEEKLY:
        # The week starting in ordinals [7 * index, 7 * index + 6] holds the last of them.
        return q.period_start(date.fromordinal(index * 7 + 6), interval)
    return date.fromordinal(index)
