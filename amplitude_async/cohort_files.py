"""A cohort file's bytes and rows: gzip or plain CSV as it streams in, cut at record ends, read
as members, and written where asked (CSV as served, or Parquet).

Pure helpers of :mod:`amplitude_async.cohorts` (which runs the requests); nothing here sends
anything.
"""

from __future__ import annotations

import csv
import io
import os
import re
import zlib
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, Literal

from .cohort_results import CohortMember
from .errors import ConfigurationError, InvalidQuery, ResponseValidationError
from .frames import Column, import_optional
from .parquet import ParquetWriter

__all__ = [
    "FORMATS",
    "CohortFormat",
    "check_format",
    "check_target",
    "member_columns",
]

_INFLATE_STEP: Final = 1024 * 1024
"""Bytes decompressed at most per step (a gzip bomb never lands in memory whole)."""
_GZIP_MAGIC: Final = b"\x1f\x8b"
_QUOTED: Final = re.compile(rb'"[^"]*"')
_NOT_QUOTE_OR_NEWLINE: Final = bytes(b for b in range(256) if b not in b'"\n')


# -- the bytes of the file ----------------------------------------------------------------------


async def _plain(chunks: AsyncIterator[bytes], path: str) -> AsyncIterator[bytes]:
    """The body decompressed if it is gzip (sniffed from its first bytes), else as it is."""
    inflate: Any = None
    first = True
    async for chunk in chunks:
        if not chunk:
            continue
        if first:
            first = False
            if chunk.startswith(_GZIP_MAGIC) or (len(chunk) == 1 and chunk == _GZIP_MAGIC[:1]):
                inflate = zlib.decompressobj(wbits=31)
        if inflate is None:
            yield chunk
            continue
        data = chunk
        while data:
            try:
                out = inflate.decompress(data, _INFLATE_STEP)
                while inflate.unconsumed_tail:
                    if out:
                        yield out
                    out = inflate.decompress(inflate.unconsumed_tail, _INFLATE_STEP)
            except zlib.error as exc:
                message = f"the cohort file is not valid gzip: {exc}"
                raise ResponseValidationError(message, path=path) from None
            if out:
                yield out
            data = b""
            if inflate.eof and inflate.unused_data:
                # Concatenated gzip members are one file.
                data, inflate = inflate.unused_data, zlib.decompressobj(wbits=31)
    if inflate is not None and not inflate.eof:
        raise ResponseValidationError("the cohort file ends before its gzip stream does", path=path)


class _Records:
    """Cuts plain CSV bytes at record ends (newlines outside quotes), so each piece handed on
    holds whole records; counts them."""

    def __init__(self) -> None:
        self._rest = b""
        self.records = 0

    def feed(self, data: bytes) -> bytes:
        """The whole records completed by ``data`` (possibly empty)."""
        buffer = self._rest + data if self._rest else data
        end = buffer.rfind(b"\n")
        while end >= 0 and buffer.count(b'"', 0, end) % 2:
            end = buffer.rfind(b"\n", 0, end)  # that newline is inside a quoted value
        if end < 0:
            self._rest = buffer
            return b""
        whole, self._rest = buffer[: end + 1], buffer[end + 1 :]
        self.records += _count_records(whole)
        return whole

    def finish(self) -> bytes:
        """The last record, if the file does not end with a newline."""
        rest, self._rest = self._rest, b""
        if rest.strip():
            self.records += 1
            return rest
        return b""


def _count_records(whole: bytes) -> int:
    """Newlines outside quotes in ``whole`` (which starts outside quotes)."""
    # Only quotes and newlines matter; dropping adjacent quote pairs keeps every newline's
    # parity. With no quote left, no newline was inside a quoted value (the common case, at
    # the speed of bytes methods); otherwise the slower exact count.
    skeleton = whole.translate(None, _NOT_QUOTE_OR_NEWLINE).replace(b'""', b"")
    if b'"' not in skeleton:
        return len(skeleton)
    return _QUOTED.sub(b"", whole).count(b"\n")


def _rows(text: bytes, path: str) -> Iterator[list[str]]:
    try:
        yield from csv.reader(io.StringIO(text.decode("utf-8")))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ResponseValidationError(
            f"the cohort file is not UTF-8 CSV: {exc}", path=path
        ) from None


def _columns(header: list[str], path: str) -> tuple[str, ...]:
    columns = tuple(header)
    if columns and columns[0].startswith("\ufeff"):
        columns = (columns[0][1:], *columns[1:])
    if columns[:2] != ("amplitude_id", "user_id"):
        raise ResponseValidationError(
            f"the cohort file's header should start with amplitude_id,user_id, got {columns[:2]}",
            path=path,
        )
    return columns


