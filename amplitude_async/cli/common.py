"""What every command shares: exit codes, one-line failures, the connection options and the
credential, URL and emulator rules behind them."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import AsyncIterator
from datetime import date
from typing import TYPE_CHECKING, Final, NoReturn
from urllib.parse import urlsplit

from attrs import frozen

from ..limits import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    from ..client import AmplitudeClient

PROG: Final = "amplitude-async"

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_BAD_INPUT: Final = 2
EXIT_AUTH: Final = 3
EXIT_PARTIAL: Final = 4
EXIT_INTERRUPTED: Final = 130
EXIT_PIPE: Final = 141

EXIT_CODES: Final = {
    EXIT_OK: "success",
    EXIT_ERROR: "any other failure (network, server, unexpected response)",
    EXIT_BAD_INPUT: (
        "bad input: arguments, query fields, job file, a query too expensive to run, "
        "a checkpoint in use, of another target or unreadable"
    ),
    EXIT_AUTH: "authentication failed (wrong keys, missing permission or wrong region)",
    EXIT_PARTIAL: "partial failure: some backfill chunks failed (run again to retry them)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); a backfill resumes when run again",
    EXIT_PIPE: "standard output was closed early (e.g. piped into head)",
}

EPILOG = (
    "exit codes:\n"
    + "\n".join(f"  {code:<4} {text}" for code, text in EXIT_CODES.items())
    + "\n\ncredentials: AMPLITUDE_API_KEY / AMPLITUDE_SECRET_KEY, or --api-key/--secret-key.\n"
    'Synthetic data only when asked: --emulator, or source = "emulator" in a job file.'
)

EMULATOR_DEFAULTS: Final = {"seed": 1, "users": 2000, "days": 90}


class Fail(Exception):
    """A failure already phrased for the user, with its exit code."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(message)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        raise Fail(EXIT_BAD_INPUT, f"{message} (see '{self.prog} --help')")


QUERY_HELP: Final = (
    "fields are the query class's, as --name value (repeat for lists; JSON for tables), "
    "e.g. --events 'Sign Up' --start 2026-09-01 --end 2026-09-30 --metric totals"
)


def connection_options() -> argparse.ArgumentParser:
    """A parent parser with the options that say where requests go."""
    connection = Parser(add_help=False)
    group = connection.add_argument_group("connection")
    group.add_argument("--api-key", help="API key (default: $AMPLITUDE_API_KEY)")
    group.add_argument("--secret-key", help="secret key (default: $AMPLITUDE_SECRET_KEY)")
    group.add_argument("--region", choices=("us", "eu"), default="us", help="data region (us)")
    group.add_argument("--base-url", help="another API host (a proxy, a running emulator)")
    group.add_argument(
        "--budget-url",
        help="share the project's budget with other processes through Redis, e.g. "
        "redis://host:6379/0 (default: $AMPLITUDE_BUDGET_URL)",
    )
    group.add_argument(
        "--cache-url",
        help="keep answers in a result cache shared by runs, redis://HOST:PORT/DB "
        "(default: $AMPLITUDE_CACHE_URL)",
    )
    group.add_argument(
        "--timezone",
        help="the project's time zone, e.g. Europe/Berlin: the result cache keeps an answer "
        "long once its days are settled in it (default: UTC; a job file's timezone)",
    )
    group.add_argument(
        "--emulator",
        action="store_true",
        help="answer from the built-in emulator in-process (synthetic data, no credentials)",
    )

    return connection


@frozen
class Connection:
    """Where requests go: a URL with keys and the limits to schedule by."""

    api_key: str
    secret_key: str
    base_url: str
    region: str
    limits: Limits
    time_scale: float = 1.0


def _keys(args: argparse.Namespace) -> tuple[str | None, str | None]:
    api_key = args.api_key or os.environ.get("AMPLITUDE_API_KEY")
    secret_key = args.secret_key or os.environ.get("AMPLITUDE_SECRET_KEY")
    return api_key, secret_key


def has_credentials(args: argparse.Namespace) -> bool:
    """Whether both keys are given (options or environment)."""
    return all(_keys(args))


