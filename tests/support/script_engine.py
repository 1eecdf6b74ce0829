"""An EngineConfig whose "engine" is a Python script: EngineProcess's start, log and stop paths
without vLLM."""

from __future__ import annotations

import sys

from engine import FAMILIES, EngineConfig, LaunchMode

__all__ = ["script_engine"]


def script_engine(script: str) -> EngineConfig:
    """`python -c SCRIPT` launched the way an engine is (its own session, log forwarded)."""
    return EngineConfig(
        model="x",
        served_model_name="x",
        port=1,
        family=FAMILIES["bi-encoder"],
        launch=LaunchMode((sys.executable, "-c", script, "--"), False),
    )
