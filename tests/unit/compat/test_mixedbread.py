from __future__ import annotations

import pytest
from pydantic import ValidationError

from compat.errors import CompatError
from compat.mixedbread import MixedbreadRerankRequest, parse_mixedbread, render_mixedbread
from tests.unit.compat.helpers import outcome

# What the `mixedbread` SDK (0.54) posts for client.rerank(model=..., query=..., input=[...], top_k=2).
BODY = {"model": "mixedbread-ai/mxbai-rerank-large-v2", "query": "q", "input": ["a", "b", "c"], "top_k": 2}


def test_parse_top_k_and_defaults() -> None:
    q = parse_mixedbread(MixedbreadRerankRequest.model_validate(BODY))
    assert (q.query, q.texts, q.top_n, q.return_documents) == ("q", ("a", "b", "c"), 2, False)
    assert q.model == "mixedbread-ai/mxbai-rerank-large-v2"


def test_parse_objects_by_rank_fields() -> None:
    body = {**BODY, "input": [{"title": "T", "body": "B"}], "rank_fields": ["title", "body"], "top_k": None}
    q = parse_mixedbread(MixedbreadRerankRequest.model_validate(body))
    assert q.texts == ("title: T\nbody: B",) and q.top_n is None


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({**BODY, "query": ""}, "query"),
        ({**BODY, "input": []}, "input"),
        ({**BODY, "input": ["a", " "]}, "input[1]"),
        ({**BODY, "input": [{"title": "T"}]}, "input[0]"),  # an object needs text or rank_fields
        ({**BODY, "top_k": 0}, "top_k"),
    ],
)
def test_bad_input_names_the_field(body: dict, param: str) -> None:
    with pytest.raises(CompatError) as err:
        parse_mixedbread(MixedbreadRerankRequest.model_validate(body))
    assert err.value.param == param


def test_schema_error_for_a_non_list_input() -> None:
    with pytest.raises(ValidationError):
        MixedbreadRerankRequest.model_validate({**BODY, "input": "a"})


def test_render_shape_with_input() -> None:
    body_in = {**BODY, "input": ["a", {"text": "b", "id": 7}, "c"], "return_input": True}
    q = parse_mixedbread(MixedbreadRerankRequest.model_validate(body_in))
    body = render_mixedbread(q, outcome([0.1, 0.9, 0.5], top_n=q.top_n, tokens=5))
    assert body == {
        "object": "list",
        "data": [
            {"index": 1, "score": 0.9, "object": "rank_result", "input": {"text": "b", "id": 7}},
            {"index": 2, "score": 0.5, "object": "rank_result", "input": "c"},
        ],
        "model": "served-model",
        "usage": {"prompt_tokens": 5, "total_tokens": 5, "completion_tokens": 0},
        "top_k": 2,
        "return_input": True,
    }


def test_render_without_input_and_raw_scores() -> None:
    q = parse_mixedbread(MixedbreadRerankRequest.model_validate({**BODY, "top_k": None, "raw_scores": True}))
    body = render_mixedbread(q, outcome([0.1, 0.9, 0.5], raw=[-2.0, 2.0, 0.0]))
    assert [d["index"] for d in body["data"]] == [1, 2, 0]
    assert all("input" not in d for d in body["data"])
    assert [d["raw_score"] for d in body["data"]] == [2.0, 0.0, -2.0]
    assert body["top_k"] == 3 and body["return_input"] is False
