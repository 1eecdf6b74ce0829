"""Model families: how a checkpoint is served by vLLM and what its raw score means.

The family is detected from the model's `config.json` (overridable). It decides the vLLM
flags (runner, overrides, template) and the kind of raw score the engine returns, which the
gateway maps into [0, 1].
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FAMILIES", "QWEN3_PRESETS", "QWEN3_RERANKER_OVERRIDES", "ModelFamily", "detect_family"]


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

QWEN3_RERANKER_OVERRIDES: dict[str, object] = {
    "architectures": ["Qwen3ForSequenceClassification"],
    "classifier_from_token": ["no", "yes"],
    "is_original_qwen3_reranker": True,
}
QWEN3_PRESETS = {size: f"Qwen/Qwen3-Reranker-{size}" for size in ("0.6B", "4B", "8B")}


def _read_config(model: str) -> dict[str, object] | None:
    path = Path(model) / "config.json"
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None
    return None


def detect_family(model: str) -> tuple[ModelFamily, bool]:
    """(family, needs_qwen3_overrides) for a local path or a hub id.

    Hub ids are judged by name (no network here); local paths by their config.json:
    a Qwen3 causal LM whose name says "reranker" is an original Qwen3-Reranker checkpoint;
    `*ForSequenceClassification` with one label is a cross-encoder (LLM ones get the template);
    anything else is served as an embedding model (bi-encoder).
    """
    lowered = model.lower()
    cfg = _read_config(model)
    if cfg is None:
        if "qwen3-reranker" in lowered:
            return LLM_RERANKER, "seq-cls" not in lowered
        if "rerank" in lowered or "cross-encoder" in lowered:
            return CROSS_ENCODER, False
        return BI_ENCODER, False
    listed = cfg.get("architectures")
    archs = [str(a) for a in listed] if isinstance(listed, list) else []
    model_type = str(cfg.get("model_type", ""))
    if any(a.endswith("ForCausalLM") for a in archs) and model_type.startswith("qwen3"):
        return LLM_RERANKER, True
    if any(a.endswith("ForSequenceClassification") for a in archs):
        if model_type.startswith(("qwen", "llama", "gemma", "mistral")):
            return LLM_RERANKER, False
        return CROSS_ENCODER, False
    return BI_ENCODER, False
