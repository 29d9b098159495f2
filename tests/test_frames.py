"""Results as pandas, Arrow and polars frames: the same columns, types and values in all three."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_results import SAMPLE_TYPES, decode

from amplitude_async import frames as frames_module
from amplitude_async.frames import FRAME_COLUMNS, row_columns
from amplitude_async.results import Row, UserActivityResult, UserData, UserEvent

pandas = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")
pl = pytest.importorskip("polars")

assert_pandas_equal = pytest.importorskip("pandas.testing").assert_frame_equal
assert_polars_equal = pytest.importorskip("polars.testing").assert_frame_equal


class _Rows:
    """A result made of given rows: its frames are built as every result's are."""

    def __init__(self, rows: list[Row]) -> None:
        self._rows = tuple(rows)

    def rows(self, query: object = None) -> tuple[Row, ...]:
        return self._rows

    def to_pandas(self) -> Any:
        return frames_module.to_pandas(self._rows)

    def to_arrow(self) -> Any:
        return frames_module.to_arrow(self._rows)

    def to_polars(self) -> Any:
        return frames_module.to_polars(self._rows)


def frames(result: Any) -> tuple[Any, Any, Any]:
    return result.to_pandas(), result.to_arrow(), result.to_polars()


def assert_same_frames(result: Any) -> None:
    """The three frames hold the same columns, types and values, and they are the rows'."""
    frame, table, polars_frame = frames(result)
    assert list(frame.columns) == list(table.column_names) == polars_frame.columns
    assert tuple(table.column_names) == FRAME_COLUMNS
    # pandas and polars read from the Arrow table give exactly ours: same dtypes, same values.
    assert_pandas_equal(frame, table.to_pandas())
    assert_polars_equal(polars_frame, pl.from_arrow(table))
    rows = result.rows()
    expected = [
        (r.label, r.x_value, None if r.value is None else float(r.value), r.metric) for r in rows
    ]
    got = [(d["label"], d["x"], d["value"], d["metric"]) for d in table.to_pylist()]
    columns, _ = row_columns(rows)
    if columns[1].type == "string":
        expected = [
            (lab, x if isinstance(x, str) else x.isoformat(), v, m) for lab, x, v, m in expected
        ]
    else:
        expected = [(lab, None if x == "" else x, v, m) for lab, x, v, m in expected]
        got = [
            (lab, x.replace(tzinfo=UTC) if isinstance(x, datetime) and x.tzinfo else x, v, m)
            for lab, x, v, m in got
        ]
        expected = [
            (lab, x.astimezone(UTC) if isinstance(x, datetime) and x.tzinfo else x, v, m)
            for lab, x, v, m in expected
        ]
    assert got == expected
    assert table.schema.field("value").type == pa.float64()


@pytest.mark.parametrize("name", sorted(SAMPLE_TYPES))
def test_every_sample_gives_the_same_frame_in_pandas_arrow_and_polars(name: str) -> None:
    assert_same_frames(decode(name))


@pytest.mark.parametrize(
    ("name", "arrow", "polars", "pandas_dtype"),
    [
        ("doc_users", pa.date32(), pl.Date, "object"),
        ("real_segmentation_hourly", pa.timestamp("us"), pl.Datetime("us"), "datetime64[us]"),
        ("doc_realtime", pa.time64("us"), pl.Time, "object"),
        ("doc_sessions_length", pa.string(), pl.String, "str"),
    ],
)
def test_the_x_column_keeps_its_type(name: str, arrow: Any, polars: Any, pandas_dtype: str) -> None:
    frame, table, polars_frame = frames(decode(name))
    assert table.schema.field("x").type == arrow
    assert polars_frame.schema["x"] == polars
    assert frame["x"].dtype == pandas.Series([], dtype=pandas_dtype).dtype
    assert polars_frame.schema["value"] == pl.Float64
    assert frame["value"].dtype == "float64"


def test_integers_become_floats_and_empty_cells_stay_null() -> None:
    day = date(2026, 9, 1)
    result = _Rows([Row("A", day, 3), Row("A", day + timedelta(days=1), None), Row("A", "", 2)])
    frame, table, polars_frame = frames(result)
    assert table.column("value").to_pylist() == [3.0, None, 2.0]
    assert table.column("x").to_pylist() == [day, day + timedelta(days=1), None]
    assert polars_frame["value"].null_count() == 1
    assert frame["value"].isna().tolist() == [False, True, False]
    assert frame["x"].tolist() == [day, day + timedelta(days=1), None]


