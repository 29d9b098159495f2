"""Wire names declared once: everything about a field derives from its metadata.

Also the daily span limit (365 days) end to end: construction, the wire, the emulator, date
splitting and backfill plans.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any, ClassVar

import aiohttp
import attrs
import pytest
from attrs import field, frozen

from amplitude_async.backfill import parse_job, plan_job
from amplitude_async.chunks import run_split
from amplitude_async.client import AmplitudeClient
from amplitude_async.cost import ChartKind
from amplitude_async.errors import InvalidQuery
from amplitude_async.limits import Limits
from amplitude_async.queries import (
    DAILY_MAX_DAYS,
    ENDPOINTS,
    WEEKLY,
    EventSegmentation,
    build_query,
    build_query_over,
)
from amplitude_async.queries.base import DatedQuery, dated_cost
from amplitude_async.queries.fields import (
    DATE,
    INT,
    WIRE,
    WireParams,
    from_params,
    from_table,
    wire,
    wire_name,
)
from amplitude_async.results import ActiveUsersResult
from amplitude_async.sansio import basic_auth
from amplitude_async.split import merge_results, plan_chunks
from amplitude_async.testing.dataset import SyntheticDataset
from amplitude_async.testing.emulator import Emulator
from amplitude_async.validation import int_validator

D1 = date(2024, 1, 1)
TWO_YEARS = date(2025, 12, 31)  # 731 days from D1


def test_every_query_field_declares_its_wire_form() -> None:
    for cls in ENDPOINTS.values():
        for attribute in attrs.fields(cls):  # type: ignore[arg-type]
            assert WIRE in attribute.metadata, f"{cls.__name__}.{attribute.name}"


@frozen
class _Gadget(DatedQuery[ActiveUsersResult]):
    """A query made up here: one class body is all a new field needs."""

    endpoint: ClassVar[str] = "gadget"
    result_type = ActiveUsersResult
    _path: ClassVar[str] = "/api/2/gadget"

    start: date = field(metadata=wire("start", codec=DATE))
    end: date = field(metadata=wire("end", codec=DATE))
    widgets: int | None = field(
        default=None, validator=int_validator(1, optional=True), metadata=wire("w", codec=INT)
    )

    @property
    def cost(self) -> int:
        return dated_cost(self, ChartKind.OTHER)


def test_a_new_field_is_sent_parsed_named_and_read_from_tables() -> None:
    q = _Gadget(D1, D1, widgets=3)
    assert q.params() == (("start", "20240101"), ("end", "20240101"), ("w", "3"))
    build: Any = _Gadget
    assert build(**from_params(_Gadget, WireParams(q.params()))) == q
    assert build(**from_table(_Gadget, {"start": "2024-01-01", "end": D1, "widgets": "3"})) == q
    with pytest.raises(InvalidQuery) as info:
        _Gadget(D1, D1, widgets=0)
    assert wire_name(_Gadget, info.value).field == "w"
    with pytest.raises(InvalidQuery) as info:
        from_params(_Gadget, WireParams([("start", "20240101"), ("end", "2024")]))
    assert info.value.field == "end"


def test_table_errors_name_the_field_with_its_prefix() -> None:
    with pytest.raises(InvalidQuery) as info:
        build_query("event_segmentation", {"events": ["a"], "start": D1}, name="q")
    assert info.value.field == "q.end"
    bad_filter = {"key": "k", "op": "??", "values": "x"}
    with pytest.raises(InvalidQuery) as info:
        build_query(
            "event_segmentation",
            {"events": [{"event_type": "a", "filters": [bad_filter]}], "start": D1, "end": D1},
        )
    assert info.value.field == "events[0].filters[0].op"


# -- the daily span limit -------------------------------------------------------------------


def test_build_query_over_keeps_the_whole_range_beside_a_valid_query() -> None:
    table = {"events": ["a"], "metric": "totals", "start": D1, "end": TWO_YEARS}
    with pytest.raises(InvalidQuery) as info:
        build_query("event_segmentation", table)
    assert info.value.field == "interval"
    query, span = build_query_over("event_segmentation", table)
    assert span == (D1, TWO_YEARS)
    assert isinstance(query, EventSegmentation)
    assert query.days == DAILY_MAX_DAYS
    weekly, _ = build_query_over("event_segmentation", {**table, "interval": "weekly"})
    assert isinstance(weekly, EventSegmentation)
    assert (weekly.start, weekly.end) == (D1, TWO_YEARS)


def test_plan_chunks_cuts_a_long_daily_range_it_was_given() -> None:
    template = EventSegmentation("a", D1, D1, metric="totals")
    chunks = plan_chunks(template, 10**9, start=D1, end=TWO_YEARS)
    assert all(isinstance(c, EventSegmentation) and c.days <= DAILY_MAX_DAYS for c in chunks)
    assert chunks[0].start == D1  # type: ignore[attr-defined]
    assert chunks[-1].end == TWO_YEARS  # type: ignore[attr-defined]
    assert sum(c.days for c in chunks) == 731  # type: ignore[attr-defined]
    uniques = EventSegmentation("a", D1, D1)
    with pytest.raises(InvalidQuery) as info:
        plan_chunks(uniques, 10**9, start=D1, end=TWO_YEARS)
    assert info.value.field == "interval"


def test_a_backfill_over_two_years_of_daily_segmentation_plans_in_capped_chunks() -> None:
    job = parse_job(
        {
            "start": D1,
            "end": TWO_YEARS,
            "chunk_days": 1000,
            "queries": [
                {"name": "t", "endpoint": "event_segmentation", "events": ["a"], "metric": "totals"}
            ],
        }
    )
    plan = plan_job(job, Limits(cost_per_window=10**6, cost_per_hour=10**7))
    assert [(t.start, t.end) for t in plan.tasks] == [
        (D1, D1 + timedelta(days=364)),
        (D1 + timedelta(days=365), D1 + timedelta(days=729)),
        (D1 + timedelta(days=730), TWO_YEARS),
    ]
    assert plan.description["t"]["params"][0] == ["e", '{"event_type":"a"}']


async def test_the_emulator_refuses_a_long_daily_segmentation() -> None:
    dataset = SyntheticDataset(seed=1, users=20, days=3, start=D1)
    async with Emulator(dataset) as emulator, aiohttp.ClientSession() as session:
        auth = {"Authorization": basic_auth(emulator.api_key, emulator.secret_key)}
        url = f"{emulator.url}/api/2/events/segmentation"
        params = {"e": '{"event_type":"a"}', "start": "20240101", "end": "20251231"}
        async with session.get(url, params=params, headers=auth) as response:
            body = await response.json()
        assert response.status == 400
        assert "i: " in str(body)
        params["i"] = str(WEEKLY)
        async with session.get(url, params=params, headers=auth) as response:
            assert response.status == 200


def test_merge_results_takes_the_template_query() -> None:
    template = EventSegmentation("a", D1, D1, metric="totals")
    with pytest.raises(ValueError, match="nothing to merge"):
        merge_results(template, [])


async def test_run_split_runs_a_long_daily_range_as_capped_requests() -> None:
    dataset = SyntheticDataset(seed=1, users=20, days=3, start=D1)
    limits = Limits().scaled(0.001)
    template = EventSegmentation("Sign Up", D1, D1, metric="totals")
    end = D1 + timedelta(days=399)
    async with (
        Emulator(dataset, limits=limits) as emulator,
        AmplitudeClient(
            emulator.api_key, emulator.secret_key, base_url=emulator.url, limits=limits
        ) as client,
    ):
        result = await run_split(client, template, start=D1, end=end)
    assert len(result.x_values) == 400
    assert [r.status for r in emulator.requests] == [200, 200]
    spans = [dict(r.params)["start"] + ".." + dict(r.params)["end"] for r in emulator.requests]
    assert sorted(spans) == ["20240101..20241230", "20241231..20250203"]
    # The whole range's total is the three days of data, wherever the cut fell.
    whole = EventSegmentation("Sign Up", D1, D1 + timedelta(days=2), metric="totals")
    async with (
        Emulator(dataset, limits=limits) as emulator,
        AmplitudeClient(
            emulator.api_key, emulator.secret_key, base_url=emulator.url, limits=limits
        ) as client,
    ):
        short = await client.run(whole)
    assert sum(result.series[0]) == sum(short.series[0]) > 0
