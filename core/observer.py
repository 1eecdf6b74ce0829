"""What the pipeline reports about one request to the layer above (request log, metrics).

The pipeline calls these hooks; it never imports the metrics or the HTTP layer. `NULL_OBSERVER`
ignores everything (tests, batch use). `span(name)` marks a stage of the request ("plan", "tokenize",
"engine_call"): the layer above times it (the timing headers) and traces it where tracing is on.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
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

    def span(self, name: str) -> AbstractContextManager[object]:
        """A stage of the request, entered and left around it (stages may nest and run concurrently)."""


_NO_SPAN = contextlib.nullcontext()  # re-entrant and reusable: one for every stage


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

    def span(self, name: str) -> AbstractContextManager[object]:
        return _NO_SPAN


NULL_OBSERVER: RequestObserver = NullObserver()
