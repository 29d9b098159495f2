"""The fast path of ``structure_result`` against the converter's careful path.

The fast decoders must never change an answer: on every sample they decode to exactly what the
converter gives (same values *and* types: an ``int`` count must not become ``2.0``), and on a
damaged body they either agree with the converter or fail, so that the converter's error, which
names the bad field, is what the caller sees.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_results import SAMPLE_TYPES

from amplitude_async.cohort_results import CohortsListResult
from amplitude_async.converter import _decoders, converter, structure_result
from amplitude_async.errors import ResponseValidationError
from amplitude_async.results import (
    AverageSessionLengthResult,
    ChartCSVResult,
    EventSegmentationResult,
    FunnelResult,
    RetentionResult,
    SessionsPerUserResult,
    UserActivityResult,
)

SAMPLES = Path(__file__).parent / "samples"
RECORDED_TYPES: dict[str, type] = {
    "chart_csv_comparison": ChartCSVResult,
    "chart_csv_daily": ChartCSVResult,
    "chart_csv_json_series": ChartCSVResult,
    "funnels": FunnelResult,
    "retention": RetentionResult,
    "segmentation_grouped_pairs": EventSegmentationResult,
    "segmentation_string_labels": EventSegmentationResult,
    "segmentation_two_events_grouped": EventSegmentationResult,
    "segmentation_two_segments": EventSegmentationResult,
    "segmentation_ungrouped": EventSegmentationResult,
    "sessions_average": AverageSessionLengthResult,
    "sessions_peruser": SessionsPerUserResult,
    "useractivity_unknown_user": UserActivityResult,
}
COHORTS = {
    "cohorts": [
        {
            "id": "abc",
            "name": "Buyers",
            "size": 12,
            "owners": ["a@example.com"],
            "createdAt": 1700000000,
            "lastComputed": None,
            "archived": False,
        }
    ]
}


def _bodies() -> list[tuple[str, Any, type]]:
    out = [(name, _read(SAMPLES / f"{name}.json"), cls) for name, cls in SAMPLE_TYPES.items()]
    out += [
        (f"recorded/{name}", _read(SAMPLES / "recorded" / f"{name}.json"), cls)
        for name, cls in RECORDED_TYPES.items()
    ]
    return [*out, ("cohorts", COHORTS, CohortsListResult)]


def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


BODIES = _bodies()


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same type all the way down (``1 == 1.0`` is not the same here)."""
    if type(a) is not type(b):
        return False
    if attrs.has(type(a)):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in attrs.fields(type(a)))
    if isinstance(a, tuple | list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def test_recorded_types_cover_every_recorded_answer() -> None:
    answers = {p.stem for p in (SAMPLES / "recorded").glob("*.json")}
    assert answers - set(RECORDED_TYPES) == {"error_400", "error_400_user"}


@pytest.mark.parametrize(("name", "body", "cls"), BODIES, ids=[b[0] for b in BODIES])
def test_every_sample_takes_the_fast_path_to_the_same_result(
    name: str, body: Any, cls: type
) -> None:
    fast = _decoders.get(cls)(copy.deepcopy(body))
    careful: Any = converter.structure(body, cls)
    assert same(fast, careful)
    assert same(structure_result(body, cls), careful)


def _paths(node: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every position in a JSON tree, the root included."""
    out = [here]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*here, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, (*here, index))
    return out


# What an answer may carry instead of the expected value: numbers sent as strings, integral
# floats, booleans where numbers go, the location sentinel, negative indexes, wrong shapes.
odd_values = st.sampled_from(
    [
        None,
        True,
        False,
        0,
        -1,
        7,
        2.0,
        2.5,
        "12",
        " 3 ",
        "9.98",
        "1e3",
        "x",
        "",
        "true",
        "2026-09-01",
        "2026-09-01 10:00:00.000000",
        1.7976931348623157e308,
        "1.7976931348623157E308",
        [],
        [1, 2],
        ["a"],
        [0, "Germany"],
        [[1, "2"]],
        {},
        {"segmentIndex": -1},
        {"segmentIndex": 1, "eventIndex": 0},
        {"value": 1, "setId": ""},
        {"count": 1, "outof": 2},
        {"lat": 1.5, "lng": "2"},
    ]
).map(copy.deepcopy)


@st.composite
def damaged(draw: st.DrawFn) -> tuple[Any, type]:
    """A sample with one to three positions replaced by odd values or removed."""
    _, body, cls = draw(st.sampled_from(BODIES))
    body = copy.deepcopy(body)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(body)))
        if not path:
            body = draw(odd_values)
            continue
        parent = body
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(odd_values)
    return body, cls


@settings(max_examples=400, deadline=None)
@given(damaged())
def test_the_fast_path_agrees_with_the_converter_or_steps_aside(case: tuple[Any, type]) -> None:
    body, cls = case
    try:
        careful: Any = converter.structure(copy.deepcopy(body), cls)
    except Exception:
        careful = None
    try:
        fast = _decoders.get(cls)(copy.deepcopy(body))
    except Exception:
        fast = None
    if careful is None:
        assert fast is None, "the fast path accepted what the converter refuses"
        with pytest.raises(ResponseValidationError):
            structure_result(body, cls)
    else:
        assert fast is None or same(fast, careful)
        assert same(structure_result(body, cls), careful)


# Damage that a random position rarely hits: each of these reaches a rule of its own.
TARGETED = [
    ("doc_sessions_average", ("data", "seriesMeta", 0, "segmentIndex"), -1),
    ("doc_funnels", ("data", 0, "meta"), {"segmentIndex": 0, "eventIndex": -2}),
    ("doc_funnels", ("data", 0, "meta"), {"segmentIndex": "1"}),
    ("doc_users", ("data", "series", 0, 1), "12"),
    ("doc_users", ("data", "series", 0, 1), 12.0),
    ("doc_users", ("data", "series", 0, 1), True),
    ("doc_segmentation", ("data", "seriesLabels", 0), [0, 1.5]),
    ("doc_retention", ("data", "series", 0, "values", "Aug 14", 1, "count"), 3.0),
    ("doc_retention", ("data", "series", 0, "values", "Aug 14", 1, "incomplete"), "true"),
    ("doc_ltv", ("data", "series", 0, "values", "2021-10-01", "r1d"), "2.5"),
    ("doc_ltv", ("data", "series", 0, "values", "2021-10-01", "r1d"), None),
    ("real_useractivity", ("userData", "device_ids"), None),
    ("real_useractivity", ("userData", "properties"), None),
    ("real_useractivity", ("userData", "last_location"), {"lat": "1.5", "lng": 2}),
    ("real_useractivity", ("userData", "purchases"), "2.0"),
    ("real_useractivity", ("events", 0, "event_time"), "2026-09-15T08:01:02"),
    ("doc_users", ("timeComputed",), "1789466523471"),
    ("doc_users", ("wasCached",), "false"),
]


@pytest.mark.parametrize(("name", "where", "value"), TARGETED)
def test_targeted_damage_is_decoded_as_the_converter_does(
    name: str, where: tuple[Any, ...], value: Any
) -> None:
    body = _read(SAMPLES / f"{name}.json")
    parent = body
    for key in where[:-1]:
        parent = parent[key]
    parent[where[-1]] = value
    cls = SAMPLE_TYPES[name]
    try:
        careful: Any = converter.structure(copy.deepcopy(body), cls)
    except Exception:
        try:
            _decoders.get(cls)(body)
        except Exception:  # any failure hands the body over to the converter
            pass
        else:
            pytest.fail("the fast path accepted what the converter refuses")
        with pytest.raises(ResponseValidationError):
            structure_result(body, cls)
    else:
        assert same(structure_result(body, cls), careful)
        assert same(_decoders.get(cls)(body), careful), "a well-formed answer left the fast path"
