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
from engine.families import FAMILIES, QWEN3_PRESETS, ModelFamily
from engine.formats import FORMATS, FormatRefusal, ModelFormat, ModelInfo, detect_format
from engine.registry import EngineRegistry
from engine.snapshot import EngineArgs, EngineHandle, EngineSnapshot, EngineState, ModelWindow, publish_state
from engine.supervisor import EngineSupervisor, RestartPolicy

__all__ = [
    "FAMILIES",
    "FORMATS",
    "QWEN3_PRESETS",
    "EngineArgs",
    "EngineClient",
    "EngineConfig",
    "EngineError",
    "EngineHandle",
    "EngineOverloadedError",
    "EngineProtocolError",
    "EngineRegistry",
    "EngineRejectedError",
    "EngineSnapshot",
    "EngineStartError",
    "EngineState",
    "EngineSupervisor",
    "EngineTimeoutError",
    "EngineUnavailableError",
    "FormatRefusal",
    "LaunchMode",
    "ModelFamily",
    "ModelFormat",
    "ModelInfo",
    "ModelWindow",
    "RestartPolicy",
    "ScoreBatch",
    "detect_device",
    "detect_format",
    "detect_launch_mode",
    "publish_state",
]
