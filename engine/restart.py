"""When a crashed engine is started again, and when it has crashed too often to try."""

from __future__ import annotations

from collections import deque

__all__ = ["RestartPolicy"]


class RestartPolicy:
    """Capped exponential backoff; more than `max_crashes` within `window_s` is fatal."""

    def __init__(self, *, base_s: float = 1.0, cap_s: float = 30.0, max_crashes: int = 5, window_s: float = 300.0):
        self.base_s, self.cap_s, self.max_crashes, self.window_s = base_s, cap_s, max_crashes, window_s
        self._crashes: deque[float] = deque()

    def record_crash(self, now: float) -> None:
        self._crashes.append(now)
        while self._crashes and now - self._crashes[0] > self.window_s:
            self._crashes.popleft()

    @property
    def exhausted(self) -> bool:
        return len(self._crashes) > self.max_crashes

    def delay(self) -> float:
        n = max(len(self._crashes) - 1, 0)
        return float(min(self.cap_s, self.base_s * 2.0**n))
