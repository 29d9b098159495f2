"""Intervals, their names and span limits, and the calendar rule of their buckets."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from typing import Final

__all__ = [
    "ALL_INTERVALS",
    "CALENDAR_INTERVALS",
    "DAILY",
    "DAILY_MAX_DAYS",
    "HOURLY",
    "HOURLY_MAX_DAYS",
    "INTERVAL_NAMES",
    "MONTHLY",
    "REALTIME",
    "REALTIME_MAX_DAYS",
    "SPAN_LIMITS",
    "WEEKLY",
    "period_start",
]

REALTIME: Final = -300000
"""Realtime (5-minute) interval; spans of at most :data:`REALTIME_MAX_DAYS` days."""
HOURLY: Final = -3600000
"""Hourly interval; spans of at most :data:`HOURLY_MAX_DAYS` days."""
DAILY: Final = 1
WEEKLY: Final = 7
MONTHLY: Final = 30
REALTIME_MAX_DAYS: Final = 2
HOURLY_MAX_DAYS: Final = 7
DAILY_MAX_DAYS: Final = 365
"""The longest daily event segmentation the API serves (its reference: "daily ≤ 365 days")."""

INTERVAL_NAMES: Final[Mapping[int, str]] = {
    REALTIME: "realtime",
    HOURLY: "hourly",
    DAILY: "daily",
    WEEKLY: "weekly",
    MONTHLY: "monthly",
}
CALENDAR_INTERVALS: Final = (DAILY, WEEKLY, MONTHLY)
ALL_INTERVALS: Final = (REALTIME, HOURLY, DAILY, WEEKLY, MONTHLY)

SPAN_LIMITS: Final[Mapping[int, int]] = {
    REALTIME: REALTIME_MAX_DAYS,
    HOURLY: HOURLY_MAX_DAYS,
    DAILY: DAILY_MAX_DAYS,
}
"""The most days one request may cover, per interval, where the API caps it."""


def period_start(day: date, interval: int) -> date:
    """The first day of the bucket holding ``day``: a Sunday (weekly), the 1st (monthly), or
    ``day`` itself (daily, hourly, realtime)."""
    if interval == WEEKLY:
        # Weeks start on Sunday; date.weekday() counts from Monday (0) to Sunday (6).
        return day - timedelta(days=(day.weekday() + 1) % 7)
    if interval == MONTHLY:
        return day.replace(day=1)
    return day
