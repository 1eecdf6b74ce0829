"""Optional score cache: (model, query, document, scoring settings) → raw engine score, LRU-bounded.

Scores are deterministic for a given model and settings, so a hit returns exactly what the
engine would. Off by default (`--score-cache-size 0`); per worker process.
"""

from __future__ import annotations

from collections.abc import Hashable

from cachetools import LRUCache

__all__ = ["ScoreCache"]


class ScoreCache:
    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._data: LRUCache[Hashable, tuple[float, int]] = LRUCache(maxsize=max(1, max_entries))
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0

    def get(self, key: Hashable) -> tuple[float, int] | None:
        """(score, prompt tokens) or None."""
        value = self._data.get(key)
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        return value

    def put(self, key: Hashable, value: tuple[float, int]) -> None:
        if self.enabled:
            self._data[key] = value

    def __len__(self) -> int:
        return len(self._data)
