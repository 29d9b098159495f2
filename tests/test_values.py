"""Shared value types: wire forms, validation and the from_wire inverse."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from strategies import events, group_bys, property_filters, segments

from amplitude_async.errors import InvalidQuery
from amplitude_async.values import (
    COUNT_OPERATORS,
    FILTER_OPERATORS,
    Event,
    GroupBy,
    InCohort,
    PerformedEvent,
    PropertyFilter,
    Segment,
    Where,
    condition_from_wire,
)

# -- wire forms -----------------------------------------------------------------------------


def test_property_filter_wire_form() -> None:
    f = PropertyFilter("gp:SignUpDate", "is", ["2021-08-18"], type="user")
    assert f.to_wire() == {
        "subprop_type": "user",
        "subprop_key": "gp:SignUpDate",
        "subprop_op": "is",
        "subprop_value": ["2021-08-18"],
    }


def test_property_filter_defaults_to_an_event_property_and_takes_a_single_value() -> None:
    f = PropertyFilter("EmailVerified", "is", "true")
    assert f.type == "event"
    assert f.values == ("true",)


def test_group_by_wire_form_and_default_type() -> None:
    assert GroupBy("platform").to_wire() == {"type": "user", "value": "platform"}
    assert GroupBy("genre", "event").to_wire() == {"type": "event", "value": "genre"}


def test_event_wire_form_matches_the_documented_example() -> None:
    event = Event(
        "CompletedProfile",
        filters=[
            PropertyFilter("EmailVerified", "is", ["true"]),
            PropertyFilter("gp:SignUpDate", "is", ["2021-08-18"], type="user"),
        ],
        group_by=[GroupBy("platform", "user")],
    )
    documented = """{
      "event_type": "CompletedProfile",
      "filters": [
        {"subprop_type": "event", "subprop_key": "EmailVerified",
         "subprop_op": "is", "subprop_value": ["true"]},
        {"subprop_type": "user", "subprop_key": "gp:SignUpDate",
         "subprop_op": "is", "subprop_value": ["2021-08-18"]}
      ],
      "group_by": [{"type": "user", "value": "platform"}]
    }"""
    assert event.to_wire() == json.loads(documented)


def test_event_without_filters_or_group_bys_is_compact() -> None:
    assert Event("Play Song").to_wire() == {"event_type": "Play Song"}


def test_event_accepts_lists_and_plain_strings_as_user_group_bys() -> None:
    event = Event("x", group_by=["country", GroupBy("genre", "event")])
    assert event.group_by == (GroupBy("country", "user"), GroupBy("genre", "event"))
    assert isinstance(event.filters, tuple)
    assert Event("x", group_by="country").group_by == (GroupBy("country"),)


def test_segment_wire_forms_match_the_documented_examples() -> None:
    segment = Segment(
        Where("country", "is", ["United States"]),
        PerformedEvent("signup - end signup", ">=", 1),
    )
    assert segment.to_wire() == [
        {"prop": "country", "op": "is", "values": ["United States"]},
        {
            "op": ">=",
            "type": "event",
            "event_type": "signup - end signup",
            "filters": [],
            "value": 1,
            "time_type": "allTime",
        },
    ]
    last_30_days = PerformedEvent(
        "signup - end signup", ">=", 0, time_type="forEachInterval", time_value=30
    )
    assert last_30_days.to_wire()["time_value"] == 30
    assert last_30_days.to_wire()["time_type"] == "forEachInterval"


def test_cohort_condition_wire_form() -> None:
    assert InCohort("a1b2c3").to_wire() == {
        "prop": "userdata_cohort",
        "op": "is",
        "values": ["a1b2c3"],
    }


def test_segment_is_positional_and_empty_means_all_users() -> None:
    segment = Segment(InCohort("c"), Where("os", "contains", ["ios"]))
    assert len(segment.conditions) == 2
    assert Segment().to_wire() == []


def test_values_are_hashable_and_frozen() -> None:
    segment = Segment(Where("country", "is", ["France"]))
    assert hash(segment) == hash(Segment(Where("country", "is", ("France",))))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        segment.conditions = ()  # type: ignore[misc]


def test_condition_from_wire_chooses_the_class_by_shape() -> None:
    assert condition_from_wire(InCohort("c").to_wire()) == InCohort("c")
    assert condition_from_wire({"prop": "userdata_cohort", "op": "is not", "values": ["c"]}) == (
        Where("userdata_cohort", "is not", ["c"])
    )
    assert isinstance(condition_from_wire(PerformedEvent("x").to_wire()), PerformedEvent)


# -- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: PropertyFilter("", "is", ["a"]), "key"),
        (lambda: PropertyFilter("k", "equals", ["a"]), "op"),  # type: ignore[arg-type]
        (lambda: PropertyFilter("k", "is", []), "values"),
        (lambda: PropertyFilter("k", "is", [1]), "values[0]"),  # type: ignore[list-item]
        (lambda: PropertyFilter("k", "is", ["a"], type="device"), "type"),  # type: ignore[arg-type]
        (lambda: GroupBy(""), "value"),
        (lambda: GroupBy("x", "session"), "type"),  # type: ignore[arg-type]
        (lambda: Event(""), "event_type"),
        (lambda: Event("   "), "event_type"),
        (lambda: Event(3), "event_type"),  # type: ignore[arg-type]
        (lambda: Event("x", group_by=["a", "b", "c"]), "group_by"),
        (lambda: Event("x", group_by=[""]), "group_by[0]"),
        (lambda: Event("x", group_by=[3]), "group_by[0]"),  # type: ignore[list-item]
        (lambda: Event("x", filters=["country is US"]), "filters[0]"),  # type: ignore[list-item]
        (lambda: Event("x", filters="oops"), "filters"),  # type: ignore[arg-type]
        (lambda: Where("", "is", ["a"]), "prop"),
        (lambda: Where("country", "=", ["a"]), "op"),  # type: ignore[arg-type]
        (lambda: Where("country", "is", []), "values"),
        (lambda: Where("userdata_cohort", "is", ["c"]), "prop"),
        (lambda: InCohort(""), "cohort_id"),
        (lambda: PerformedEvent(""), "event_type"),
        (lambda: PerformedEvent("x", op="is"), "op"),  # type: ignore[arg-type]
        (lambda: PerformedEvent("x", op="!="), "op"),  # type: ignore[arg-type]
        (lambda: PerformedEvent("x", value=-1), "value"),
        (lambda: PerformedEvent("x", value=True), "value"),
        (lambda: PerformedEvent("x", time_type="lastWeek"), "time_type"),  # type: ignore[arg-type]
        (lambda: PerformedEvent("x", time_type="forEachInterval"), "time_value"),
        (lambda: PerformedEvent("x", time_type="forEachInterval", time_value=0), "time_value"),
        (lambda: PerformedEvent("x", time_value=30), "time_value"),
        (lambda: Segment(Event("x")), "conditions[0]"),  # type: ignore[arg-type]
        (lambda: Segment(InCohort("c"), "country is US"), "conditions[1]"),  # type: ignore[arg-type]
    ],
)
def test_invalid_values_name_their_field(build: Any, field: str) -> None:
    with pytest.raises(InvalidQuery) as info:
        build()
    assert info.value.field == field


def test_every_documented_operator_is_accepted() -> None:
    assert set(FILTER_OPERATORS) == {
        "is",
        "is not",
        "contains",
        "does not contain",
        "less",
        "less or equal",
        "greater",
        "greater or equal",
        "set is",
        "set is not",
    }
    for op in FILTER_OPERATORS:
        assert PropertyFilter("k", op, ["v"]).op == op
        assert Where("k", op, ["v"]).op == op
    for count_op in COUNT_OPERATORS:
        assert PerformedEvent("x", count_op, 2).op == count_op


def test_invalid_query_is_a_value_error_with_field_and_message() -> None:
    with pytest.raises(ValueError, match=r"^op: unknown operator 'equals'"):
        Where("country", "equals", ["a"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cls", "wire", "field"),
    [
        (
            PropertyFilter,
            {"subprop_type": "event", "subprop_key": "k", "subprop_value": ["a"]},
            "subprop_op",
        ),
        (
            PropertyFilter,
            {
                "subprop_type": "event",
                "subprop_key": "k",
                "subprop_op": "nope",
                "subprop_value": ["a"],
            },
            "subprop_op",
        ),
        (
            PropertyFilter,
            {"subprop_type": "event", "subprop_key": "k", "subprop_op": "is", "subprop_value": "a"},
            "subprop_value",
        ),
        (
            PropertyFilter,
            {"subprop_type": "event", "subprop_key": "k", "subprop_op": "is", "subprop_value": [1]},
            "subprop_value[0]",
        ),
        (
            PropertyFilter,
            {"subprop_type": "x", "subprop_key": "k", "subprop_op": "is", "subprop_value": ["a"]},
            "subprop_type",
        ),
        (Event, {"event_type": "x", "colour": "red"}, "colour"),
        (Event, {"filters": []}, "event_type"),
        (Event, ["x"], ""),
        (
            Event,
            {
                "event_type": "x",
                "filters": [
                    {
                        "subprop_type": "event",
                        "subprop_key": "k",
                        "subprop_op": "bogus",
                        "subprop_value": ["a"],
                    }
                ],
            },
            "filters[0].subprop_op",
        ),
        (Event, {"event_type": "x", "group_by": [{"type": "user"}]}, "group_by[0].value"),
        (Event, {"event_type": "x", "group_by": {"type": "user"}}, "group_by"),
        (Segment, {"prop": "country"}, ""),
        (Segment, [{"prop": "country", "op": "is", "values": ["a"]}, {"prop": "os"}], "[1].op"),
        (Segment, [{"prop": "os", "op": "is", "values": ["a"]}, {"type": "user"}], "[1].type"),
        (
            Segment,
            [{"type": "event", "event_type": "x", "op": "~", "value": 1, "time_type": "allTime"}],
            "[0].op",
        ),
        (
            Segment,
            [
                {
                    "type": "event",
                    "event_type": "x",
                    "op": ">=",
                    "value": 1,
                    "time_type": "forEachInterval",
                }
            ],
            "[0].time_value",
        ),
    ],
)
def test_from_wire_names_the_bad_key(cls: Any, wire: object, field: str) -> None:
    with pytest.raises(InvalidQuery) as info:
        cls.from_wire(wire)
    assert info.value.field == field


# -- round trip -----------------------------------------------------------------------------


def _through_json(wire: object) -> object:
    # What travels is JSON text, compact and not ASCII-escaped.
    return json.loads(json.dumps(wire, separators=(",", ":"), ensure_ascii=False))


@settings(max_examples=60, deadline=None)
@given(event=events)
def test_event_round_trips_through_json(event: Event) -> None:
    assert Event.from_wire(_through_json(event.to_wire())) == event


@settings(max_examples=60, deadline=None)
@given(segment=segments)
def test_segment_round_trips_through_json(segment: Segment) -> None:
    assert Segment.from_wire(_through_json(segment.to_wire())) == segment


@settings(max_examples=30, deadline=None)
@given(f=property_filters, g=group_bys)
def test_filter_and_group_by_round_trip(f: PropertyFilter, g: GroupBy) -> None:
    assert PropertyFilter.from_wire(_through_json(f.to_wire())) == f
    assert GroupBy.from_wire(_through_json(g.to_wire())) == g
