"""Cohere v1 `max_chunks_per_doc`: long documents are split into consecutive token chunks of
`max_tokens_per_doc` tokens (default: what the model can take for the document part), at most
`max_chunks_per_doc` of them; each chunk is scored and the document's score is its best chunk's;
result indices refer to the original documents.

References (tests/fidelity/reference.py) chunk the document's token ids with the model's own
tokenizer and decode each chunk with `tokenizer.decode(ids)`. For the tiny random-weight models,
the "relevant passage" is the candidate passage the reference scores highest, the filler ones
are those it scores lowest. For the bundled bi-encoder (real weights) relevance is semantic.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from tests.fidelity.conftest import by_index, rerank

pytestmark = [pytest.mark.engine, pytest.mark.timeout(900)]

TOL = 1e-4
C = 10  # tokens per chunk (tiny models: one word = one token)


@pytest.fixture(params=["qwen3", "bert"])
def family(request: pytest.FixtureRequest) -> tuple[str, Any, Any]:
    name = request.param
    return name, request.getfixturevalue(f"{name}_service"), request.getfixturevalue(f"{name}_ref")


@pytest.fixture
def passages(family, words) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """query, rel (best-scoring C-token passage), f1/f2 (worst two), mid (a middling one)."""
    _, _, ref = family
    rng = random.Random(7)
    query = " ".join(rng.sample(words, 4))
    cands = [" ".join(rng.sample(words, C)) for _ in range(16)]
    for c in cands:
        assert len(ref.doc_ids(c)) == C
    scored = sorted(cands, key=lambda c: ref.score(query, c).relevance)
    out = {"query": query, "f1": scored[0], "f2": scored[1], "mid": scored[8], "rel": scored[-1]}
    margin = ref.score(query, out["rel"]).relevance - ref.score(query, out["f2"]).relevance
    assert margin > 0.02, margin
    return out


def test_relevant_passage_beyond_first_chunk(family, passages) -> None:  # type: ignore[no-untyped-def]
    name, svc, ref = family
    p = passages
    q = p["query"]
    docs = [
        f"{p['f1']} {p['f2']}",  # 0: nothing relevant
        f"{p['f1']} {p['rel']}",  # 1: the relevant passage is the 2nd chunk
        p["mid"],  # 2: short (one chunk)
        f"{p['f1']} {p['f2']} {p['rel']}",  # 3: the relevant passage is the 3rd chunk: beyond K=2
    ]
    data = rerank(svc, q, docs, max_tokens_per_doc=C, max_chunks_per_doc=2, raw_scores=True)
    got = by_index(data)
    want = [ref.score_chunked(q, d, C, 2) for d in docs]
    for i in range(len(docs)):
        assert abs(got[i]["relevance_score"] - want[i].relevance) < TOL, (name, i, got[i], want[i])
        assert abs(got[i]["raw_score"] - want[i].raw) < TOL, (name, i, got[i], want[i])
    rel = ref.score(q, p["rel"]).relevance
    assert abs(got[1]["relevance_score"] - rel) < TOL  # best chunk = the relevant passage
    assert data["results"][0]["index"] == 1, data  # ... which is the best of all passages
    assert got[1]["relevance_score"] > got[0]["relevance_score"] + 0.01
    assert got[1]["relevance_score"] > got[3]["relevance_score"] + 0.01  # 3rd chunk not scored with K=2
    assert abs(got[3]["relevance_score"] - got[0]["relevance_score"]) < TOL

    # K=3 reaches it
    data3 = rerank(svc, q, docs, max_tokens_per_doc=C, max_chunks_per_doc=3)
    assert abs(by_index(data3)[3]["relevance_score"] - rel) < TOL
    assert abs(by_index(data3)[3]["relevance_score"] - ref.score_chunked(q, docs[3], C, 3).relevance) < TOL


@pytest.mark.parametrize("chunks", [None, 1], ids=["no-chunking", "one-chunk"])
def test_without_chunking_only_first_chunk_counts(family, passages, chunks) -> None:  # type: ignore[no-untyped-def]
    """Truncation (no chunking, or max_chunks_per_doc=1): the documents sharing their first C tokens tie."""
    name, svc, ref = family
    p = passages
    q = p["query"]
    docs = [f"{p['f1']} {p['f2']}", f"{p['f1']} {p['rel']}", f"{p['f1']} {p['f2']} {p['rel']}"]
    data = rerank(svc, q, docs, max_tokens_per_doc=C, max_chunks_per_doc=chunks)
    got = by_index(data)
    first = ref.score(q, p["f1"]).relevance
    for i in range(len(docs)):
        assert abs(got[i]["relevance_score"] - first) < TOL, (name, i, got[i], first)


def test_default_chunk_size_is_the_model_budget(family, words) -> None:  # type: ignore[no-untyped-def]
    """No max_tokens_per_doc: a document longer than the model (max-model-len 512) is not an error;
    chunking scores at least its truncated version (whose text is the first chunk)."""
    name, svc, ref = family
    rng = random.Random(11)
    q = " ".join(rng.sample(words, 4))
    long_doc = " ".join(rng.choice(words) for _ in range(1300))
    short_doc = " ".join(rng.sample(words, 12))
    docs = [short_doc, long_doc]
    trunc = by_index(rerank(svc, q, docs))
    chunked = by_index(rerank(svc, q, docs, max_chunks_per_doc=4))
    assert abs(trunc[0]["relevance_score"] - ref.score(q, short_doc).relevance) < TOL
    assert abs(chunked[0]["relevance_score"] - trunc[0]["relevance_score"]) < TOL
    assert chunked[1]["relevance_score"] >= trunc[1]["relevance_score"] - TOL, (name, chunked[1], trunc[1])


# ---------------------------------------------------------------- bundled bi-encoder (real weights)
BI_QUERY = "At what temperature does water boil at sea level?"
BI_RELEVANT = "Pure water boils at 100 degrees Celsius at sea level."
BI_OTHER = "The museum reopened its sculpture garden after the spring renovation."
BI_FILLER = [
    "The committee reviewed the annual budget of the regional library network and approved new reading programs.",
    "Local football clubs announced the schedule for the youth tournament held every autumn in the city park.",
    "The orchestra rehearsed a symphony by a romantic composer before touring several European capitals.",
    "Farmers in the valley planted apple orchards and built a cooperative to sell cider at the weekly market.",
]


def _filler(tok, n_tokens: int) -> str:  # type: ignore[no-untyped-def]
    """Unrelated text of exactly n_tokens tokens of the bi-encoder's tokenizer."""
    text, i = "", 0
    while len(tok(text, add_special_tokens=False)["input_ids"]) < n_tokens + 5:
        text += BI_FILLER[i % len(BI_FILLER)] + " "
        i += 1
    out = tok.decode(tok(text, add_special_tokens=False)["input_ids"][:n_tokens])
    assert len(tok(out, add_special_tokens=False)["input_ids"]) == n_tokens
    return out


