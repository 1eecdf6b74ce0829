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
from engine.registry import EngineRegistry, EngineView, publish_state
from engine.supervisor import EngineState, EngineSupervisor, RestartPolicy

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
    "EngineView",
    "publish_state",
    "EngineState",
    "EngineSupervisor",
    "RestartPolicy",
]