def credentials(args: argparse.Namespace, *, job: bool = False) -> tuple[str, str]:
    """The API and secret keys, or a one-line error naming every way forward."""
    api_key, secret_key = _keys(args)
    if api_key and secret_key:
        return api_key, secret_key
    missing = " and ".join(
        name
        for name, value in (("AMPLITUDE_API_KEY", api_key), ("AMPLITUDE_SECRET_KEY", secret_key))
        if not value
    )
    synthetic = "pass --emulator" + (' or set source = "emulator" in the job file' if job else "")
    raise Fail(
        EXIT_BAD_INPUT,
        f"no credentials: set {missing} (or --api-key/--secret-key), "
        f"or {synthetic} for synthetic data from the built-in emulator",
    )


def base_url(args: argparse.Namespace) -> str:
    """``--base-url`` checked as an http(s) URL (before anything is sent), or the region's."""
    from ..sansio import BASE_URLS, without_userinfo

    if args.base_url is None:
        return BASE_URLS[args.region].rstrip("/")
    text: str = args.base_url
    if without_userinfo(text) != text:
        # Never echoed, stored in a checkpoint or sent: it may hold a password.
        raise Fail(
            EXIT_BAD_INPUT,
            "--base-url must not contain a user name or password (user:password@host); "
            "give the keys with --api-key/--secret-key or AMPLITUDE_API_KEY/AMPLITUDE_SECRET_KEY",
        )
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(c.isspace() or not c.isprintable() for c in text)
    ):
        raise Fail(
            EXIT_BAD_INPUT,
            f"--base-url {text!r} is not an http(s) URL (e.g. http://127.0.0.1:8787)",
        )
    return text.rstrip("/")


def check_emulator_flags(args: argparse.Namespace, why: str = "--emulator") -> None:
    if args.base_url is not None:
        raise Fail(
            EXIT_BAD_INPUT,
            f"--base-url and {why} exclude each other: the emulator runs in-process",
        )


@contextlib.asynccontextmanager
async def emulated(
    seed: int, users: int, start: date, days: int, time_scale: float
) -> AsyncIterator[Connection]:
    from ..testing.dataset import SyntheticDataset
    from ..testing.emulator import Emulator

    dataset = SyntheticDataset(seed=seed, users=users, days=days, start=start)
    limits = DEFAULT_LIMITS.scaled(time_scale)
    async with Emulator(dataset, limits=limits) as emulator:
        yield Connection(
            emulator.api_key, emulator.secret_key, emulator.url, "us", limits, time_scale
        )


def client_for(
    target: Connection,
    cache_url: str | None = None,
    budget_url: str | None = None,
    timezone: str | None = None,
) -> AmplitudeClient:
    from ..cache import CachePolicy, open_cache
    from ..client import AmplitudeClient
    from ..retry import RetryPolicy

    # A fast clock: backoffs shrink with the windows.
    policy = RetryPolicy().scaled(target.time_scale)
    return AmplitudeClient(
        target.api_key,
        target.secret_key,
        region=target.region,  # type: ignore[arg-type]
        base_url=target.base_url,
        limits=target.limits,
        retry_policy=policy,
        cache=open_cache(cache_url) if cache_url else None,
        cache_policy=CachePolicy(timezone=timezone) if timezone else None,
        budget_url=budget_url,
    )


def time_zone(args: argparse.Namespace, default: str | None = None) -> str | None:
    """``--timezone`` (else ``default``, a job file's), checked before anything is sent."""
    from ..cache import CachePolicy
    from ..errors import ConfigurationError

    name: str | None = args.timezone or default
    if args.timezone is not None:
        try:
            CachePolicy(timezone=args.timezone)
        except ConfigurationError as exc:
            raise Fail(EXIT_BAD_INPUT, f"--timezone: {exc.message}") from None
    return name


def cache_url(args: argparse.Namespace) -> str | None:
    """The result cache's URL, checked before anything is sent."""
    url: str | None = args.cache_url or os.environ.get("AMPLITUDE_CACHE_URL") or None
    if url is not None and not url.startswith(("redis://", "rediss://", "unix://", "memory://")):
        raise Fail(EXIT_BAD_INPUT, f"--cache-url: expected redis://HOST:PORT/DB, got {url!r}")
    return url


def real_connection(args: argparse.Namespace, *, job: bool = False) -> Connection:
    url = base_url(args)
    api_key, secret_key = credentials(args, job=job)
    return Connection(api_key, secret_key, url, args.region, DEFAULT_LIMITS)
