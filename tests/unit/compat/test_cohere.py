"""Cohere v1/v2 and Jina (served by the Cohere v1 superset)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from compat.cohere import (
    CohereV1RerankRequest,
    CohereV2RerankRequest,
    parse_cohere_v1,
    parse_cohere_v2,
    render_cohere_v1,
    render_cohere_v2,
)
from compat.errors import CompatError, error_body
from tests.unit.compat.helpers import outcome


def v1(body: dict):  # type: ignore[no-untyped-def]
    return parse_cohere_v1(CohereV1RerankRequest.model_validate(body))


def v2(body: dict):  # type: ignore[no-untyped-def]
    return parse_cohere_v2(CohereV2RerankRequest.model_validate(body))


def test_v1_object_documents_rank_fields_order_matters_and_return_original() -> None:
    docs = [{"title": "T0", "text": "x0", "id": 7}, {"title": "T1", "text": "x1", "id": 8}]
    q = v1(
        {
            "query": "q",
            "documents": docs,
            "rank_fields": ["title", "text"],
            "return_documents": True,
            "max_chunks_per_doc": 10,
        }
    )
    assert q.texts == ("title: T0\ntext: x0", "title: T1\ntext: x1")
    assert v1({"query": "q", "documents": docs, "rank_fields": ["text", "title"]}).texts[0] == "text: x0\ntitle: T0"
    body = render_cohere_v1(q, outcome([0.2, 0.9]))
    assert body["results"] == [
        {"index": 1, "relevance_score": 0.9, "document": docs[1]},
        {"index": 0, "relevance_score": 0.2, "document": docs[0]},
    ]


def test_v1_superset_serves_jina() -> None:
    """Jina integrations read results[].index/relevance_score, model and usage (Haystack: KeyError if missing)."""
    q = v1(
        {
            "model": "jina-reranker-v2-base-multilingual",
            "query": "q",
            "documents": ["a", {"text": "b"}],
            "top_n": None,
            "return_documents": True,
        }
    )
    body = render_cohere_v1(q, outcome([0.4, 0.6], tokens=11))
    assert body["model"] == "served-model"
    assert body["usage"] == {"total_tokens": 11, "prompt_tokens": 11}
    assert body["results"] == [
        {"index": 1, "relevance_score": 0.6, "document": {"text": "b"}},
        {"index": 0, "relevance_score": 0.4, "document": {"text": "a"}},
    ]
    assert body["meta"]["api_version"] == {"version": "1"}
    assert body["id"] == "req-1"


def test_document_omitted_never_null() -> None:
    q = v1({"query": "q", "documents": ["a", "b"]})
    assert all("document" not in r for r in render_cohere_v1(q, outcome([0.1, 0.2]))["results"])


def test_v2_every_sdk_shape_and_nulls() -> None:
    q = v2({"model": "rerank-v3.5", "query": "q", "documents": ["a", "b"], "top_n": None, "max_tokens_per_doc": None})
    assert (q.top_n, q.max_tokens_per_doc) == (None, 4096)
    old = v2(
        {
            "model": "m",
            "query": "q",
            "documents": [{"text": "a", "k": "v"}],
            "rank_fields": ["k"],
            "return_documents": True,
            "max_chunks_per_doc": 3,
            "priority": 5,
        }
    )
    assert old.texts == ("k: v",) and old.return_documents
    body = render_cohere_v2(old, outcome([0.5]))
    assert body["results"][0]["document"] == {"text": "a", "k": "v"}
    assert body["meta"]["api_version"] == {"version": "2"}


def test_top_n_larger_than_list_is_clamped() -> None:
    q = v2({"model": "m", "query": "q", "documents": ["a", "b"], "top_n": 50})
    assert len(render_cohere_v2(q, outcome([0.1, 0.2], top_n=q.top_n))["results"]) == 2


def test_raw_scores_add_raw_score() -> None:
    q = v1({"query": "q", "documents": ["a", "b"], "raw_scores": True})
    results = render_cohere_v1(q, outcome([0.1, 0.2], raw=[-3.0, 1.0]))["results"]
    assert [r["raw_score"] for r in results] == [1.0, -3.0]


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"query": " "}, "query"),
        ({"documents": []}, "documents"),
        ({"documents": ["a", ""]}, "documents[1]"),
        ({"documents": [{"title": "x"}]}, "documents[0]"),
        ({"documents": [{"text": "a"}], "rank_fields": ["title"]}, "documents[0]"),
        ({"top_n": 0}, "top_n"),
        ({"max_chunks_per_doc": 0}, "max_chunks_per_doc"),
        ({"max_tokens_per_doc": 0}, "max_tokens_per_doc"),
        ({"documents": ["a"] * 10_001}, "documents"),
        ({"documents": ["a"] * 2_000, "max_chunks_per_doc": 10}, "max_chunks_per_doc"),
        ({"priority": 1000}, "priority"),
    ],
)
def test_bad_input_names_the_field(patch: dict, param: str) -> None:
    with pytest.raises(CompatError) as exc:
        v2({"model": "m", "query": "q", "documents": ["a"], **patch})
    assert exc.value.param == param
    assert exc.value.status == 400


@pytest.mark.parametrize("patch", [{"query": None}, {"documents": "a"}, {"documents": [3]}, {"top_n": "x"}])
def test_wrong_types_are_schema_errors(patch: dict) -> None:
    with pytest.raises(ValidationError):
        CohereV1RerankRequest.model_validate({"query": "q", "documents": ["a"], **patch})


def test_superset_error_body_every_client_key() -> None:
    body = error_body(dialect="cohere", status=400, message="m", request_id="r", param="top_n")
    assert body == {
        "id": "r",
        "message": "m",
        "detail": "m",
        "error": {"message": "m", "type": "invalid_request_error", "param": "top_n", "code": 400},
    }
