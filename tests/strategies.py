"""Hypothesis strategies for the shared value types (events, filters, segments)."""

from __future__ import annotations

from hypothesis import strategies as st

from amplitude_async.values import (
    COUNT_OPERATORS,
    FILTER_OPERATORS,
    TIME_TYPES,
    Condition,
    Event,
    GroupBy,
    InCohort,
    PerformedEvent,
    PropertyFilter,
    Segment,
    Where,
)

# Names with the characters that break naive URL building: spaces, &, +, =, %, quotes, non-ASCII.
names = st.one_of(
    st.sampled_from(
        [
            "Play Song",
            "a&b",
            "c+d",
            "x=y",
            "x=y%20z",
            'say "hi"',
            "ünïcødé",
            "Añadir",
            "日本",
            "日本語",
            "gp:Plan",
            "ce:X",
        ]
    ),
    st.text(min_size=1, max_size=12).filter(lambda s: s.strip() != ""),
)
optional_names = st.none() | names
value_lists = st.lists(st.text(max_size=8), min_size=1, max_size=3)
property_filters = st.builds(
    PropertyFilter,
    key=names,
    op=st.sampled_from(FILTER_OPERATORS),
    values=value_lists,
    type=st.sampled_from(["event", "user"]),
)
group_bys = st.builds(GroupBy, value=names, type=st.sampled_from(["event", "user"]))
events = st.builds(
    Event,
    event_type=names,
    filters=st.lists(property_filters, max_size=2),
    group_by=st.lists(group_bys, max_size=2),
)
event_or_name = st.one_of(events, names)
wheres = st.builds(
    Where,
    prop=names.filter(lambda p: p != "userdata_cohort"),
    op=st.sampled_from(FILTER_OPERATORS),
    values=value_lists,
)
cohorts = st.builds(InCohort, cohort_id=names)


@st.composite
def performed_events(draw: st.DrawFn) -> PerformedEvent:
    """A "performed event" condition; ``time_value`` only with ``forEachInterval``."""
    time_type = draw(st.sampled_from(TIME_TYPES))
    time_value = draw(st.integers(1, 365)) if time_type == "forEachInterval" else None
    return PerformedEvent(
        draw(names),
        draw(st.sampled_from(COUNT_OPERATORS)),
        draw(st.integers(0, 100)),
        filters=draw(st.lists(property_filters, max_size=2)),
        time_type=time_type,
        time_value=time_value,
    )


conditions: st.SearchStrategy[Condition] = st.one_of(wheres, cohorts, performed_events())
segments = st.lists(conditions, max_size=3).map(lambda cs: Segment(*cs))
segment_lists = st.lists(segments, max_size=3)