def _member(row: list[str], properties: Sequence[str], path: str) -> CohortMember:
    try:
        amplitude_id = int(row[0])
    except (ValueError, IndexError):
        raise ResponseValidationError(
            f"expected an Amplitude ID in the first column, got {row[:1]}", path=path
        ) from None
    user_id = row[1] if len(row) > 1 and row[1] else None
    return CohortMember(amplitude_id, user_id, dict(zip(properties, row[2:], strict=False)))


# -- output ---------------------------------------------------------------------------------


def check_target(path: str | os.PathLike[str]) -> Path:
    """``path`` as a :class:`Path` if its directory exists and it is not a directory itself."""
    try:
        target = Path(path)
    except TypeError:
        raise InvalidQuery("path", f"expected a file path, got {path!r}") from None
    if target.is_dir():
        raise InvalidQuery("path", f"{str(target)!r} is a directory, not a file")
    parent = target.parent
    if not parent.is_dir():
        raise InvalidQuery("path", f"the directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        # Found now, not after the request has spent a month's quota.
        raise InvalidQuery("path", f"the directory {str(parent)!r} is not writable")
    return target


CohortFormat = Literal["csv", "parquet"]
"""How a downloaded cohort is written: CSV as served, or Parquet (``amplitude-async[parquet]``)."""

FORMATS: Final[tuple[CohortFormat, ...]] = ("csv", "parquet")


def check_format(format: object, target: Path) -> CohortFormat:
    """The output format: ``format`` if given, else ``parquet`` for a ``.parquet`` path and
    ``csv`` otherwise. Parquet needs pyarrow, checked now (before anything is sent)."""
    if format is None:
        format = "parquet" if target.suffix.lower() == ".parquet" else "csv"
    if format not in FORMATS:
        raise InvalidQuery("format", f"must be one of {list(FORMATS)}, got {format!r}")
    if format == "parquet":
        try:
            import_optional("pyarrow.parquet", "a cohort download as Parquet")
        except ImportError as exc:
            raise ConfigurationError("format", str(exc)) from None
        return "parquet"
    return "csv"


def member_columns(columns: Sequence[str]) -> list[Column]:
    """The Parquet columns of a cohort file with CSV header ``columns``: ``amplitude_id`` as a
    64-bit integer, ``user_id`` and every property as text (null where empty)."""
    return [
        Column("amplitude_id", "int64", nullable=False),
        Column("user_id", "string"),
        *(Column(name, "string") for name in columns[2:]),
    ]


class _MemberReader:
    """Turns pieces of whole CSV records into members; the header row names the columns."""

    def __init__(self, path: str) -> None:
        self._path = path
        self.columns: tuple[str, ...] | None = None

    def feed(self, whole: bytes) -> Iterator[CohortMember]:
        for row in _rows(whole, self._path):
            if self.columns is None:
                self.columns = _columns(row, self._path)
            elif row:
                yield _member(row, self.columns[2:], self._path)

    def finish(self) -> tuple[str, ...]:
        """The file's columns; ResponseValidationError if it had no header row."""
        if self.columns is None:
            raise ResponseValidationError(
                "the cohort file is empty (no header row)", path=self._path
            )
        return self.columns


class _ParquetMembers:
    """Writes the records of a cohort file, in pieces of whole records, to Parquet."""

    def __init__(self, target: Path, path: str) -> None:
        self._target = target
        self._reader = _MemberReader(path)
        self._writer: ParquetWriter | None = None
        self._properties: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...] | None:
        """The file's columns, once its header row has been read."""
        return self._reader.columns

    def feed(self, whole: bytes) -> None:
        for member in self._reader.feed(whole):
            writer = self._open()
            values = [member.properties.get(name) or None for name in self._properties]
            writer.write((member.amplitude_id, member.user_id, *values))
        if self._reader.columns is not None:
            self._open()  # a header without members is still a file, with its schema

    def _open(self) -> ParquetWriter:
        if self._writer is None:
            columns = self._reader.finish()
            self._properties = columns[2:]
            self._writer = ParquetWriter(self._target, member_columns(columns))
        return self._writer

    def close(self) -> tuple[int, int]:
        """Finish the file: ``(members, bytes written)``."""
        self._reader.finish()
        members = self._open().close()
        return members, self._target.stat().st_size

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
