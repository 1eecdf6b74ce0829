"""The accepted API keys: those given in the settings (`--api-key`) and an optional key file
(`--api-key-file`, one key per line, re-read when it changes: rotation without a restart).

`GatewayMiddleware` asks the store for every request that needs a key (gateway.middleware).
"""

from __future__ import annotations

import hmac
import time
from pathlib import Path

__all__ = ["KeyStore"]


class KeyStore:
    """Accepted API keys from settings and an optional file (re-read when its mtime changes)."""

    def __init__(self, keys: tuple[str, ...], path: str | None) -> None:
        self._static = tuple(k for k in keys if k)
        self._path = Path(path) if path else None
        self._mtime = -1.0
        self._file_keys: tuple[str, ...] = ()
        self._checked = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self._static) or self._path is not None

    def keys(self) -> tuple[str, ...]:
        if self._path is not None and time.monotonic() - self._checked > 1.0:
            self._checked = time.monotonic()
            try:
                mtime = self._path.stat().st_mtime
                if mtime != self._mtime:
                    lines = self._path.read_text().splitlines()
                    self._file_keys = tuple(x.strip() for x in lines if x.strip() and not x.startswith("#"))
                    self._mtime = mtime
            except OSError:
                self._file_keys = ()
        return self._static + self._file_keys

    def check(self, header: str | None) -> bool:
        """Constant-time comparison against every key (no early exit on the first match)."""
        if not header or not header.lower().startswith("bearer "):
            return False
        given = header[7:].strip().encode()
        ok = False
        for key in self.keys():
            ok |= hmac.compare_digest(given, key.encode())
        return ok
