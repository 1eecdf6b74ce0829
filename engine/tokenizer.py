"""The model's own tokenizer (fast, loaded once per process), the prompt overhead per family, and
the LLM reranker's prompt.

Used by the gateway to size truncation and chunking exactly as the engine will count tokens, and to
send LLM-reranker prompts to the engine already tokenised (the engine's API server then skips
rendering and tokenising them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.families import ModelFamily
from engine.prompts import PROMPTS, BuiltPrompt

__all__ = [
    "QWEN3_DEFAULT_INSTRUCTION",
    "QWEN3_PREFIX",
    "QWEN3_SUFFIX",
    "ModelTokenizer",
    "load_tokenizer",
    "loaded_tokenizer",
    "qwen3_prompt",
]

log = logging.getLogger("vllm_rerank.engine")

QWEN3_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
QWEN3_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
QWEN3_DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"


def qwen3_prompt(query: str, document: str, instruction: str | None = None) -> str:
    """The prompt engine/templates/qwen3_reranker.jinja renders for one pair (a unit test holds the two
    equal). Like the template's `default(default_instruction, true)`, an empty instruction means the default."""
    return (
        QWEN3_PREFIX
        + "<Instruct>: "
        + (instruction or QWEN3_DEFAULT_INSTRUCTION)
        + "\n<Query>: "
        + query
        + "\n<Document>: "
        + document
        + QWEN3_SUFFIX
    )


class ModelTokenizer:
    def __init__(self, tok: Any, family: ModelFamily) -> None:
        self._tok = tok
        self.family = family

    @property
    def model_max_length(self) -> int | None:
        """The tokenizer's own limit (sentence-transformers truncates pairs to it), None when unset."""
        value = getattr(self._tok, "model_max_length", None)
        return int(value) if isinstance(value, int) and 0 < value < 10**7 else None

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False))

    def encode_many(self, texts: list[str]) -> list[list[int]]:
        return [list(ids) for ids in self._tok(texts, add_special_tokens=False)["input_ids"]]

    def truncate(self, text: str, max_tokens: int) -> str:
        """`text` cut to its first `max_tokens` tokens, sliced from the original string at a token
        boundary (character offsets), as vLLM's own `max_tokens_per_doc` does: no lossy
        decode round trip, and re-checked until it fits (a cut can change the tokenization)."""
        if max_tokens <= 0:
            return ""
        while text:
            enc = self._tok(text, add_special_tokens=False, return_offsets_mapping=True)
            offsets = enc["offset_mapping"]
            if len(enc["input_ids"]) <= max_tokens:
                break
            end = min(offsets[max_tokens - 1][1], offsets[max_tokens][0])
            text = text[: min(end, len(text) - 1)]
        return text

    def encode_prompts(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str | None = None,
        prompt: str = "qwen3-reranker",
        window: int | None = None,
    ) -> list[list[int]]:
        """Token ids of each (query, document) prompt of the given format.

        qwen3-reranker: exactly as vLLM's /score builds them for an LLM reranker served with our
        template: the whole rendered prompt tokenised as one string, with the tokenizer's default
        special tokens (vLLM calls `tokenizer(prompt)` after rendering). Others: the official
        implementation's segment-wise ids (engine.prompts), cut to its own budgets within `window`.

        Raises: ValueError for a family or prompt that has no such builder.
        """
        return [
            p.ids for p in self.build_prompts(query, documents, instruction=instruction, prompt=prompt, window=window)
        ]

    def build_prompts(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str | None = None,
        prompt: str = "qwen3-reranker",
        window: int | None = None,
    ) -> list[BuiltPrompt]:
        """As `encode_prompts`, with whether the official budgets cut each prompt."""
        if self.family.name != "llm-reranker":
            raise ValueError(f"no prompt format for the {self.family.name} family")
        if prompt == "qwen3-reranker":
            texts = [qwen3_prompt(query, d, instruction) for d in documents]
            return [BuiltPrompt(list(ids), False) for ids in self._tok(texts)["input_ids"]]
        builder = PROMPTS.get(prompt)
        if builder is None:
            raise ValueError(f"no prompt builder {prompt!r}")
        return builder.build(self._tok, query, documents, instruction=instruction, window=window)

    def decode(self, ids: list[int]) -> str:
        return str(self._tok.decode(ids))

    def pair_overhead(self, instruction: str | None) -> int:
        """Tokens a (query, document) pair costs beyond the query's and the document's own tokens."""
        if self.family.name == "llm-reranker":
            return len(self.encode(qwen3_prompt("", "", instruction))) + 2  # +2: merges across the joins
        if self.family.name == "cross-encoder":
            return int(self._tok.num_special_tokens_to_add(pair=True))
        return int(self._tok.num_special_tokens_to_add(pair=False))


_LOCK = threading.Lock()
_LOADED: dict[tuple[str, str], ModelTokenizer] = {}
_FAILED: dict[tuple[str, str], float] = {}
_RETRY_FAILED_AFTER_S = 60.0


def loaded_tokenizer(model: str, family: ModelFamily) -> ModelTokenizer | None:
    """The tokenizer if this process loaded it already (a dict lookup: no thread hop needed)."""
    return _LOADED.get((model, family.name))


def load_tokenizer(model: str, family: ModelFamily) -> ModelTokenizer | None:
    """The fast tokenizer of `model` (local path, or hub id already cached), or None if unavailable.

    Thread-safe: one load at a time (concurrent first imports of transformers race), and a
    failure is retried after a minute instead of being remembered forever."""
    key = (model, family.name)
    hit = _LOADED.get(key)
    if hit is not None:
        return hit
    with _LOCK:
        hit = _LOADED.get(key)
        if hit is not None:
            return hit
        if time.monotonic() - _FAILED.get(key, -1e9) < _RETRY_FAILED_AFTER_S:
            return None
        try:
            from transformers import AutoTokenizer

            local = Path(model).exists()
            tok = AutoTokenizer.from_pretrained(model, use_fast=True, local_files_only=local or None)
        except Exception as exc:
            log.warning("tokenizer_unavailable model=%s error=%s", model, exc)
            _FAILED[key] = time.monotonic()
            return None
        loaded = ModelTokenizer(tok, family)
        _LOADED[key] = loaded
        return loaded
