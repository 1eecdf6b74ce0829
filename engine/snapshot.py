"""What every process knows about one engine: a frozen, typed snapshot, and the state file that carries it.

The supervising process (start_service) writes a `StateFile` after every change of any engine;
gateway workers read it (`engine.registry`). Managed engines (`EngineSupervisor`) and external
ones (`ExternalEngine`) write the same `EngineSnapshot`, and both are driven through the one
`EngineHandle` protocol. Nothing here has a default that could change a score: a snapshot
without its family, score kind or window does not validate.
"""

from __future__ import annotations

import enum
import os
import tempfile
import time
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.errors import EngineStartError
from engine.families import FAMILIES, ModelFamily
from engine.formats import FORMATS, ModelFormat

__all__ = ["EngineArgs", "EngineHandle", "EngineSnapshot", "EngineState", "ModelWindow", "StateFile", "publish_state"]


class EngineState(enum.StrEnum):
    """STARTING → READY → (crash) RESTARTING → READY …; FAILED (first start failed, or too many
    crashes); UNREACHABLE (an external engine that stopped answering); STOPPED (after stop())."""

    STARTING = "starting"
    READY = "ready"
    RESTARTING = "restarting"
    UNREACHABLE = "unreachable"
    FAILED = "failed"
    STOPPED = "stopped"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EngineArgs(_Frozen):
    """The values the engine runs with (pass-through flags included), not the ones requested.
    None: not set, vLLM's own default applies (or, for max_model_len, not known yet)."""

    max_model_len: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    gpu_memory_utilization: float | None = None
    tensor_parallel_size: int = 1
    dtype: str | None = None
    kv_cache_memory_bytes: int | None = None  # an explicit KV budget (engines sharing a card), else profiled
    api_server_count: int | None = None  # vLLM API server processes per engine (None: 1)


class ModelWindow(_Frozen):
    """What the request planner needs to know of the model behind an engine."""

    family: ModelFamily
    max_model_len: int | None
    prompt_format: str | None


class EngineSnapshot(_Frozen):
    name: str
    url: str
    managed: bool
    state: EngineState
    model: str
    served_model_name: str
    family: ModelFamily
    format: str
    prompt_format: str | None
    logit_offset: float
    args: EngineArgs
    pid: int | None = None
    restarts: int = Field(default=0, ge=0)
    last_error: str | None = None
    ready_since: float | None = None
    start_seconds: float | None = None  # how long its last start took: the wait a restart will cost

    @model_validator(mode="after")
    def _known_family(self) -> EngineSnapshot:
        if FAMILIES.get(self.family.name) != self.family:
            raise ValueError(f"unknown model family {self.family!r}")
        fmt = FORMATS.get(self.format)
        if fmt is None or fmt.family != self.family:
            raise ValueError(f"format {self.format!r} is not a known format of the {self.family.name} family")
        return self

    @property
    def model_format(self) -> ModelFormat:
        return FORMATS[self.format]

    @property
    def ready(self) -> bool:
        return self.state is EngineState.READY

    @property
    def score_kind(self) -> str:
        return self.family.score_kind

    @property
    def max_model_len(self) -> int | None:
        return self.args.max_model_len

    @property
    def window(self) -> ModelWindow:
        return ModelWindow(family=self.family, max_model_len=self.args.max_model_len, prompt_format=self.prompt_format)


class StateFile(_Frozen):
    updated: float
    engines: tuple[EngineSnapshot, ...]


def publish_state(path: Path, engines: list[EngineSnapshot]) -> None:
    """Atomically replace the state file (write to a temp file, then rename)."""
    payload = StateFile(updated=time.time(), engines=tuple(engines)).model_dump_json()
    fd, tmp = tempfile.mkstemp(prefix=".state-", dir=str(path.parent))
    with os.fdopen(fd, "w") as f:
        f.write(payload)
    os.replace(tmp, path)


class EngineHandle(Protocol):
    """One engine as the service drives it, managed (a vLLM child) or external (a URL)."""

    @property
    def name(self) -> str: ...

    @property
    def start_error(self) -> EngineStartError | None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def wait_first_start(self, timeout: float | None = None) -> bool: ...

    def snapshot(self) -> EngineSnapshot: ...
