"""Scores through the service (Cohere /v1/rerank and /v2/rerank) equal plain-transformers
float32 references of the official formulas, to 1e-4.

Qwen3 requests that fit go to the engine pre-tokenised (/classify); truncated ones and raw
scores send texts (/score); the tests assert which path each took (the service's metrics).

Families: an original-layout Qwen3-Reranker (Qwen3ForCausalLM served with vLLM's hf-overrides
and our template; score = P(yes) after the official prompt) and a BERT cross-encoder
(score = sigmoid(logit)). Both are tiny random-weight models built by the fixtures.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from tests.fidelity.conftest import by_index, engine_calls, rerank
from tests.fidelity.reference import sigmoid

pytestmark = [pytest.mark.engine, pytest.mark.timeout(900)]

TOL = 1e-4
INSTRUCTION = "Given a claim, retrieve passages that support or refute the claim"


@pytest.fixture(params=["qwen3", "bert"])
def family(request: pytest.FixtureRequest) -> tuple[str, Any, Any]:
    name = request.param
    return name, request.getfixturevalue(f"{name}_service"), request.getfixturevalue(f"{name}_ref")


def _text(rng: random.Random, words: list[str], n: int, newlines: bool = True) -> str:
    out = []
    for i in range(n):
        out.append(rng.choice(words))
        if newlines and i and i % 9 == 0 and rng.random() < 0.5:
            out.append(rng.choice(["\n", "\n\n"]))
    return " ".join(out)


def _docs(words: list[str], seed: int, lengths: list[int]) -> tuple[str, list[str]]:
    rng = random.Random(seed)
    return _text(rng, words, 4, newlines=False), [_text(rng, words, n) for n in lengths]


def _max_diff(got: list[float], want: list[float]) -> float:
    return max(abs(a - b) for a, b in zip(got, want, strict=True))


@pytest.mark.parametrize("path", ["/v1/rerank", "/v2/rerank"])
@pytest.mark.parametrize("instruction", [None, INSTRUCTION], ids=["default-instruction", "instruction"])
def test_short_documents_match_reference(family, words, path, instruction) -> None:  # type: ignore[no-untyped-def]
    name, svc, ref = family
    query, docs = _docs(words, seed=1, lengths=[3, 8, 15, 24, 40])
    before = engine_calls(svc)
    data = rerank(svc, query, docs, path=path, instruction=instruction)
    assert engine_calls(svc) - before == {"classify" if name == "qwen3" else "score": 1}
    got = by_index(data)
    want = [ref.score(query, d, instruction=instruction).relevance for d in docs]
    scores = [got[i]["relevance_score"] for i in range(len(docs))]
    assert _max_diff(scores, want) < TOL, (name, scores, want)
    # ranked best first
    ranked = [r["relevance_score"] for r in data["results"]]
    assert ranked == sorted(ranked, reverse=True)
    if name == "qwen3" and instruction is not None:
        # the check above can only see the instruction if it moves the reference's scores
        default = [ref.score(query, d).relevance for d in docs]
        assert _max_diff(default, want) > 1e-3


@pytest.mark.parametrize("path", ["/v1/rerank", "/v2/rerank"])
@pytest.mark.parametrize("instruction", [None, INSTRUCTION], ids=["default-instruction", "instruction"])
def test_truncated_documents_match_reference(family, words, path, instruction) -> None:  # type: ignore[no-untyped-def]
    """`max_tokens_per_doc`: the document's first N tokens are scored (the template suffix stays)."""
    name, svc, ref = family
    max_tokens = 12
    query, docs = _docs(words, seed=2, lengths=[5, 12, 30, 60, 90])
    before = engine_calls(svc)
    data = rerank(svc, query, docs, path=path, instruction=instruction, max_tokens_per_doc=max_tokens)
    assert engine_calls(svc) - before == {"score": 1}  # the engine truncates: texts
    got = by_index(data)
    want = [ref.score_truncated(query, d, max_tokens, instruction=instruction).relevance for d in docs]
    scores = [got[i]["relevance_score"] for i in range(len(docs))]
    assert _max_diff(scores, want) < TOL, (name, scores, want)
    # the truncation is visible: the whole long documents score differently
    whole = [ref.score(query, d, instruction=instruction).relevance for d in docs[2:]]
    assert _max_diff(whole, want[2:]) > 1e-3


