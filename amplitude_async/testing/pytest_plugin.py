"""pytest fixtures for testing code that talks to Amplitude, against the built-in emulator.

Opt-in: a test suite activates it with one line in its top-level ``conftest.py``::

    pytest_plugins = ["amplitude_async.testing.pytest_plugin"]

Nothing is loaded into test runs that do not ask for it. Async fixtures need pytest-asyncio.

- ``amplitude_emulator``: a running :class:`~amplitude_async.testing.emulator.Emulator` over a
  small :class:`~amplitude_async.testing.dataset.SyntheticDataset` (200 users, 14 days from
  2026-09-01, seed 0), with Amplitude's limits at a fast clock (``Limits().scaled(0.001)``: the
  1000-cost window lasts 0.3 s).
- ``amplitude_client``: an :class:`~amplitude_async.client.AmplitudeClient` pointed at it, with
  the same limits.

Per test, change the options with the marker (any :data:`OPTIONS` key)::

    @pytest.mark.amplitude_emulator(users=500, days=30, faults=Faults(error_rate=0.1))
    async def test_dashboard(amplitude_client): ...

For a whole directory, override the ``amplitude_emulator_options`` fixture in a
``conftest.py`` (return a dict; the marker still wins)::

    @pytest.fixture
    def amplitude_emulator_options():
        return {"users": 1000, "limits": Limits()}

Options: ``seed``, ``users``, ``days``, ``start``, ``tz`` (the synthetic dataset, cached across
tests) or ``dataset`` (any :class:`Dataset`, which replaces them); ``limits``, ``reading``,
``now``, ``faults``, ``arrival_delay``, ``processing_time``, ``forbidden``, ``api_key``,
``secret_key`` (passed to the emulator); ``client_timeout`` (seconds, for the client).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import date
from typing import Any, Final

import pytest

from ..client import AmplitudeClient
from ..limits import Limits
from .dataset import Dataset, SyntheticDataset
from .emulator import Emulator

__all__ = [
    "DEFAULT_OPTIONS",
    "OPTIONS",
    "amplitude_client",
    "amplitude_emulator",
    "amplitude_emulator_options",
    "pytest_configure",
]

TEST_LIMITS: Final = Limits().scaled(0.001)
"""Amplitude's limits with every duration divided by 1000."""

DEFAULT_OPTIONS: Final[Mapping[str, Any]] = {
    "seed": 0,
    "users": 200,
    "days": 14,
    "start": date(2026, 9, 1),
    "tz": None,
    "limits": TEST_LIMITS,
}
"""What the fixtures use unless told otherwise."""

_DATASET_OPTIONS: Final = frozenset({"seed", "users", "days", "start", "tz", "dataset"})
_EMULATOR_OPTIONS: Final = frozenset(
    {
        "limits",
        "reading",
        "now",
        "faults",
        "arrival_delay",
        "processing_time",
        "forbidden",
        "api_key",
        "secret_key",
    }
)
OPTIONS: Final = _DATASET_OPTIONS | _EMULATOR_OPTIONS | {"client_timeout"}
"""Every option the marker and ``amplitude_emulator_options`` accept."""

_MARKER: Final = "amplitude_emulator"

_async_fixture: Callable[..., Any]
try:
    from pytest_asyncio import fixture as _async_fixture
except ImportError:  # pragma: no cover - without pytest-asyncio, e.g. anyio's plugin may run them
    _async_fixture = pytest.fixture


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker so ``--strict-markers`` accepts it."""
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(**options): options of the amplitude_emulator fixture "
        f"(users=, days=, seed=, limits=, faults=, ...; see amplitude_async.testing.pytest_plugin)",
    )


@functools.lru_cache(maxsize=8)
def _synthetic(seed: int, users: int, days: int, start: date, tz: str | None) -> SyntheticDataset:
    # Datasets are immutable once built, so tests with the same options can share one.
    return SyntheticDataset(seed=seed, users=users, days=days, start=start, tz=tz)


def _options(request: pytest.FixtureRequest, base: Mapping[str, Any]) -> dict[str, Any]:
    options = {**DEFAULT_OPTIONS, **base}
    # Closest marker last: a test's own marker beats its class's or module's.
    for marker in reversed(list(request.node.iter_markers(_MARKER))):
        if marker.args:
            raise pytest.UsageError(f"@pytest.mark.{_MARKER} takes keyword options only")
        options.update(marker.kwargs)
    unknown = sorted(set(options) - OPTIONS)
    if unknown:
        raise pytest.UsageError(
            f"unknown {_MARKER} option(s) {unknown}; expected some of {sorted(OPTIONS)}"
        )
    return options


def _dataset(options: Mapping[str, Any]) -> Dataset:
    dataset = options.get("dataset")
    if dataset is not None:
        if not isinstance(dataset, Dataset):
            raise pytest.UsageError(f"{_MARKER} option 'dataset' must be a Dataset")
        return dataset
    return _synthetic(
        options["seed"], options["users"], options["days"], options["start"], options["tz"]
    )


@pytest.fixture
def amplitude_emulator_options() -> dict[str, Any]:
    """Options for ``amplitude_emulator`` (override in a conftest.py; markers still apply)."""
    return {}


@_async_fixture
async def amplitude_emulator(
    request: pytest.FixtureRequest, amplitude_emulator_options: dict[str, Any]
) -> AsyncIterator[Emulator]:
    """A running emulator over a small synthetic project, with fast-clock limits."""
    options = _options(request, amplitude_emulator_options)
    kwargs = {name: options[name] for name in _EMULATOR_OPTIONS if name in options}
    async with Emulator(_dataset(options), **kwargs) as emulator:
        yield emulator


@_async_fixture
async def amplitude_client(
    request: pytest.FixtureRequest,
    amplitude_emulator: Emulator,
    amplitude_emulator_options: dict[str, Any],
) -> AsyncIterator[AmplitudeClient]:
    """An AmplitudeClient for ``amplitude_emulator``, sharing its limits."""
    options = _options(request, amplitude_emulator_options)
    extra: dict[str, Any] = {}
    if options.get("client_timeout") is not None:
        extra["timeout"] = options["client_timeout"]
    async with AmplitudeClient(
        amplitude_emulator.api_key,
        amplitude_emulator.secret_key,
        base_url=amplitude_emulator.url,
        limits=amplitude_emulator.limits,
        **extra,
    ) as client:
        yield client
