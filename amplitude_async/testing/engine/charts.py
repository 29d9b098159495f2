"""A saved chart's CSV export, laid out as the live API's recorded exports are.

Line by line: the chart's name and description, a blank line, the metric and the events, a
blank line, then the table: a header ``Segment`` and one x value per column, and one row per
series. Every cell is quoted; text cells start with a tab (spreadsheets then keep them as text),
number cells do not; lines end with CRLF.
"""

from __future__ import annotations

import csv
import io
from typing import Any, Final

from amplitude_async import queries as q
from amplitude_async.naming import ALL_USERS, event_name, segment_name

from .series import JSON

_METRICS: Final = {
    "uniques": "Uniques",
    "totals": "Event Totals",
    "pct_dau": "Active %",
    "average": "Average",
    "histogram": "Frequency",
    "sums": "Property Sum",
    "value_avg": "Property Average",
    "formula": "Formula",
}


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _series_name(
    chart: q.EventSegmentation | q.ActiveUsers, label: Any, meta: Any, several_events: bool
) -> str:
    """The ``Segment`` cell: the segment, then the group-by value (and the event when the
    chart has several)."""
    group = label[1] if isinstance(label, list) else None
    if isinstance(chart, q.ActiveUsers):
        segment = label[0] if isinstance(label, list) else label
        event = None
    else:
        segment = meta.get("segmentIndex", 0) if isinstance(meta, dict) else 0
        event = label[0] if isinstance(label, list) else label
    segments = chart.segments
    name = segment_name(segments[segment]) if segment < len(segments) else ALL_USERS
    parts = [name, group]
    if several_events and isinstance(chart, q.EventSegmentation) and isinstance(event, int):
        parts.insert(0, event_name(chart.events[event]))
    return ", ".join(p for p in parts if p)


def chart_csv_text(chart_id: str, chart: q.EventSegmentation | q.ActiveUsers, data: JSON) -> str:
    """The export of saved chart ``chart_id`` (the query ``chart``) whose answer is ``data``."""
    if isinstance(chart, q.EventSegmentation):
        metric = _METRICS.get(chart.metric, chart.metric)
        events = [event_name(e) for e in chart.events]
    else:
        metric = "New Users" if chart.metric == "new" else "Active Users"
        events = []
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow([f"\tChart {chart_id}"])
    writer.writerow([f"\t{chart.endpoint} from {chart.start} to {chart.end}"])
    writer.writerow([])
    writer.writerow([f"\t{metric}"])
    writer.writerows([f"\t{e}"] for e in events)
    writer.writerow([])
    writer.writerow(["\tSegment", *(f"\t{x}" for x in data["xValues"])])
    metas = data.get("seriesMeta", [])
    for i, (label, row) in enumerate(zip(data["seriesLabels"], data["series"], strict=True)):
        meta = metas[i] if i < len(metas) else None
        name = _series_name(chart, label, meta, len(events) > 1)
        writer.writerow([f"\t{name}", *(_number(v) for v in row)])
    return out.getvalue()
