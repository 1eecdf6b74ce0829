"""Model families: the three shapes of scoring the planner knows (how a pair fits the window) and the
kind of raw score the engine returns. Each model format (engine.formats) belongs to one."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FAMILIES", "QWEN3_PRESETS", "ModelFamily"]


@dataclass(frozen=True)
class ModelFamily:
    """name: bi-encoder | cross-encoder | llm-reranker (how the planner fits a pair into the window).
    score_kind: 'cosine' (raw in [-1, 1]) or 'logit' (the engine's raw classifier logit, asked for with
    `use_activation: false`; relevance = sigmoid of it). runner: value for `--runner`."""

    name: str
    score_kind: str
    runner: str | None


BI_ENCODER = ModelFamily("bi-encoder", "cosine", "pooling")
CROSS_ENCODER = ModelFamily("cross-encoder", "logit", "pooling")
LLM_RERANKER = ModelFamily("llm-reranker", "logit", "pooling")
FAMILIES = {f.name: f for f in (BI_ENCODER, CROSS_ENCODER, LLM_RERANKER)}

QWEN3_PRESETS = {size: f"Qwen/Qwen3-Reranker-{size}" for size in ("0.6B", "4B", "8B")}
