"""The shared checks: every model's errors name the field and refuse look-alike types."""

from __future__ import annotations

from datetime import date, datetime

import attrs
import pytest

from amplitude_async.errors import InvalidQuery
from amplitude_async.validation import (
    as_list,
    check_choice,
    check_int,
    check_str,
    date_validator,
    int_validator,
    nested,
    one_of,
    str_validator,
)


def test_check_int_refuses_bools_and_names_the_field() -> None:
    assert check_int(3, "n", minimum=1, maximum=3) == 3
    for bad, message in [(True, "expected an integer, got bool True"), ("3", "str '3'")]:
        with pytest.raises(InvalidQuery, match=message) as info:
            check_int(bad, "n")
        assert info.value.field == "n"
    with pytest.raises(InvalidQuery, match="at most 3, got 4"):
        check_int(4, "n", maximum=3)
    with pytest.raises(InvalidQuery, match="at least 1, got 0"):
        check_int(0, "n", minimum=1)


def test_check_choice_and_check_str() -> None:
    check_choice("a", ("a", "b"), "m", "metric")
    with pytest.raises(InvalidQuery, match="unknown metric 'c'; expected one of 'a', 'b'"):
        check_choice("c", ("a", "b"), "m", "metric")
    with pytest.raises(InvalidQuery):
        check_choice(True, (1, 0), "m", "flag")  # True == 1, but it is not the choice 1
    with pytest.raises(InvalidQuery, match="must not be empty"):
        check_str("  ", "p")


def test_as_list_takes_sequences_but_not_text_or_mappings() -> None:
    assert as_list((1, 2), "x") == [1, 2]
    for bad in ("ab", b"ab", {"a": 1}, 3):
        with pytest.raises(InvalidQuery, match="expected a list") as info:
            as_list(bad, "x")
        assert info.value.field == "x"


def test_nested_reroots_a_field_path() -> None:
    assert nested("filters[0]", InvalidQuery("op", "bad")).field == "filters[0].op"
    assert nested("", InvalidQuery("op", "bad")).field == "op"
    assert nested("s", InvalidQuery("[1].values", "bad")).field == "s[1].values"
    assert nested("e", InvalidQuery("", "bad")).field == "e"


@attrs.frozen
class _Thing:
    day: date = attrs.field(validator=date_validator)
    size: int | None = attrs.field(default=None, validator=int_validator(1, optional=True))
    kind: str = attrs.field(default="a", validator=one_of(("a", "b"), "kind"))
    label: str | None = attrs.field(default=None, validator=str_validator(optional=True))


def test_validators_name_the_attribute() -> None:
    _Thing(date(2026, 1, 1))
    cases = [
        ({"day": datetime(2026, 1, 1)}, "day"),  # a datetime's time would vanish on the wire
        ({"day": date(2026, 1, 1), "size": 0}, "size"),
        ({"day": date(2026, 1, 1), "kind": "c"}, "kind"),
        ({"day": date(2026, 1, 1), "label": ""}, "label"),
    ]
    for kwargs, field in cases:
        with pytest.raises(InvalidQuery) as info:
            _Thing(**kwargs)  # type: ignore[arg-type]
        assert info.value.field == field
