"""The engine's exceptions: what a query cannot be answered with, and the HTTP status."""

from __future__ import annotations

from typing import ClassVar


class EngineError(Exception):
    """A query the emulator cannot answer; ``status`` is the HTTP status to reply with."""

    status: ClassVar[int] = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.message = message
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class BadParameter(EngineError):
    """The query names something the project does not have, or a malformed value."""


class Unsupported(EngineError):
    """A valid query the emulator does not compute."""


class ChartNotFound(EngineError):
    """No saved chart has the requested id."""

    status: ClassVar[int] = 404
