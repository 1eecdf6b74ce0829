"""Engine snapshots for in-process tests (a scripted engine behind `EngineRegistry(static=...)`)."""

from __future__ import annotations

from typing import Any

from engine import FAMILIES, EngineArgs, EngineSnapshot


def snapshot(
    *,
    family: str = "bi-encoder",
    max_model_len: int | None = None,
    name: str = "engine0",
    url: str = "http://engine",
    state: str = "ready",
    served_model_name: str = "m",
    model: str = "/models/tiny",
    prompt_format: str | None = None,
    **fields: Any,
) -> EngineSnapshot:
    return EngineSnapshot.model_validate(
        {
            "name": name,
            "url": url,
            "managed": True,
            "state": state,
            "model": model,
            "served_model_name": served_model_name,
            "family": FAMILIES[family],
            "format": {"bi-encoder": "bi-encoder", "cross-encoder": "cross-encoder"}.get(family, "qwen3-reranker"),
            "prompt_format": prompt_format,
            "logit_offset": 0.0,
            "args": EngineArgs(max_model_len=max_model_len),
            **fields,
        }
    )