def test_raw_scores(family, words) -> None:  # type: ignore[no-untyped-def]
    """`raw_scores: true`: each result carries the logit (Qwen3: logit(yes) - logit(no)), and the
    relevance is sigmoid(raw)."""
    name, svc, ref = family
    query, docs = _docs(words, seed=3, lengths=[4, 10, 20])
    before = engine_calls(svc)
    data = rerank(svc, query, docs, raw_scores=True)
    # Every classifier call asks for logits (use_activation false): Qwen3 pre-tokenised, BERT as texts.
    assert engine_calls(svc) - before == ({"classify": 1} if name == "qwen3" else {"score": 1})
    got = by_index(data)
    for i, d in enumerate(docs):
        want = ref.score(query, d)
        assert "raw_score" in got[i], data
        assert abs(got[i]["raw_score"] - want.raw) < TOL, (name, i, got[i], want)
        assert abs(got[i]["relevance_score"] - sigmoid(got[i]["raw_score"])) < 1e-6, got[i]
        assert abs(got[i]["relevance_score"] - want.relevance) < TOL, (name, i, got[i], want)
    plain = rerank(svc, query, docs)  # the same logits, without raw_score in the answer
    assert all("raw_score" not in r for r in plain["results"])
    for i, r in by_index(plain).items():
        assert abs(r["relevance_score"] - got[i]["relevance_score"]) < 1e-6, (name, i, r, got[i])


def test_reference_sees_the_trailing_newline(qwen3_ref, words) -> None:  # type: ignore[no-untyped-def]
    """The tiny tokenizer keeps "\\n" and "\\n\\n" apart like Qwen's, so a prompt one newline short
    (what vLLM's upstream template renders) scores differently: the tests above would catch it."""
    query, docs = _docs(words, seed=4, lengths=[10, 20, 30])
    official = qwen3_ref.prompt(query, docs[0])
    assert official.endswith("</think>\n\n")
    tok = qwen3_ref.tokenizer
    ids_ok = tok(official, add_special_tokens=False)["input_ids"]
    ids_short = tok(official[:-1], add_special_tokens=False)["input_ids"]
    assert len(ids_ok) == len(ids_short) and ids_ok[-1] != ids_short[-1]
    diffs = [
        abs(
            qwen3_ref.score_prompt(qwen3_ref.prompt(query, d)).relevance
            - qwen3_ref.score_prompt(qwen3_ref.prompt(query, d)[:-1]).relevance
        )
        for d in docs
    ]
    assert min(diffs) > 1e-3, diffs


@pytest.mark.parametrize("path", ["/v1/rerank", "/v2/rerank"])
def test_cross_encoder_window_truncation_matches_sentence_transformers(bert_service, bert_ref, words, path) -> None:  # type: ignore[no-untyped-def]
    """Documents longer than the model window (max-model-len 512), no max_tokens_per_doc: scored as
    sentence-transformers' CrossEncoder scores them, tokenizer(query, doc, truncation=True,
    max_length=512), the query whole and the document cut. The engine truncates in its own
    tokenizer pass (`truncate_prompt_tokens`), so the gateway tokenizes nothing."""
    import torch

    from tests.fidelity.conftest import MAX_MODEL_LEN

    rng = random.Random(5)
    query = _text(rng, words, 40, newlines=False)
    docs = [_text(rng, words, n) for n in (20, 480, 600, 1300)]
    data = rerank(bert_service, query, docs, path=path)
    got = by_index(data)
    tok, model = bert_ref.tokenizer, bert_ref.model
    want = []
    for d in docs:
        enc = tok(query, d, truncation=True, max_length=MAX_MODEL_LEN, return_tensors="pt")
        assert enc["input_ids"].shape[1] <= MAX_MODEL_LEN
        with torch.no_grad():
            want.append(sigmoid(model(**enc).logits[0, 0].item()))
    scores = [got[i]["relevance_score"] for i in range(len(docs))]
    assert _max_diff(scores, want) < TOL, (scores, want)
    # where the cut falls is visible: a shorter cut scores differently
    assert abs(bert_ref.score_truncated(query, docs[2], 300).relevance - want[2]) > 1e-4
