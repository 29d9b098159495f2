"""``amplitude-async query``: run one query and print its result."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any, TextIO

from ..backfill.job import MAX_EMULATOR_DAYS
from ..queries import DatedQuery, Query
from ..results import Tabular
from .common import (
    EMULATOR_DEFAULTS,
    EPILOG,
    EXIT_BAD_INPUT,
    EXIT_OK,
    QUERY_HELP,
    Connection,
    Fail,
    cache_url,
    check_emulator_flags,
    client_for,
    emulated,
    real_connection,
)


def add_parser(commands: Any, connection: argparse.ArgumentParser) -> None:
    """Add the ``query`` command to ``commands``."""
    query = commands.add_parser(
        "query",
        parents=[connection],
        help="run one query and print its result",
        description=f"Run one query and print its result. {QUERY_HELP}",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    query_source(query)
    query.add_argument("--format", choices=("table", "json"), default="table")
    query.add_argument(
        "--split", action="store_true", help="split a query too costly for one window by date"
    )


def query_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("endpoint", nargs="?", help="endpoint name, e.g. event_segmentation")
    parser.add_argument("--json", dest="json_fields", help="the query's fields as a JSON object")
    parser.add_argument(
        "--file", type=Path, help="a TOML file with the query's fields (and 'endpoint')"
    )


def _field_pairs(extra: Sequence[str]) -> dict[str, object]:
    """``--name value`` pairs (``--name=value`` too) into a table; repeats make lists."""
    table: dict[str, object] = {}
    items = list(extra)
    i = 0
    while i < len(items):
        item = items[i]
        if not item.startswith("--") or len(item) < 3:
            raise Fail(EXIT_BAD_INPUT, f"unexpected argument {item!r}: fields are --name value")
        name, sep, value = item[2:].partition("=")
        if not sep:
            if i + 1 >= len(items):
                raise Fail(EXIT_BAD_INPUT, f"--{name} needs a value")
            value = items[i + 1]
            i += 1
        i += 1
        key = name.replace("-", "_")
        if key in table:
            previous = table[key]
            table[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            table[key] = value
    return table


def query_from(args: argparse.Namespace, extra: Sequence[str]) -> Query[Any]:
    from ..backfill.job import build_query, parse_json, parse_toml

    table: dict[str, object] = {}
    endpoint = args.endpoint
    if args.file is not None:
        try:
            text = args.file.read_text(encoding="utf-8")
        except OSError as exc:
            raise Fail(EXIT_BAD_INPUT, f"cannot read {args.file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise Fail(EXIT_BAD_INPUT, f"{args.file} is not a text file (not UTF-8)") from None
        loaded = parse_toml(text, str(args.file), "--file")
        file_endpoint = loaded.pop("endpoint", None)
        endpoint = endpoint or file_endpoint
        table.update(loaded)
    if args.json_fields is not None:
        fields = parse_json(args.json_fields, "--json")
        if not isinstance(fields, dict):
            raise Fail(EXIT_BAD_INPUT, "--json must be a JSON object of query fields")
        endpoint = endpoint or fields.pop("endpoint", None)
        table.update(fields)
    table.update(_field_pairs(extra))
    if not endpoint:
        raise Fail(EXIT_BAD_INPUT, "name an endpoint, e.g. 'query event_segmentation ...'")
    return build_query(str(endpoint), table)


def _print_table(result: Tabular, query: Query[Any], out: TextIO) -> None:
    # The same rows as everywhere else; the metric column only when some row has one.
    rows = result.rows(query)
    with_metric = any(r.metric for r in rows)
    header = ("label", "x", "metric", "value") if with_metric else ("label", "x", "value")
    cells = [
        header,
        *(
            (r.label, r.x_value, r.metric, _number(r.value))
            if with_metric
            else (r.label, r.x_value, _number(r.value))
            for r in rows
        ),
    ]
    widths = [max(len(str(row[k])) for row in cells) for k in range(len(header))]
    for row in cells:
        text = "  ".join(f"{cell!s:<{w}}" for cell, w in zip(row[:-1], widths, strict=False))
        print(f"{text}  {row[-1]!s:>{widths[-1]}}", file=out)


def _number(value: float | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.6g}"
    return str(int(value)) if isinstance(value, float) else str(value)


async def _run_query(args: argparse.Namespace, query: Query[Any], out: TextIO, err: TextIO) -> int:
    from ..chunks import run_split
    from ..converter import unstructure_result

    cache = cache_url(args)

    async def go(target: Connection) -> Any:
        async with client_for(target, cache, args.budget_url or None) as client:
            if args.split:
                result = await run_split(client, query)
            else:
                result = await client.run(query)
            if cache:
                print(client.statistics().savings.line(), file=err)
            return result

    if args.emulator:
        check_emulator_flags(args)
        start, end = (query.start, query.end) if isinstance(query, DatedQuery) else (None, None)
        first = start or date(2026, 9, 1)
        days = max(EMULATOR_DEFAULTS["days"], ((end or first) - first).days + 1)
        if days > MAX_EMULATOR_DAYS:
            raise Fail(
                EXIT_BAD_INPUT,
                f"the emulator serves at most {MAX_EMULATOR_DAYS} days; the query spans {days}",
            )
        async with emulated(EMULATOR_DEFAULTS["seed"], 500, first, days, 0.01) as target:
            result = await go(target)
    else:
        result = await go(real_connection(args))
    if args.format == "json":
        print(json.dumps(unstructure_result(result), indent=2, default=str), file=out)
    else:
        _print_table(result, query, out)
    return EXIT_OK


def run(args: argparse.Namespace, extra: Sequence[str], out: TextIO, err: TextIO) -> int:
    """Run the ``query`` command."""
    query = query_from(args, extra)
    return asyncio.run(_run_query(args, query, out, err))
