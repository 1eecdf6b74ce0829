from __future__ import annotations

import pytest
from pydantic import ValidationError

from compat.errors import CompatError
from compat.voyage import VoyageRerankRequest, parse_voyage, render_voyage
from tests.unit.compat.helpers import outcome

SDK_BODY = {"query": "q", "documents": ["a", "b", "c"], "model": "rerank-2", "top_k": None, "truncation": True}


def test_parse_sdk_body_null_top_k_means_all() -> None:
    q = parse_voyage(VoyageRerankRequest.model_validate(SDK_BODY))
    assert q.query == "q"
    assert q.texts == ("a", "b", "c")
    assert q.top_n is None
    assert q.model == "rerank-2"
    assert q.truncate is True
    assert q.return_documents is False


def test_parse_top_k_truncation_return_documents() -> None:
    q = parse_voyage(
        VoyageRerankRequest.model_validate(
            {**SDK_BODY, "top_k": 2, "truncation": False, "return_documents": True, "raw_scores": True}
        )
    )
    assert (q.top_n, q.truncate, q.return_documents, q.raw_scores) == (2, False, True, True)


def test_render_shape_document_is_plain_string() -> None:
    q = parse_voyage(VoyageRerankRequest.model_validate({**SDK_BODY, "top_k": 2, "return_documents": True}))
    body = render_voyage(q, outcome([0.1, 0.9, 0.5], top_n=q.top_n, tokens=7))
    assert body == {
        "object": "list",
        "data": [
            {"index": 1, "relevance_score": 0.9, "document": "b"},
            {"index": 2, "relevance_score": 0.5, "document": "c"},
        ],
        "model": "served-model",
        "usage": {"total_tokens": 7},
    }


def test_render_omits_document_unless_asked_and_adds_raw_score() -> None:
    q = parse_voyage(VoyageRerankRequest.model_validate({**SDK_BODY, "raw_scores": True}))
    body = render_voyage(q, outcome([0.1, 0.9, 0.5], raw=[-2.0, 2.0, 0.0]))
    assert [d["index"] for d in body["data"]] == [1, 2, 0]
    assert all("document" not in d for d in body["data"])
    assert [d["raw_score"] for d in body["data"]] == [2.0, 0.0, -2.0]


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"query": "  "}, "query"),
        ({"documents": []}, "documents"),
        ({"documents": ["a", ""]}, "documents[1]"),
        ({"top_k": 0}, "top_k"),
        ({"top_k": -3}, "top_k"),
    ],
)
def test_bad_input_names_the_field(patch: dict, param: str) -> None:
    with pytest.raises(CompatError) as exc:
        parse_voyage(VoyageRerankRequest.model_validate({**SDK_BODY, **patch}))
    assert exc.value.param == param
    assert exc.value.status == 400


@pytest.mark.parametrize("patch", [{"query": 3}, {"documents": "a"}, {"documents": [{"text": "a"}]}, {"top_k": "x"}])
def test_wrong_types_are_schema_errors(patch: dict) -> None:
    with pytest.raises(ValidationError):
        VoyageRerankRequest.model_validate({**SDK_BODY, **patch})


def test_too_many_documents() -> None:
    with pytest.raises(CompatError) as exc:
        parse_voyage(VoyageRerankRequest.model_validate({**SDK_BODY, "documents": ["x"] * 10_001}))
    assert exc.value.param == "documents"
