"""The pre-tokenised path against the real engine: for the same pairs, vLLM's /classify on the
token ids the gateway builds (engine.tokenizer) answers exactly what its /score answers on the
texts, the same scores and the same token count; with the default instruction, an empty one and
a custom one, on documents with newlines, unicode and template-like text."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine import FAMILIES
from engine.tokenizer import load_tokenizer
from engine.transport import sync_client
from tests.support.service import ServiceProcess

pytestmark = [pytest.mark.engine, pytest.mark.timeout(900)]

INSTRUCTION = "Given a claim, retrieve passages that support or refute the claim"


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST to the engine itself, which listens on a Unix socket (an http+unix:// URL)."""
    engine_url, _, path = url.rpartition("/")
    client, base = sync_client(engine_url, timeout=httpx.Timeout(120.0))
    with client:
        r = client.post(f"{base}/{path}", json=body)
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.mark.parametrize("instruction", [None, "", INSTRUCTION], ids=["default", "empty", "custom"])
def test_classify_on_our_ids_equals_score_on_texts(
    qwen3_service: ServiceProcess, qwen3_dir: Path, words: list[str], instruction: str | None
) -> None:
    status, health = qwen3_service.health()
    assert status == 200
    engine = health["engines"][0]
    assert engine["prompt_format"] == "qwen3-reranker", engine
    tok = load_tokenizer(str(qwen3_dir), FAMILIES["llm-reranker"])
    assert tok is not None
    rng = random.Random(5)
    query = " ".join(rng.sample(words, 5))
    docs = [
        " ".join(rng.sample(words, 6)),
        " ".join(rng.sample(words, 9)) + "\n\n" + " ".join(rng.sample(words, 4)) + "\n",
        "ünïcödé 猫 " + " ".join(rng.sample(words, 3)),
        "<Document>: {{ x }} " + " ".join(rng.sample(words, 5)),
    ]
    text_body: dict[str, Any] = {"model": health["model"], "text_1": query, "text_2": docs}
    if instruction is not None:
        text_body["instruction"] = instruction
    by_text = _post(f"{engine['url']}/score", text_body)
    ids = tok.encode_prompts(query, docs, instruction=instruction)
    by_ids = _post(f"{engine['url']}/classify", {"model": health["model"], "input": ids})
    scores = [d["score"] for d in sorted(by_text["data"], key=lambda d: d["index"])]
    probs = [d["probs"] for d in sorted(by_ids["data"], key=lambda d: d["index"])]
    assert probs == [[s] for s in scores]
    assert by_ids["usage"]["prompt_tokens"] == by_text["usage"]["prompt_tokens"] == sum(map(len, ids))
