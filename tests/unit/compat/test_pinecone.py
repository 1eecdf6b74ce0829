from __future__ import annotations

import pytest
from pydantic import ValidationError

from compat.errors import CompatError
from compat.pinecone import PineconeRerankRequest, error_body, parse_pinecone, render_pinecone
from tests.unit.compat.helpers import outcome

# What the `pinecone` SDK (10.2) posts for pc.inference.rerank(...): strings wrapped as {"text"},
# rank_fields and return_documents always sent.
BODY = {
    "model": "bge-reranker-v2-m3",
    "query": "q",
    "documents": [{"id": "1", "text": "a"}, {"id": "2", "text": "b"}, {"id": "3", "text": "c"}],
    "rank_fields": ["text"],
    "return_documents": True,
}


def test_parse_sdk_body_defaults() -> None:
    q = parse_pinecone(PineconeRerankRequest.model_validate(BODY))
    assert (q.query, q.texts, q.top_n, q.model) == ("q", ("a", "b", "c"), None, "bge-reranker-v2-m3")
    assert q.return_documents is True and q.truncate is True  # truncate defaults to END


def test_return_documents_defaults_to_true_and_strings_become_objects() -> None:
    q = parse_pinecone(PineconeRerankRequest.model_validate({"model": "m", "query": "q", "documents": ["a", "b"]}))
    assert q.return_documents is True and q.texts == ("a", "b")
    assert q.originals == ({"text": "a"}, {"text": "b"})


def test_one_rank_field_is_its_value_several_are_lines() -> None:
    docs = [{"id": "1", "summary": "S", "title": "T"}]
    one = parse_pinecone(PineconeRerankRequest.model_validate({**BODY, "documents": docs, "rank_fields": ["summary"]}))
    assert one.texts == ("S",)
    two = parse_pinecone(
        PineconeRerankRequest.model_validate({**BODY, "documents": docs, "rank_fields": ["title", "summary"]})
    )
    assert two.texts == ("title: T\nsummary: S",)


def test_parameters_truncate_none_and_top_n() -> None:
    q = parse_pinecone(PineconeRerankRequest.model_validate({**BODY, "top_n": 2, "parameters": {"truncate": "NONE"}}))
    assert q.truncate is False and q.top_n == 2


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({**BODY, "query": " "}, "query"),
        ({**BODY, "documents": []}, "documents"),
        ({**BODY, "documents": [{"id": "1"}]}, "documents[0]"),
        ({**BODY, "documents": [{"text": 3}]}, "documents[0]"),
        ({**BODY, "documents": [{"text": ""}]}, "documents[0]"),
        ({**BODY, "top_n": 0}, "top_n"),
        ({**BODY, "parameters": {"truncate": "START"}}, "parameters.truncate"),
    ],
)
def test_bad_input_names_the_field(body: dict, param: str) -> None:
    with pytest.raises(CompatError) as err:
        parse_pinecone(PineconeRerankRequest.model_validate(body))
    assert err.value.param == param and err.value.status == 400


def test_schema_error() -> None:
    with pytest.raises(ValidationError):
        PineconeRerankRequest.model_validate({**BODY, "documents": "a"})


def test_render_shape() -> None:
    q = parse_pinecone(PineconeRerankRequest.model_validate({**BODY, "top_n": 2}))
    body = render_pinecone(q, outcome([0.1, 0.9, 0.5], top_n=q.top_n))
    assert body == {
        "model": "served-model",
        "data": [
            {"index": 1, "score": 0.9, "document": {"id": "2", "text": "b"}},
            {"index": 2, "score": 0.5, "document": {"id": "3", "text": "c"}},
        ],
        "usage": {"rerank_units": 1},
    }


def test_render_without_documents_with_raw_scores() -> None:
    q = parse_pinecone(PineconeRerankRequest.model_validate({**BODY, "return_documents": False, "raw_scores": True}))
    body = render_pinecone(q, outcome([0.1, 0.9, 0.5], raw=[-2.0, 2.0, 0.0]))
    assert body["data"] == [
        {"index": 1, "score": 0.9, "raw_score": 2.0},
        {"index": 2, "score": 0.5, "raw_score": 0.0},
        {"index": 0, "score": 0.1, "raw_score": -2.0},
    ]


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, "INVALID_ARGUMENT"), (401, "UNAUTHENTICATED"), (404, "NOT_FOUND"), (413, "OUT_OF_RANGE"),
     (422, "INVALID_ARGUMENT"), (429, "RESOURCE_EXHAUSTED"), (503, "UNAVAILABLE"), (504, "DEADLINE_EXCEEDED"),
     (500, "INTERNAL"), (418, "INVALID_ARGUMENT"), (599, "UNKNOWN")],
)  # fmt: skip
def test_error_body_is_pinecones_envelope(status: int, code: str) -> None:
    body = error_body(status=status, message="bad", request_id="r1", param="query")
    assert body == {
        "error": {"code": code, "message": "bad", "details": {"param": "query", "request_id": "r1"}},
        "status": status,
    }
