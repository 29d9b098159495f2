"""The streaming Parquet writer: row groups, types, atomic replacement, clean failure."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, time
from pathlib import Path

import pytest

from amplitude_async.frames import Column
from amplitude_async.parquet import ParquetWriter, write_parquet

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

COLUMNS = (
    Column("user", "string", nullable=False),
    Column("day", "date"),
    Column("seen", "timestamp"),
    Column("seen_utc", "timestamp_utc"),
    Column("at", "time"),
    Column("amount", "float64"),
    Column("count", "int64"),
    Column("paid", "bool"),
)


def record(i: int) -> tuple[object, ...]:
    empty = i % 5 == 0
    return (
        f"u{i}",
        None if empty else date(2026, 9, 1 + i % 28),
        None if empty else datetime(2026, 9, 1, i % 24, 30),
        None if empty else datetime(2026, 9, 1, i % 24, tzinfo=UTC),
        None if empty else time(i % 24, 5),
        None if empty else i / 4,
        None if empty else i,
        None if empty else i % 2 == 0,
    )


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_records_come_back_typed_in_row_groups_of_the_given_size(tmp_path: Path) -> None:
    path = tmp_path / "out" / "members.parquet"
    records = [record(i) for i in range(25)]
    assert write_parquet(path, COLUMNS, iter(records), row_group_rows=10) == 25
    meta = pq.ParquetFile(path).metadata
    assert [meta.row_group(g).num_rows for g in range(meta.num_row_groups)] == [10, 10, 5]
    table = pq.read_table(path)
    assert table.schema.field("user").nullable is False
    assert [f.type for f in table.schema] == [
        pa.string(),
        pa.date32(),
        pa.timestamp("us"),
        pa.timestamp("us", tz="UTC"),
        pa.time64("us"),
        pa.float64(),
        pa.int64(),
        pa.bool_(),
    ]
    assert [tuple(r.values()) for r in table.to_pylist()] == records
    assert leftovers(path.parent) == []


def test_row_groups_larger_than_a_conversion_batch_keep_their_size(tmp_path: Path) -> None:
    path = tmp_path / "many.parquet"
    columns = (Column("n", "int64", nullable=False),)
    assert write_parquet(path, columns, ((i,) for i in range(12_000)), row_group_rows=5000) == (
        12_000
    )
    meta = pq.ParquetFile(path).metadata
    assert [meta.row_group(g).num_rows for g in range(meta.num_row_groups)] == [5000, 5000, 2000]
    assert pq.read_table(path).column("n").to_pylist() == list(range(12_000))


def test_nothing_appears_until_close_and_the_old_file_is_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "members.parquet"
    write_parquet(path, COLUMNS, [record(1)])
    with ParquetWriter(path, COLUMNS, row_group_rows=4) as out:
        out.write_many(record(i) for i in range(10))
        # Two row groups are written, but readers still see the old file.
        assert pq.read_table(path).num_rows == 1
        assert len(leftovers(tmp_path)) == 1
    assert out.rows == 10
    assert pq.read_table(path).num_rows == 10
    assert leftovers(tmp_path) == []


def test_a_failure_mid_stream_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "members.parquet"
    write_parquet(path, COLUMNS, [record(1)])
    before = path.read_bytes()

    def failing() -> object:
        yield from (record(i) for i in range(7))
        raise RuntimeError("the source broke")

    with pytest.raises(RuntimeError, match="source broke"):
        write_parquet(path, COLUMNS, failing(), row_group_rows=3)  # type: ignore[arg-type]
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        (("u1", "2026-09-01", None, None, None, None, None, None), "does not fit"),
        ((None, None, None, None, None, None, None, None), "'user' of members.parquet may not"),
        (("u1",), "has 8 values"),
    ],
)
def test_records_that_do_not_fit_are_refused_and_nothing_is_written(
    tmp_path: Path, bad: tuple[object, ...], words: str
) -> None:
    path = tmp_path / "members.parquet"
    with pytest.raises(ValueError, match=words):
        write_parquet(path, COLUMNS, [record(1), bad])
    assert not path.exists()
    assert leftovers(tmp_path) == []


def test_abort_and_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "members.parquet"
    writer = ParquetWriter(path, COLUMNS)
    writer.write(record(1))
    writer.abort()
    assert not path.exists()
    assert leftovers(tmp_path) == []
    with pytest.raises(ValueError, match="closed"):
        writer.write(record(2))
    assert write_parquet(path, COLUMNS, []) == 0
    assert pq.read_table(path).schema.names == [c.name for c in COLUMNS]


def test_without_pyarrow_the_error_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ImportError, match=r"amplitude-async\[parquet\]"):
        ParquetWriter(tmp_path / "x.parquet", COLUMNS)
    assert list(tmp_path.iterdir()) == []