def _bi_reference(st_model, query: str, doc: str, size: int, max_chunks: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(relevance, cosine) of the best chunk: sentence-transformers cosine, mapped (cos + 1) / 2."""
    tok = st_model.tokenizer
    ids = tok(doc, add_special_tokens=False)["input_ids"]
    chunks = [tok.decode(ids[i : i + size]) for i in range(0, len(ids), size)][:max_chunks]
    emb = st_model.encode([query, *chunks], convert_to_tensor=True, normalize_embeddings=True)
    cos = max(float(emb[0] @ emb[j]) for j in range(1, len(chunks) + 1))
    return (cos + 1) / 2, cos


def test_bi_encoder_chunking_matches_reference(service, st_model) -> None:  # type: ignore[no-untyped-def]
    size = 32
    f1 = _filler(st_model.tokenizer, size)
    docs = [f"{f1} {BI_OTHER}", f"{f1} {BI_RELEVANT}", BI_OTHER]
    data = rerank(service, BI_QUERY, docs, max_tokens_per_doc=size, max_chunks_per_doc=3, raw_scores=True)
    got = by_index(data)
    for i, d in enumerate(docs):
        rel, cos = _bi_reference(st_model, BI_QUERY, d, size, 3)
        assert abs(got[i]["relevance_score"] - rel) < TOL, (i, got[i], rel)
        assert abs(got[i]["raw_score"] - cos) < TOL, (i, got[i], cos)
    assert data["results"][0]["index"] == 1, data
    assert got[1]["relevance_score"] > got[0]["relevance_score"] + 0.05


def test_bi_encoder_relevant_sentence_after_the_model_limit(service, st_model) -> None:  # type: ignore[no-untyped-def]
    """Default chunk size (what the model takes): the answer sits after ~600 tokens of filler."""
    filler = _filler(st_model.tokenizer, 600)
    docs = [f"{filler} {BI_OTHER}", f"{filler} {BI_RELEVANT}"]
    chunked = by_index(rerank(service, BI_QUERY, docs, max_chunks_per_doc=8))
    assert chunked[1]["relevance_score"] > chunked[0]["relevance_score"] + 0.05, chunked
    plain = by_index(rerank(service, BI_QUERY, docs))  # truncated to the same first tokens: a tie
    assert abs(plain[1]["relevance_score"] - plain[0]["relevance_score"]) < TOL, plain
