"""Plain-transformers float32 references of the official scoring formulas.

Qwen3-Reranker (model card / QwenLM repo): the prompt is built by hand as a string,
tokenized without special tokens, run through the causal LM, and the score is
softmax([logit("no"), logit("yes")])[yes] at the last position. Its raw score is
logit("yes") - logit("no") (sigmoid of it is the same probability).

Cross-encoder (BERT): sigmoid(classifier logit) of `tokenizer(query, document)`; raw = the logit.

Document truncation to `max_tokens` keeps the first `max_tokens` of the document's own tokens
(no special tokens) and decodes them back to text before templating; chunking splits those
token ids into consecutive runs of `size` tokens (at most `max_chunks`), decodes each with
`tokenizer.decode(ids)`, scores each chunk, and the document's score is the best chunk's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from tests.fidelity.tiny_models import DEFAULT_INSTRUCTION, QWEN3_SUFFIX, QWEN3_SYSTEM_PREFIX

__all__ = ["CrossEncoderReference", "Qwen3Reference", "Scored", "sigmoid"]


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


@dataclass(frozen=True)
class Scored:
    relevance: float
    raw: float


class _Base:
    tokenizer: object

    def doc_ids(self, document: str) -> list[int]:
        return list(self.tokenizer(document, add_special_tokens=False)["input_ids"])  # type: ignore[operator]

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids))  # type: ignore[attr-defined]

    def truncate(self, document: str, max_tokens: int | None) -> str:
        if max_tokens is None:
            return document
        ids = self.doc_ids(document)
        return document if len(ids) <= max_tokens else self.decode(ids[:max_tokens])

    def chunks(self, document: str, size: int, max_chunks: int) -> list[str]:
        ids = self.doc_ids(document)
        return [self.decode(ids[i : i + size]) for i in range(0, len(ids), size)][:max_chunks] or [""]

    def score(self, query: str, document: str, **kw: object) -> Scored:  # pragma: no cover - abstract
        raise NotImplementedError

    def score_truncated(self, query: str, document: str, max_tokens: int | None, **kw: object) -> Scored:
        return self.score(query, self.truncate(document, max_tokens), **kw)

    def score_chunked(self, query: str, document: str, size: int, max_chunks: int, **kw: object) -> Scored:
        return max(
            (self.score(query, c, **kw) for c in self.chunks(document, size, max_chunks)), key=lambda s: s.relevance
        )


class Qwen3Reference(_Base):
    def __init__(self, model_dir: str | Path) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.model = AutoModelForCausalLM.from_pretrained(
            str(model_dir), dtype=torch.float32, attn_implementation="eager"
        ).eval()
        self.yes_id = self.tokenizer.convert_tokens_to_ids("yes")
        self.no_id = self.tokenizer.convert_tokens_to_ids("no")

    @staticmethod
    def prompt(query: str, document: str, instruction: str | None = None, suffix: str = QWEN3_SUFFIX) -> str:
        instruction = DEFAULT_INSTRUCTION if instruction is None else instruction
        body = f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"
        return QWEN3_SYSTEM_PREFIX + body + suffix

    def score_prompt(self, prompt: str) -> Scored:
        ids = self.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logits = self.model(input_ids=ids).logits[0, -1]
        pair = torch.stack([logits[self.no_id], logits[self.yes_id]])
        p_yes = torch.softmax(pair, dim=0)[1].item()
        return Scored(relevance=p_yes, raw=(logits[self.yes_id] - logits[self.no_id]).item())

    def score(self, query: str, document: str, instruction: str | None = None, **_: object) -> Scored:  # type: ignore[override]
        return self.score_prompt(self.prompt(query, document, instruction))


class CrossEncoderReference(_Base):
    def __init__(self, model_dir: str | Path) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), dtype=torch.float32).eval()

    def score(self, query: str, document: str, **_: object) -> Scored:  # instruction has no place in the formula
        enc = self.tokenizer(query, document, return_tensors="pt")
        with torch.no_grad():
            logit = self.model(**enc).logits[0, 0].item()
        return Scored(relevance=sigmoid(logit), raw=logit)
