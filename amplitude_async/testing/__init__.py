"""Offline testing tools: the built-in emulator, synthetic data, virtual time and strict limits.

``Emulator`` serves the Dashboard REST API on 127.0.0.1, answering from a :class:`Dataset`
(``SyntheticDataset`` or your own export) and enforcing the same limits as Amplitude, so tests,
benchmarks and pipelines run without credentials or network.
"""

from .clock import DeadlockError, VirtualClock, run_virtual
from .dataset import Cohort, Dataset, EventRecord, SyntheticDataset
from .emulator import (
    DEFAULT_API_KEY,
    DEFAULT_SECRET_KEY,
    Emulator,
    EmulatorStatistics,
    Faults,
    RequestRecord,
    serve,
)
from .enforcer import Arrival, Enforcer, Reading
from .engine import BadParameter, ChartNotFound, EngineError, Unsupported, answer

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_SECRET_KEY",
    "Arrival",
    "BadParameter",
    "ChartNotFound",
    "Cohort",
    "Dataset",
    "DeadlockError",
    "Emulator",
    "EmulatorStatistics",
    "EngineError",
    "Enforcer",
    "EventRecord",
    "Faults",
    "Reading",
    "RequestRecord",
    "SyntheticDataset",
    "Unsupported",
    "VirtualClock",
    "answer",
    "run_virtual",
    "serve",
]
