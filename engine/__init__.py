"""engine: launch, supervise and call vLLM engine processes. Knows no API dialect."""

from engine.client import EngineClient, ScoreBatch
from engine.config import EngineConfig, LaunchMode, detect_device, detect_launch_mode
from engine.errors import (
    EngineError,
    EngineOverloadedError,
    EngineProtocolError,
    EngineRejectedError,
    EngineStartError,
    EngineTimeoutError,
    EngineUnavailableError,
)
from engine.families import QWEN3_PRESETS, QWEN3_RERANKER_OVERRIDES, ModelFamily, detect_family, FAMILIES
from engine.registry import EngineRegistry
from engine.snapshot import EngineArgs, EngineHandle, EngineSnapshot, EngineState, ModelWindow, publish_state
from engine.supervisor import EngineSupervisor, RestartPolicy

__all__ = [
    "EngineClient",
    "ScoreBatch",
    "EngineConfig",
    "LaunchMode",
    "detect_device",
    "detect_launch_mode",
    "EngineError",
    "EngineOverloadedError",
    "EngineProtocolError",
    "EngineRejectedError",
    "EngineStartError",
    "EngineTimeoutError",
    "EngineUnavailableError",
    "QWEN3_PRESETS",
    "QWEN3_RERANKER_OVERRIDES",
    "ModelFamily",
    "detect_family",
    "FAMILIES",
    "EngineRegistry",
    "EngineSnapshot", "EngineArgs", "EngineHandle", "ModelWindow",
    "publish_state",
    "EngineState",
    "EngineSupervisor",
    "RestartPolicy",
]
