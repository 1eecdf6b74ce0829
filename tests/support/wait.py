"""Wait for a condition, never for a fixed time.

Tests assert what they waited for: `wait_until` polls a predicate until it returns something
truthy (and returns that), or fails the test after a bounded deadline with a message saying what
never happened and the last value seen. A fixed `time.sleep(...)` before an assertion is either
too short on a loaded machine (a false failure) or too long everywhere else.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["WaitTimeout", "wait_gone", "wait_until"]

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """The condition never held within the deadline (an AssertionError: the test fails)."""


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    interval: float = 0.1,
    *,
    message: str | Callable[[], str] = "",
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call `predicate` every `interval` s until it returns a truthy value; return that value.

    Exceptions of the types in `ignore` count as "not yet" (e.g. httpx.HTTPError while a server
    is not listening yet); any other exception propagates at once (e.g. an assertion that the
    process under test is still alive). After `timeout` s raise WaitTimeout with `message`
    (a string, or a callable evaluated then, e.g. a log tail) and the last result.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
        except ignore as exc:
            value, last = None, exc  # type: ignore[assignment]
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise WaitTimeout(f"condition not met within {timeout:g}s (last: {last!r}){': ' + text if text else ''}")
        time.sleep(interval)  # the polling interval: the condition is checked again right after


def wait_gone(pids: Callable[[], set[int]], timeout: float = 30.0, *, what: str = "process") -> None:
    """Wait until `pids()` (the processes that must disappear, re-evaluated each time) is empty.

    Processes killed with SIGKILL take a moment to actually exit on a loaded machine, so a
    no-orphan check at one instant can see one still dying; a leaked process never goes away
    and still fails the test after `timeout` s, naming the PIDs.
    """
    left: set[int] = set()

    def gone() -> bool:
        nonlocal left
        left = pids()
        return not left

    wait_until(gone, timeout, 0.2, message=lambda: f"{what} still alive: {sorted(left)}")
