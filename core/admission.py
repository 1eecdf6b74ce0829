"""Backpressure: a bound on (query, document) pairs in flight in this worker; past it, 429 at once."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

__all__ = ["Admission", "OverloadedError"]


class OverloadedError(Exception):
    """The service is at its in-flight limit; the client should retry after `retry_after` seconds."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class Admission:
    """`on_change(delta)` is told every change of the in-flight count (the metrics gauge)."""

    def __init__(self, limit_pairs: int, *, on_change: Callable[[int], None] | None = None) -> None:
        self.limit = limit_pairs
        self.inflight = 0
        self._on_change = on_change or (lambda delta: None)

    @contextlib.contextmanager
    def admit(self, pairs: int) -> Iterator[None]:
        """Raises: OverloadedError when admitting `pairs` would pass the limit. A request larger than
        the whole limit is still admitted when nothing else is in flight (it could never run otherwise)."""
        if self.inflight and self.inflight + pairs > self.limit:
            raise OverloadedError(f"too many pairs in flight ({self.inflight} + {pairs} > {self.limit}); retry shortly")
        self.inflight += pairs
        self._on_change(pairs)
        try:
            yield
        finally:
            self.inflight -= pairs
            self._on_change(-pairs)
