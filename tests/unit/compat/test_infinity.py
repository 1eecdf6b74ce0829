from __future__ import annotations

from compat.infinity import InfinityRerankRequest, parse_infinity, render_infinity
from tests.unit.compat.helpers import outcome

# What LiteLLM's infinity provider posts (1.109.1 and 1.110.2 alike).
BODY = {"model": "any-model", "query": "q", "documents": ["a", "b", "c"], "top_n": 2, "return_documents": True}


def test_render_document_is_the_plain_string() -> None:
    q = parse_infinity(InfinityRerankRequest.model_validate(BODY))
    body = render_infinity(q, outcome([0.1, 0.9, 0.5], top_n=q.top_n, tokens=6, request_id="r"), created=1)
    assert body == {
        "object": "rerank",
        "results": [
            {"relevance_score": 0.9, "index": 1, "document": "b"},
            {"relevance_score": 0.5, "index": 2, "document": "c"},
        ],
        "model": "served-model",
        "usage": {"prompt_tokens": 6, "total_tokens": 6},
        "id": "r",
        "created": 1,
    }


def test_object_documents_come_back_as_their_scored_text() -> None:
    body_in = {**BODY, "documents": [{"text": "a", "id": 1}, {"text": "b"}], "top_n": None}
    q = parse_infinity(InfinityRerankRequest.model_validate(body_in))
    body = render_infinity(q, outcome([0.2, 0.8]))
    assert [r["document"] for r in body["results"]] == ["b", "a"]


def test_raw_scores_replace_the_relevance_score_as_in_infinity() -> None:
    q = parse_infinity(InfinityRerankRequest.model_validate({**BODY, "raw_scores": True, "return_documents": False}))
    body = render_infinity(q, outcome([0.1, 0.9, 0.5], top_n=2, raw=[-2.0, 2.0, 0.0]))
    assert body["results"] == [{"relevance_score": 2.0, "index": 1}, {"relevance_score": 0.0, "index": 2}]
