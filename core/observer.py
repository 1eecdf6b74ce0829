"""What the pipeline reports about one request to the layer above (request log, metrics).

The pipeline calls these hooks; it never imports the metrics or the HTTP layer. `NULL_OBSERVER`
ignores everything (tests, batch use).
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["NULL_OBSERVER", "NullObserver", "RequestObserver"]


class RequestObserver(Protocol):
    def model(self, name: str) -> None:
        """The request is scored by the model served as `name`."""

    def documents(self, n: int) -> None:
        """The request asked to score `n` documents."""

    def tokens(self, n: int) -> None:
        """The engine counted `n` prompt tokens for the request."""

    def cache(self, hits: int, misses: int) -> None:
        """Score-cache lookups for the request's distinct documents."""

    def engine_call(self, endpoint: str) -> None:
        """One engine call to `endpoint` ("score": texts, or "classify": token ids)."""


class NullObserver:
    def model(self, name: str) -> None:
        pass

    def documents(self, n: int) -> None:
        pass

    def tokens(self, n: int) -> None:
        pass

    def cache(self, hits: int, misses: int) -> None:
        pass

    def engine_call(self, endpoint: str) -> None:
        pass


NULL_OBSERVER: RequestObserver = NullObserver()
