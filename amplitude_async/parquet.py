"""Streaming Parquet files: records in, row groups out, the file renamed into place at the end.

::

    columns = (Column("user_id", "string", nullable=False), Column("day", "date"))
    with ParquetWriter(Path("members.parquet"), columns) as out:
        for user_id, day in records:        # any number: memory holds one row group
            out.write((user_id, day))
    out.rows                                # how many were written

Records are tuples in the order of the columns, with Python values of each column's
:data:`~amplitude_async.frames.ColumnType` (``None`` for null). They are converted to Arrow
arrays a few thousand at a time and written as one row group when ``row_group_rows`` of them
are there, so memory stays bounded however many records come. The file is written under a
temporary name in the target's directory and renamed over it (:func:`os.replace`) only when
the writer closes without error; on an error, or :meth:`ParquetWriter.abort`, the temporary
file is deleted and an existing file at ``path`` is left as it was.

pyarrow is imported when a writer is created; without it, ``ImportError`` names the extra
``amplitude-async[parquet]``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from .frames import Column, arrow_schema, import_optional

__all__ = ["DEFAULT_ROW_GROUP_ROWS", "PARQUET_EXTRA", "ParquetWriter", "write_parquet"]

DEFAULT_ROW_GROUP_ROWS: Final = 65_536
"""Records per row group: large enough for good compression, small enough to buffer."""

_CONVERT_ROWS: Final = 4096
"""Records held as Python objects before they are converted to Arrow arrays."""

PARQUET_EXTRA: Final = "amplitude-async[parquet]"
"""The extra that installs what Parquet output needs (pyarrow)."""


class ParquetWriter:
    """Writes records to ``path`` as Parquet in row groups of ``row_group_rows``.

    ``columns`` fix the schema (names, :data:`~amplitude_async.frames.ColumnType`, nullability);
    ``metadata`` is stored in the file's key-value metadata. ``compression`` is pyarrow's
    codec name (Snappy, the default, is read by every engine). Use it as a context manager:
    leaving the block normally closes it (the file appears at ``path``), leaving it with an
    exception aborts it.
    """

    def __init__(
        self,
        path: Path,
        columns: Sequence[Column],
        *,
        row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
        compression: str = "snappy",
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        if not columns:
            raise ValueError("a Parquet file needs at least one column")
        if row_group_rows < 1:
            raise ValueError(f"row_group_rows must be positive, got {row_group_rows}")
        self._pa = import_optional("pyarrow", "Parquet output")
        pq = import_optional("pyarrow.parquet", "Parquet output")
        self.path = path
        self.columns = tuple(columns)
        self.row_group_rows = row_group_rows
        self.rows = 0
        """Records written so far (buffered ones included)."""
        self._schema = arrow_schema(self.columns, metadata)
        self._buffer: list[list[Any]] = [[] for _ in self.columns]
        self._batches: list[Any] = []
        self._pending = 0
        self._closed = False
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        self._temp = Path(temp)
        try:
            self._file = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            self._temp.unlink(missing_ok=True)
            raise
        try:
            self._writer = pq.ParquetWriter(self._file, self._schema, compression=compression)
        except BaseException:
            self._file.close()
            self._temp.unlink(missing_ok=True)
            raise

    def __enter__(self) -> ParquetWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, record: Sequence[object]) -> None:
        """Add one record (a value per column, in order).

        A value that does not fit its column raises ``ValueError`` when its batch is converted
        (at the latest on :meth:`close`); the file is then not written.
        """
        if self._closed:
            raise ValueError(f"the writer of {self.path} is closed")
        if len(record) != len(self.columns):
            raise ValueError(
                f"a record of {self.path.name} has {len(self.columns)} values "
                f"({', '.join(c.name for c in self.columns)}), got {len(record)}"
            )
        for values, value in zip(self._buffer, record, strict=True):
            values.append(value)
        self.rows += 1
        if len(self._buffer[0]) >= min(_CONVERT_ROWS, self.row_group_rows - self._pending):
            self._convert()
            if self._pending >= self.row_group_rows:
                self._flush()

    def write_many(self, records: Iterable[Sequence[object]]) -> None:
        """:meth:`write` each of ``records``."""
        for record in records:
            self.write(record)

    def _convert(self) -> None:
        """Turn the buffered Python values into an Arrow batch (far smaller than the objects)."""
        if not self._buffer[0]:
            return
        pa = self._pa
        try:
            arrays = [
                pa.array(values, type=field.type)
                for values, field in zip(self._buffer, self._schema, strict=True)
            ]
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ValueError(
                f"a record of {self.path.name} does not fit its columns: {exc}"
            ) from None
        for column, array in zip(self.columns, arrays, strict=True):
            if not column.nullable and array.null_count:
                raise ValueError(f"column {column.name!r} of {self.path.name} may not be null")
        self._batches.append(pa.RecordBatch.from_arrays(arrays, schema=self._schema))
        self._pending += len(self._buffer[0])
        self._buffer = [[] for _ in self.columns]

    def _flush(self) -> None:
        """Write the converted batches as one row group."""
        self._convert()
        if not self._pending:
            return
        table = self._pa.Table.from_batches(self._batches, schema=self._schema)
        self._writer.write_table(table, row_group_size=self._pending)
        self._batches = []
        self._pending = 0

    def close(self) -> int:
        """Write what is buffered, finish the file and rename it to ``path``; returns the number
        of records. Closing twice does nothing."""
        if self._closed:
            return self.rows
        try:
            self._flush()
            self._writer.close()
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._temp, self.path)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return self.rows

    def abort(self) -> None:
        """Give up: delete the temporary file; ``path`` is left as it was."""
        if self._closed:
            return
        self._closed = True
        self._buffer = [[] for _ in self.columns]
        self._batches = []
        try:
            with contextlib.suppress(Exception):  # the file is thrown away anyway
                self._writer.close()
        finally:
            self._file.close()
            self._temp.unlink(missing_ok=True)


def write_parquet(
    path: Path,
    columns: Sequence[Column],
    records: Iterable[Sequence[object]],
    *,
    row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
    metadata: Mapping[str, str] | None = None,
) -> int:
    """Write ``records`` to ``path`` with :class:`ParquetWriter`; returns how many."""
    with ParquetWriter(path, columns, row_group_rows=row_group_rows, metadata=metadata) as out:
        out.write_many(records)
    return out.rows
