"""Which target a backfill's rows come from: an API host and key, or the built-in emulator.

A checkpoint records its :class:`Target` and refuses a run against another one, so the rows of
one output directory always come from one place. The API key is recorded only as a one-way
hash (SHA-256 of a fixed prefix and the key): enough to tell two projects apart, useless for
getting the key back. The secret key is not recorded at all (rotating it keeps the project).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import date
from typing import Any, Final, Literal

from attrs import frozen

__all__ = ["Target", "key_fingerprint"]

_KEY_DOMAIN: Final = b"amplitude-async checkpoint target v1\x00"


def key_fingerprint(api_key: str) -> str:
    """A one-way hash of ``api_key`` (hex SHA-256 with a fixed domain prefix)."""
    return hashlib.sha256(_KEY_DOMAIN + api_key.encode("utf-8")).hexdigest()


@frozen
class Target:
    """Where a backfill's rows come from; compared as a whole, shown with :meth:`describe`.

    ``kind`` is ``"api"`` (``settings``: ``base_url`` and ``key_sha256``) or ``"emulator"``
    (``settings``: the synthetic dataset's ``seed``, ``users``, ``start`` and ``days``).
    """

    kind: Literal["api", "emulator"]
    settings: Mapping[str, Any]

    @classmethod
    def api(cls, base_url: str, api_key: str) -> Target:
        """The API at ``base_url`` with the project of ``api_key`` (kept only as a hash)."""
        return cls(
            "api", {"base_url": base_url.rstrip("/"), "key_sha256": key_fingerprint(api_key)}
        )

    @classmethod
    def emulator(cls, *, seed: int, users: int, start: date, days: int) -> Target:
        """The built-in emulator over the synthetic dataset of these settings."""
        settings = {"seed": seed, "users": users, "start": start.isoformat(), "days": days}
        return cls("emulator", settings)

    def to_json(self) -> str:
        """The target as canonical JSON (what the checkpoint stores)."""
        return json.dumps({"kind": self.kind, **self.settings}, sort_keys=True)

    def as_dict(self) -> dict[str, Any]:
        """The target as a plain table (what the manifest shows)."""
        return {"kind": self.kind, **self.settings}

    @classmethod
    def from_json(cls, text: str) -> Target:
        """Read back :meth:`to_json` (raises ``ValueError`` if it is not a target)."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("kind") not in ("api", "emulator"):
            raise ValueError(f"not a backfill target: {text[:80]!r}")
        kind = data.pop("kind")
        return cls(kind, data)

    def describe(self) -> str:
        """One line for messages, e.g. ``https://amplitude.com (API key sha256:1a2b3c4d5e6f)``."""
        s = self.settings
        if self.kind == "api":
            return f"{s.get('base_url')} (API key sha256:{str(s.get('key_sha256'))[:12]})"
        return (
            f"the built-in emulator (seed {s.get('seed')}, users {s.get('users')}, "
            f"{s.get('days')} days from {s.get('start')})"
        )