def test_events_without_a_time_are_null_timestamps() -> None:
    stamp = datetime(2026, 9, 15, 8, 1, 2, 123000)
    result = UserActivityResult(
        UserData(), (UserEvent("Play", stamp), UserEvent("Stop"), UserEvent("Play", stamp))
    )
    frame, table, polars_frame = frames(result)
    assert table.column("x").to_pylist() == [stamp, None, stamp]
    assert polars_frame["x"].to_list() == [stamp, None, stamp]
    assert str(frame["x"].dtype) == "datetime64[us]"
    assert_same_frames(result)


def test_empty_and_mixed_x_values_are_text() -> None:
    assert_same_frames(_Rows([]))
    mixed = _Rows([Row("A", date(2026, 9, 1), 1), Row("A", "0s-60s", 2)])
    _, table, _ = frames(mixed)
    assert table.column("x").to_pylist() == ["2026-09-01", "0s-60s"]
    assert_same_frames(mixed)


def test_aware_times_are_utc() -> None:
    paris = timezone(timedelta(hours=1))
    result = _Rows([Row("A", datetime(2026, 9, 1, 10, tzinfo=paris), 1)])
    _, table, polars_frame = frames(result)
    assert table.schema.field("x").type == pa.timestamp("us", tz="UTC")
    assert polars_frame["x"].to_list() == [datetime(2026, 9, 1, 9, tzinfo=UTC)]
    assert_same_frames(result)


_DAYS = st.dates(date(2000, 1, 1), date(2100, 1, 1))
_X_VALUES = st.one_of(
    st.lists(_DAYS | st.just(""), max_size=6),
    st.lists(st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1)) | st.just(""), max_size=6),
    st.lists(st.times() | st.just(""), max_size=6),
    st.lists(_DAYS | st.text(max_size=5) | st.times(), max_size=6),
)
_VALUES = st.none() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(xs=_X_VALUES, data=st.data())
def test_any_rows_give_the_same_frames(xs: list[Any], data: st.DataObject) -> None:
    rows = [
        Row(data.draw(st.text(max_size=4)), x, data.draw(_VALUES), data.draw(st.text(max_size=3)))
        for x in xs
    ]
    assert_same_frames(_Rows(rows))


@pytest.mark.parametrize(
    ("module", "method", "extra"),
    [("pyarrow", "to_arrow", "parquet"), ("polars", "to_polars", "polars")],
)
def test_a_missing_library_names_its_extra(
    monkeypatch: pytest.MonkeyPatch, module: str, method: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes "import module" fail
    with pytest.raises(ImportError, match=rf"amplitude-async\[{extra}\]"):
        getattr(decode("doc_users"), method)()


def test_to_polars_does_not_need_pyarrow() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["pyarrow"] = None  # any "import pyarrow" fails
        from test_results import decode
        frame = decode("real_segmentation_hourly").to_polars()
        assert frame.height == 6 and str(frame.schema["x"]).startswith("Datetime"), frame
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=__file__.rsplit("/", 1)[0])


def test_a_query_and_a_backfill_import_none_of_the_frame_libraries(tmp_path: Any) -> None:
    # Run in a fresh interpreter: this one has imported them all.
    job = tmp_path / "job.toml"
    job.write_text(
        'source = "emulator"\nstart = 2026-09-01\nend = 2026-09-20\nchunk_days = 7\n'
        'output = "out"\nformats = ["jsonl", "csv"]\n[[queries]]\nname = "dau"\n'
        'endpoint = "active_users"\n[emulator]\nusers = 50\ntime_scale = 0.001\n',
        encoding="utf-8",
    )
    code = textwrap.dedent(
        f"""
        import asyncio, sys
        from datetime import date
        import amplitude_async
        from amplitude_async import ActiveUsers, AmplitudeClient
        from amplitude_async.cli import main
        from amplitude_async.testing.dataset import SyntheticDataset
        from amplitude_async.testing.emulator import Emulator

        async def query():
            async with Emulator(SyntheticDataset(seed=1, users=50, days=10,
                                                 start=date(2026, 9, 1))) as emu:
                async with AmplitudeClient(emu.api_key, emu.secret_key,
                                           base_url=emu.url) as client:
                    result = await client.active_users(date(2026, 9, 1), date(2026, 9, 5))
                    assert len(result.rows()) == 5

        asyncio.run(query())
        code = main(["backfill", {str(job)!r}])
        assert code == 0, code
        loaded = sorted({{"pandas", "pyarrow", "polars"}} & set(sys.modules))
        assert not loaded, loaded
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "rows.csv").exists()
