"""Retry-After of "no engine is ready": the engine's last start time, or a cap given by the deployment."""

from __future__ import annotations

import pytest

from engine import EngineRegistry, EngineSnapshot, EngineUnavailableError
from tests.unit.engines import snapshot


def restarting(start_seconds: float) -> list[EngineSnapshot]:
    return [snapshot(state="restarting", start_seconds=start_seconds)]


def test_retry_after_is_the_last_start_time_by_default() -> None:
    with pytest.raises(EngineUnavailableError) as exc:
        EngineRegistry(static=restarting(140.0)).pick()
    assert exc.value.retry_after == 140.0


@pytest.mark.parametrize(("start", "expected"), [(140.0, 5.0), (3.0, 3.0)])
def test_a_cap_bounds_it(start: float, expected: float) -> None:
    with pytest.raises(EngineUnavailableError) as exc:
        EngineRegistry(static=restarting(start), max_retry_after_s=5.0).pick()
    assert exc.value.retry_after == expected
