"""Reading an engine's output: each line's own level, whether it is start-up progress, and the stage it marks.

vLLM prefixes its lines with the level (`INFO 12-02 07:40:01 [api_server.py:123] ...`, after a
`(APIServer pid=42) ` tag when it runs several processes); the uvicorn inside it writes
`INFO:     ...`; Python warnings read `file.py:12: UserWarning: ...`; a traceback is a run of lines
with no prefix after `Traceback (most recent call last):`. `EngineLogReader` turns each line into
a `LogLine` (level, progress, stage), so the service can re-log it at its own level and keep the
loading lines visible when the rest of the engine's INFO chatter is filtered out (`--engine-log`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["ENGINE_LOG_LEVELS", "EngineLogLevel", "EngineLogReader", "LogLine", "shown"]

EngineLogLevel = Literal["debug", "info", "warning", "error"]
ENGINE_LOG_LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
_LEVELS = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARN": logging.WARNING,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}
_TAG = r"^(?:\([\w.:-]+(?: pid=\d+)?\)\s+)?"
# vLLM's own format ("INFO 12-02 07:40:01 [file.py:1] ..."), and uvicorn's ("INFO:     ...").
_PREFIXED = re.compile(_TAG + r"(DEBUG|INFO|WARN|WARNING|ERROR|CRITICAL)(?:\s+\d\d-\d\d\s|:\s)")
_TRACEBACK = re.compile(_TAG + r"Traceback \(most recent call last\):")
_PY_WARNING = re.compile(r":\d+: \w*Warning: ")
_GLOG = re.compile(r"^\[([WEF])\d{4} ")  # torch's C++ lines: "[W1202 07:40:19.64 utils.cpp:68] Warning: ..."
_GLOG_LEVELS = {"W": logging.WARNING, "E": logging.ERROR, "F": logging.CRITICAL}

# Start-up stages, in the order vLLM reaches them, each with the lines that mark it (vLLM 0.26 to 0.33).
_STAGES: list[tuple[str, re.Pattern[str]]] = [
    ("starting", re.compile(r"vLLM API server version|Starting vLLM|non-default args")),
    ("resolving model", re.compile(r"Resolved architecture|Using max model len|Initializing a V1 LLM engine")),
    ("loading weights", re.compile(r"Starting to load model|Loading weights|Loading safetensors|checkpoint shards")),
    ("loaded weights", re.compile(r"Model loading took|Loading weights took")),
    ("compiling", re.compile(r"torch\.compile|Compil(?:ing|ation)|Dynamo bytecode")),
    ("sizing cache", re.compile(r"KV cache|num_gpu_blocks|Memory profiling|profile, create kv cache")),
    ("capturing graphs", re.compile(r"Capturing CUDA graph|Graph capturing")),
    (
        "starting api server",
        re.compile(r"Starting vLLM (?:API )?server|Available routes are|Application startup complete"),
    ),
]
_STAGE_RANK = {name: i for i, (name, _) in enumerate(_STAGES)}


@dataclass(frozen=True)
class LogLine:
    """One engine output line: the level it was written at, whether it reports start-up progress,
    and the start-up stage it marks (None for most lines)."""

    text: str
    level: int
    progress: bool
    stage: str | None


def _stage_of(text: str) -> str | None:
    for name, pattern in reversed(_STAGES):  # the latest stage a line names wins
        if pattern.search(text):
            return name
    return None


class EngineLogReader:
    """Classify an engine's lines in order (a traceback's lines belong to the traceback), and
    remember the furthest start-up stage seen."""

    def __init__(self) -> None:
        self._in_traceback = False
        self.stage = "starting process"

    def read(self, text: str) -> LogLine:
        m = _PREFIXED.match(text)
        if m:
            self._in_traceback = False
            level = _LEVELS[m.group(1)]
        elif _TRACEBACK.match(text):
            self._in_traceback = True
            level = logging.ERROR
        elif self._in_traceback:
            level = logging.ERROR
        elif _PY_WARNING.search(text):
            level = logging.WARNING
        elif g := _GLOG.match(text):
            level = _GLOG_LEVELS[g.group(1)]
        else:  # tqdm bars, prints: the engine's plain output
            level = logging.INFO
        stage = _stage_of(text) if level <= logging.INFO else None
        if stage is not None and _STAGE_RANK[stage] >= _STAGE_RANK.get(self.stage, -1):
            self.stage = stage
        return LogLine(text=text, level=level, progress=stage is not None, stage=stage)


def shown(line: LogLine, threshold: EngineLogLevel) -> bool:
    """True when `line` passes `--engine-log threshold`: at or above it, or start-up progress (always)."""
    return line.level >= ENGINE_LOG_LEVELS[threshold] or line.progress
