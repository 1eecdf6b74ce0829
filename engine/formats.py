"""Model formats as data: how a reranker checkpoint is recognised, served by vLLM, and scored.

Each `ModelFormat` declares what the engine needs (family/runner, `--hf-overrides`, a template
of ours), the prompt the gateway builds for it when the official implementation tokenises the
prompt's segments separately (which no text template reproduces), whether it takes an
instruction, and its default window. `detect_format` picks one from the checkpoint's
`config.json` (a local path, a Hugging Face cache snapshot, or a hub id already in the cache)
and, where no config can be read, from the name. Formats vLLM cannot serve exactly are
refusals: `detect_format` returns them and the service refuses to start, in one line.

Every classifier format returns the raw logit from the engine (`use_activation: false`); the
gateway maps it with sigmoid (core.ranking), so a checkpoint whose config asks for another
activation (ms-marco cross-encoders ask for Identity) still gets sigmoid(logit).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.families import BI_ENCODER, CROSS_ENCODER, LLM_RERANKER, ModelFamily

__all__ = [
    "FORMATS",
    "FormatRefusal",
    "ModelFormat",
    "ModelInfo",
    "detect_format",
    "hub_id_of",
    "read_model_config",
]

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
_LLM_DEFAULT_LEN = 8192  # LLM rerankers' configs allow 32k-40k: far more KV cache than reranking needs


class FormatRefusal(ValueError):
    """The model cannot be served exactly; the message names the model, why, and what to do."""


@dataclass(frozen=True)
class ModelFormat:
    name: str
    family: ModelFamily
    detection: str  # how it is recognised (for --help and the README)
    formula: str  # what relevance_score and raw_score are
    hf_overrides: dict[str, Any] | None = None
    template: str | None = None  # file under engine/templates/, rendered by vLLM for /score on texts
    prompt: str | None = None  # the gateway's prompt builder (engine.tokenizer.PROMPTS), token ids to /classify
    ids_only: bool = False  # the official prompt is tokenised in segments: only the gateway's ids are exact
    instruction: bool = False
    default_max_len: int | None = None  # capped by the model's window; None: the window
    example: str = ""

    @property
    def template_path(self) -> str | None:
        return str(TEMPLATE_DIR / self.template) if self.template else None

    @property
    def runner(self) -> str | None:
        return self.family.runner


def _f(*formats: ModelFormat) -> dict[str, ModelFormat]:
    return {f.name: f for f in formats}


FORMATS: dict[str, ModelFormat] = _f(
    ModelFormat(
        "bi-encoder",
        BI_ENCODER,
        "an embedding model (sentence-transformers, *Model architectures)",
        "(cosine + 1) / 2; raw_score = the cosine",
        example="sentence-transformers/all-MiniLM-L6-v2",
    ),
    ModelFormat(
        "cross-encoder",
        CROSS_ENCODER,
        "*ForSequenceClassification of an encoder (BERT, MiniLM, XLM-R, ModernBERT, ...) with one label",
        "sigmoid(logit), whatever activation the config asks for; raw_score = the logit",
        example="cross-encoder/ms-marco-MiniLM-L6-v2, BAAI/bge-reranker-v2-m3",
    ),
    ModelFormat(
        "qwen3-reranker",
        LLM_RERANKER,
        "Qwen3ForCausalLM whose name says reranker (Qwen/Qwen3-Reranker-*)",
        'P("yes") = sigmoid(logit("yes") - logit("no")) at the last position; raw_score = that difference',
        hf_overrides={
            "architectures": ["Qwen3ForSequenceClassification"],
            "classifier_from_token": ["no", "yes"],
            "is_original_qwen3_reranker": True,
        },
        template="qwen3_reranker.jinja",
        prompt="qwen3-reranker",
        instruction=True,
        default_max_len=_LLM_DEFAULT_LEN,
        example="Qwen/Qwen3-Reranker-0.6B",
    ),
    ModelFormat(
        "qwen3-reranker-seq-cls",
        LLM_RERANKER,
        "Qwen3ForSequenceClassification (a -seq-cls conversion of Qwen3-Reranker)",
        'as qwen3-reranker (the conversion\'s one label is logit("yes") - logit("no"))',
        template="qwen3_reranker.jinja",
        prompt="qwen3-reranker",
        instruction=True,
        default_max_len=_LLM_DEFAULT_LEN,
        example="tomaarsen/Qwen3-Reranker-0.6B-seq-cls",
    ),
    ModelFormat(
        "bge-reranker-gemma",
        LLM_RERANKER,
        "GemmaForCausalLM whose name says bge-reranker (BAAI/bge-reranker-v2-gemma)",
        'sigmoid(logit("Yes")) at the last position of FlagEmbedding\'s prompt; raw_score = logit("Yes")',
        hf_overrides={
            "architectures": ["GemmaForSequenceClassification"],
            "classifier_from_token": ["Yes"],
            "method": "no_post_processing",
        },
        prompt="bge-reranker-gemma",
        ids_only=True,
        instruction=True,
        default_max_len=1024,
        example="BAAI/bge-reranker-v2-gemma",
    ),
    ModelFormat(
        "mxbai-rerank-v2",
        LLM_RERANKER,
        "Qwen2ForCausalLM whose name says mxbai-rerank (mixedbread-ai/mxbai-rerank-*-v2)",
        "sigmoid(s - m/2), s = logit('1') - logit('0') at the last position of its chat prompt, m = 9 (base) "
        "or 12 (large): mxbai's own normalisation; raw_score = s",
        hf_overrides={
            "architectures": ["Qwen2ForSequenceClassification"],
            "classifier_from_token": ["0", "1"],
            "method": "from_2_way_softmax",
        },
        prompt="mxbai-rerank-v2",
        ids_only=True,
        instruction=True,
        default_max_len=_LLM_DEFAULT_LEN + 512,  # its 8192 query + document tokens, plus the chat template
        example="mixedbread-ai/mxbai-rerank-base-v2",
    ),
)

_REFUSALS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"jina-reranker-v3|JinaForRanking", re.IGNORECASE),
        "it is a listwise reranker (all documents in one prompt), which vLLM's pairwise scoring cannot reproduce",
    ),
    (
        re.compile(r"layerwise|LayerWiseMiniCPM", re.IGNORECASE),
        "it is a layerwise reranker (scores from chosen hidden layers), which vLLM cannot serve",
    ),
    (
        re.compile(r"colbert", re.IGNORECASE),
        "it is a late-interaction (ColBERT) model; MaxSim scoring is not verified exact here yet",
    ),
]

_WINDOW_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "max_sequence_length")


@dataclass(frozen=True)
class ModelInfo:
    """What detection found: the format, the model's own window (None: unknown), the hub id
    (None for a plain local path), and the config it read (None: judged by name)."""

    format: ModelFormat
    window: int | None
    hub_id: str | None
    config: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    logit_offset: float = 0.0  # relevance = sigmoid(raw - logit_offset)

    @property
    def default_max_len(self) -> int | None:
        """The window to run with unless --max-model-len says otherwise: never above the model's."""
        want = self.format.default_max_len
        if want is None:
            return None  # vLLM derives it from the config
        return min(want, self.window) if self.window else want


