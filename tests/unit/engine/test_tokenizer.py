"""The LLM-reranker prompt the gateway renders itself equals what the engine renders from
engine/templates/qwen3_reranker.jinja, and is tokenised as vLLM tokenises it (whole prompt,
default special tokens). This is what keeps the pre-tokenised path (/classify) and the text
path (/score) from drifting apart."""

from __future__ import annotations

from typing import Any

import jinja2
import pytest

from engine import FAMILIES
from engine.config import QWEN3_TEMPLATE
from engine.tokenizer import QWEN3_DEFAULT_INSTRUCTION, ModelTokenizer, qwen3_prompt

PAIRS = [
    ("how do cats hunt?", "Cats stalk and pounce."),
    ("", ""),
    ("query", "first line\nsecond line\n\n\nthird after blank lines\n"),
    ("  leading and trailing spaces  ", "\ttabbed\r\nwindows line end "),
    ("Qu'est-ce que c'est ? 猫はどうやって狩りをする", "Ünïcödé 🐈 documents — «quoted» ∑ 𝔘"),
    ("braces {{ not jinja }} {% raw %}", "<|im_end|> <Document>: looks like the frame"),
]
INSTRUCTIONS = [
    None,
    "",
    "Given a claim, retrieve passages that support or refute the claim",
    "multi\nline instruction ✓",
]


def _jinja(query: str, document: str, instruction: str | None) -> str:
    """What vLLM renders (transformers' chat-template environment: trim_blocks, lstrip_blocks)."""
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    template = env.from_string(QWEN3_TEMPLATE.read_text())
    kwargs: dict[str, Any] = {} if instruction is None else {"instruction": instruction}
    return template.render(
        messages=[{"role": "query", "content": query}, {"role": "document", "content": document}],
        add_generation_prompt=False,
        **kwargs,
    )


@pytest.mark.parametrize("instruction", INSTRUCTIONS, ids=["none", "empty", "custom", "multiline"])
@pytest.mark.parametrize(("query", "document"), PAIRS)
def test_prompt_equals_the_template(query: str, document: str, instruction: str | None) -> None:
    assert qwen3_prompt(query, document, instruction) == _jinja(query, document, instruction)


def test_empty_instruction_means_the_default() -> None:
    assert qwen3_prompt("q", "d", "") == qwen3_prompt("q", "d") == qwen3_prompt("q", "d", QWEN3_DEFAULT_INSTRUCTION)
    assert qwen3_prompt("q", "d").endswith("<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")


class _RecordingTokenizer:
    """Stands in for a Hugging Face tokenizer: ids are the characters' code points."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], dict[str, Any]]] = []

    def __call__(self, texts: list[str], **kwargs: Any) -> dict[str, list[list[int]]]:
        self.calls.append((list(texts), kwargs))
        return {"input_ids": [[ord(c) for c in t] for t in texts]}


def test_encode_prompts_tokenises_each_whole_prompt_in_one_call_with_default_special_tokens() -> None:
    raw = _RecordingTokenizer()
    tok = ModelTokenizer(raw, FAMILIES["llm-reranker"])
    docs = ["a", "b\nc", "ü"]
    ids = tok.encode_prompts("q", docs, instruction="inst")
    assert len(raw.calls) == 1
    texts, kwargs = raw.calls[0]
    assert texts == [_jinja("q", d, "inst") for d in docs]
    assert kwargs == {}  # vLLM calls tokenizer(prompt): the tokenizer's own special tokens
    assert ids == [[ord(c) for c in t] for t in texts]


@pytest.mark.parametrize("family", ["cross-encoder", "bi-encoder"])
def test_encode_prompts_is_only_for_llm_rerankers(family: str) -> None:
    with pytest.raises(ValueError, match=family):
        ModelTokenizer(_RecordingTokenizer(), FAMILIES[family]).encode_prompts("q", ["d"])
