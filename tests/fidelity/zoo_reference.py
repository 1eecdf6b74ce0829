"""Plain-transformers float32 implementations of the official formulas of the zoo formats, written from
the official sources (not from the gateway's code), token for token:

* bge-reranker-v2-gemma, FlagEmbedding `BaseLLMReranker.compute_score_single_gpu`: `[bos] + ids("A: "+q)`
  (at most 3/4 of max_length=512), then `ids("\\n") + ids("B: "+p)` (at most 512), cut "only_second"
  to 512 + len(sep) + len(prompt), then `ids("\\n") + ids(prompt)`; score = logits[-1, id("Yes")];
  FlagEmbedding's normalize = sigmoid(score).
* mxbai-rerank-v2, `MxbaiRerankV2.prepare_inputs`: prefix + [ids("query: "+q) (at most 3/4 of
  max_length) + ids("\\n") + ids("document: "+d)] cut "only_second" to max_length, + ids("\\n") +
  ids(task) + ids(suffix); max_length = min(8192, max_position_embeddings - template);
  score = logit("1") - logit("0") at the last token; normalize = sigmoid(score - estimated_max/2).
* cross-encoders (sentence-transformers CrossEncoder): tokenizer(q, d, truncation="longest_first",
  max_length=model_max_length); relevance = sigmoid(logit) (what the service reports whatever the
  config's activation), raw = the logit.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from tests.fidelity.reference import Scored, sigmoid
from tests.fidelity.zoo_models import GEMMA_PROMPT, MXBAI_PREFIX, MXBAI_SUFFIX, MXBAI_TASK

__all__ = ["CrossEncoderST", "GemmaReference", "MxbaiReference"]


def _ids(tok, text: str, max_length: int | None = None) -> list[int]:  # type: ignore[no-untyped-def]
    kw = {"max_length": max_length, "truncation": True} if max_length is not None else {}
    return list(tok(text, add_special_tokens=False, **kw)["input_ids"])


def _only_second(first: list[int], second: list[int], max_length: int) -> list[int]:
    over = len(first) + len(second) - max_length
    if over > 0:
        assert len(second) > over
        second = second[:-over]
    return first + second


class CrossEncoderST:
    def __init__(self, model_dir: str | Path) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), dtype=torch.float32).eval()

    def score(self, query: str, document: str, instruction: str | None = None) -> Scored:
        enc = self.tokenizer(
            query,
            document,
            truncation="longest_first",
            max_length=self.tokenizer.model_max_length,
            return_tensors="pt",
        )
        with torch.no_grad():
            logit = self.model(**enc).logits[0, 0].item()
        return Scored(relevance=sigmoid(logit), raw=logit)

    def length(self, query: str, document: str) -> int:
        return len(self.tokenizer(query, document)["input_ids"])


class _CausalLM:
    def __init__(self, model_dir: str | Path) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.config = AutoConfig.from_pretrained(str(model_dir))
        self.model = AutoModelForCausalLM.from_pretrained(
            str(model_dir), dtype=torch.float32, attn_implementation="eager"
        ).eval()

    def last_logits(self, ids: list[int]) -> torch.Tensor:
        with torch.no_grad():
            return self.model(input_ids=torch.tensor([ids])).logits[0, -1]


class GemmaReference(_CausalLM):
    max_length = 512

    def ids(self, query: str, passage: str, prompt: str | None = None) -> list[int]:
        tok = self.tokenizer
        q = _ids(tok, f"A: {query}", self.max_length * 3 // 4)
        p = _ids(tok, f"B: {passage}", self.max_length)
        sep = _ids(tok, "\n")
        prompt_ids = _ids(tok, prompt or GEMMA_PROMPT)
        first = [tok.bos_token_id] if tok.bos_token_id is not None and tok.bos_token_id != tok.pad_token_id else []
        item = _only_second(first + q, sep + p, self.max_length + len(sep) + len(prompt_ids))
        return item + sep + prompt_ids

    def score(self, query: str, document: str, instruction: str | None = None) -> Scored:
        yes = _ids(self.tokenizer, "Yes")[0]
        logit = self.last_logits(self.ids(query, document, instruction))[yes].item()
        return Scored(relevance=sigmoid(logit), raw=logit)

    def passage_tokens(self, passage: str) -> int:
        return len(_ids(self.tokenizer, f"B: {passage}"))


class MxbaiReference(_CausalLM):
    estimated_max = 9.0  # mixedbread-ai/mxbai-rerank-base-v2

    def ids(self, query: str, document: str, instruction: str | None = None) -> list[int]:
        tok = self.tokenizer
        prefix, suffix = _ids(tok, MXBAI_PREFIX), _ids(tok, MXBAI_SUFFIX)
        sep, task = _ids(tok, "\n"), _ids(tok, MXBAI_TASK)
        predefined = len(prefix) + len(task) + len(suffix) + len(sep)
        model_max_length = self.config.max_position_embeddings
        max_length = 8192
        if max_length + predefined > model_max_length:
            max_length = model_max_length - predefined
        query_prompt = f"query: {query}"
        if instruction:
            query_prompt = "".join([f"instruction: {instruction}", "\n", query_prompt])
        q = _ids(tok, query_prompt, max_length * 3 // 4)
        doc_maxlen = min(model_max_length - len(q) - predefined, max_length)
        d = _ids(tok, f"document: {document}", doc_maxlen)
        return prefix + _only_second(q, sep + d, max_length) + sep + task + suffix

    def score(self, query: str, document: str, instruction: str | None = None) -> Scored:
        logits = self.last_logits(self.ids(query, document, instruction))
        s = (logits[_ids(self.tokenizer, "1")[0]] - logits[_ids(self.tokenizer, "0")[0]]).item()
        return Scored(relevance=1.0 / (1.0 + math.exp(-(s - self.estimated_max / 2))), raw=s)

    def document_tokens(self, document: str) -> int:
        return len(_ids(self.tokenizer, f"document: {document}"))