_CACHE_PATH = re.compile(r"models--([^/]+)--([^/]+)/snapshots/[^/]+/?$")


def hub_id_of(model: str) -> str | None:
    """The hub id of `model`: itself when it looks like ORG/NAME and is not a local path; ORG/NAME
    for a Hugging Face cache snapshot path (models--ORG--NAME/snapshots/<hash>); else None."""
    m = _CACHE_PATH.search(model.rstrip("/") + "/")
    if m:
        return f"{m.group(1)}/{m.group(2)}"
    if not os.path.exists(model) and re.fullmatch(r"[\w.-]+/[\w.-]+", model):
        return model
    return None


def _cached_file(repo_id: str, filename: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - vLLM depends on it
        return None
    found = try_to_load_from_cache(repo_id, filename)
    return Path(found) if isinstance(found, str) else None


def read_model_config(model: str) -> dict[str, Any] | None:
    """config.json of a local path, or of a hub id already in the Hugging Face cache; None otherwise."""
    local = Path(model) / "config.json"
    path = local if local.is_file() else None
    if path is None and hub_id_of(model) and not Path(model).exists():
        path = _cached_file(model, "config.json")
    if path is None:
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _window(cfg: dict[str, Any] | None) -> int | None:
    if not cfg:
        return None
    text = cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else cfg
    for key in _WINDOW_KEYS:
        value = text.get(key) if isinstance(text, dict) else None
        if isinstance(value, int) and value > 0:
            return value
    return None


def _refuse(model: str, reason: str) -> FormatRefusal:
    names = ", ".join(FORMATS)
    return FormatRefusal(
        f"model {model!r} cannot be served: {reason}. If it is one of the known formats, say which with "
        f"--model-format ({names})"
    )


def _by_name(model: str, ident: str) -> ModelFormat:
    """Judge a model whose config cannot be read (a hub id not in the cache) by its name."""
    lowered = ident.lower()
    if "qwen3-reranker" in lowered:
        return FORMATS["qwen3-reranker-seq-cls" if "seq-cls" in lowered else "qwen3-reranker"]
    if "bge-reranker-v2-gemma" in lowered:
        return FORMATS["bge-reranker-gemma"]
    if "mxbai-rerank" in lowered and "v2" in lowered:
        return FORMATS["mxbai-rerank-v2"]
    if "rerank" in lowered or "cross-encoder" in lowered:
        return FORMATS["cross-encoder"]
    return FORMATS["bi-encoder"]


def _by_config(model: str, ident: str, cfg: dict[str, Any]) -> ModelFormat:
    lowered = ident.lower()
    archs = [str(a) for a in cfg.get("architectures") or [] if isinstance(a, str)]
    model_type = str(cfg.get("model_type", ""))
    causal = any(a.endswith("ForCausalLM") for a in archs)
    seq_cls = any(a.endswith("ForSequenceClassification") for a in archs)
    if causal:
        if model_type.startswith("qwen3") and "rerank" in lowered:
            return FORMATS["qwen3-reranker"]
        if model_type.startswith("gemma") and "bge-reranker" in lowered:
            return FORMATS["bge-reranker-gemma"]
        if model_type.startswith("qwen2") and "mxbai-rerank" in lowered:
            return FORMATS["mxbai-rerank-v2"]
        raise _refuse(
            model,
            f"it is a causal LM ({', '.join(archs)}) of no known reranker format, so there is no prompt or "
            "answer token to score with",
        )
    if seq_cls:
        labels = cfg.get("num_labels") or len(cfg.get("id2label") or {}) or 1
        if isinstance(labels, int) and labels > 1:
            raise _refuse(
                model,
                f"it is a classifier with {labels} labels; a reranker has one relevance logit, and which label "
                "means relevant is not known",
            )
        if model_type.startswith("qwen3"):
            return FORMATS["qwen3-reranker-seq-cls"]
        if model_type.startswith(("qwen", "llama", "gemma", "mistral")):
            raise _refuse(
                model,
                f"it is an LLM classifier ({', '.join(archs)}) whose prompt format is not known",
            )
        return FORMATS["cross-encoder"]
    return FORMATS["bi-encoder"]


def detect_format(model: str, *, override: str | None = None) -> ModelInfo:
    """The format of `model` (a local path, an HF-cache snapshot path, or a hub id).

    Raises: FormatRefusal for a model that cannot be served exactly, or an unknown override."""
    cfg = read_model_config(model)
    hub = hub_id_of(model)
    ident = " ".join([model, hub or "", " ".join(str(a) for a in (cfg or {}).get("architectures") or [])])
    if override is not None:
        fmt = FORMATS.get(override)
        if fmt is None:
            raise FormatRefusal(f"--model-format {override!r}: unknown; known formats: {', '.join(FORMATS)}")
        return ModelInfo(fmt, _window(cfg), hub, cfg, _logit_offset(fmt, ident))
    for pattern, reason in _REFUSALS:
        if pattern.search(ident):
            raise _refuse(model, reason)
    fmt = _by_config(model, ident, cfg) if cfg is not None else _by_name(model, ident)
    return ModelInfo(fmt, _window(cfg), hub, cfg, _logit_offset(fmt, ident))


def _logit_offset(fmt: ModelFormat, ident: str) -> float:
    """mxbai-rerank's own normalisation: sigmoid(score - estimated_max / 2), with estimated_max 9 for
    the base model and 12 for the large one and any other (mxbai_rerank/utils.py sigmoid_normalize)."""
    if fmt.name != "mxbai-rerank-v2":
        return 0.0
    return 4.5 if "mxbai-rerank-base-v2" in ident.lower() else 6.0
