"""Prompts the gateway builds as token ids, for formats whose official implementation tokenises the
prompt's segments separately and concatenates the ids (which no text template reproduces).

Each builder follows its official implementation token for token, truncation included:

* bge-reranker-gemma: FlagEmbedding `BaseLLMReranker.compute_score_single_gpu`
  (FlagEmbedding/inference/reranker/decoder_only/base.py): `[bos] + ids("A: " + query)[:384]`,
  then `ids("\\n") + ids("B: " + passage)[:512]` cut `only_second` to 512 + len(sep) + len(prompt),
  then `ids("\\n") + ids(prompt)`; the score is the "Yes" logit at the last token. The request's
  instruction replaces the prompt text (FlagEmbedding's `prompt` argument).
* mxbai-rerank-v2: mixedbread-ai/mxbai-rerank `MxbaiRerankV2.prepare_inputs`
  (mxbai_rerank/mxbai_rerank_v2.py): the chat prefix, `ids("query: " + query)` (with
  "instruction: ...\\n" in front when given) cut to 3/4 of max_length, `ids("\\n") + ids("document: "
  + document)`, cut `only_second` to max_length, then `ids("\\n") + ids(task) + ids(suffix)`; the
  score is logit("1") - logit("0") at the last token.

transformers 5 fast tokenizers have no `prepare_for_model`, so its `only_second` cut is
re-implemented here (one slice, `_only_second`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["PROMPTS", "BgeGemmaPrompt", "BuiltPrompt", "MxbaiV2Prompt", "PromptBuilder"]

GEMMA_PROMPT = (
    "Given a query A and a passage B, determine whether the passage contains an answer to the query by providing "
    "a prediction of either 'Yes' or 'No'."
)
MXBAI_TASK = (
    "You are a search relevance expert who evaluates how well documents match search queries. For each "
    "query-document pair, carefully analyze the semantic relationship between them, then provide your binary "
    "relevance judgment (0 for not relevant, 1 for relevant).\nRelevance:"
)
MXBAI_PREFIX = (
    "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n"
)
MXBAI_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n"


@dataclass(frozen=True)
class BuiltPrompt:
    ids: list[int]
    truncated: bool  # the official budgets cut the query or the document


class PromptBuilder(Protocol):
    name: str

    def build(
        self, tok: Any, query: str, documents: Sequence[str], *, instruction: str | None, window: int | None
    ) -> list[BuiltPrompt]:
        """One prompt per document. `tok` is the model's Hugging Face tokenizer; `window` the most
        tokens a sequence may have (the engine's max_model_len; None: not known)."""
        ...


def _ids(tok: Any, text: str, limit: int | None = None) -> tuple[list[int], bool]:
    """ids of `text` without special tokens, cut to `limit` as `tokenizer(..., truncation=True)` does."""
    ids = list(tok(text, add_special_tokens=False)["input_ids"])
    if limit is not None and len(ids) > limit:
        side = getattr(tok, "truncation_side", "right")
        return (ids[:limit] if side == "right" else ids[len(ids) - limit :]), True
    return ids, False


def _only_second(tok: Any, first: list[int], second: list[int], max_length: int) -> tuple[list[int], bool]:
    """transformers' `prepare_for_model(first, second, truncation="only_second", max_length=...)`."""
    over = len(first) + len(second) - max_length
    if over > 0 and len(second) > over:
        side = getattr(tok, "truncation_side", "right")
        return first + (second[:-over] if side == "right" else second[over:]), True
    return first + second, False


class BgeGemmaPrompt:
    name = "bge-reranker-gemma"
    max_length = 512  # FlagEmbedding's default (query_max_length = 3/4 of it)

    def build(
        self, tok: Any, query: str, documents: Sequence[str], *, instruction: str | None, window: int | None
    ) -> list[BuiltPrompt]:
        prompt_ids, _ = _ids(tok, instruction or GEMMA_PROMPT)
        sep, _ = _ids(tok, "\n")
        max_length = self.max_length
        if window is not None:  # a window below the official budget (a smaller --max-model-len) cuts more
            max_length = min(max_length, window - 2 * (len(sep) + len(prompt_ids)) - 1)
        q, q_cut = _ids(tok, f"A: {query}", max_length * 3 // 4)
        bos = tok.bos_token_id
        head = ([bos] if bos is not None and bos != tok.pad_token_id else []) + q
        encode_max_length = max_length + len(sep) + len(prompt_ids)
        out = []
        for doc in documents:
            p, p_cut = _ids(tok, f"B: {doc}", max_length)
            ids, cut = _only_second(tok, head, sep + p, encode_max_length)
            out.append(BuiltPrompt(ids + sep + prompt_ids, q_cut or p_cut or cut))
        return out


class MxbaiV2Prompt:
    name = "mxbai-rerank-v2"
    max_length = 8192  # MxbaiRerankV2's default: query + document tokens

    def build(
        self, tok: Any, query: str, documents: Sequence[str], *, instruction: str | None, window: int | None
    ) -> list[BuiltPrompt]:
        prefix, _ = _ids(tok, MXBAI_PREFIX)
        suffix, _ = _ids(tok, MXBAI_SUFFIX)
        sep, _ = _ids(tok, "\n")
        task, _ = _ids(tok, MXBAI_TASK)
        predefined = len(prefix) + len(task) + len(suffix) + len(sep)
        # The official code reads config.max_position_embeddings here. The engine's max_model_len (never
        # above it) gives the same ids whenever it holds max_length + the template, as the default does:
        # the only_second cut to max_length binds before the document budget does.
        model_max_length = window or self.max_length + predefined
        max_length = self.max_length
        if max_length + predefined > model_max_length:
            max_length = model_max_length - predefined
        query_prompt = f"query: {query}"
        if instruction:  # no default instruction: none means no instruction line
            query_prompt = f"instruction: {instruction}\n{query_prompt}"
        q, q_cut = _ids(tok, query_prompt, max_length * 3 // 4)
        doc_maxlen = min(model_max_length - len(q) - predefined, max_length)
        out = []
        for doc in documents:
            d, d_cut = _ids(tok, f"document: {doc}", doc_maxlen)
            body, cut = _only_second(tok, q, sep + d, max_length)
            out.append(BuiltPrompt(prefix + body + sep + task + suffix, q_cut or d_cut or cut))
        return out


PROMPTS: dict[str, PromptBuilder] = {b.name: b for b in (BgeGemmaPrompt(), MxbaiV2Prompt())}
