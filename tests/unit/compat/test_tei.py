from __future__ import annotations

import pytest
from pydantic import ValidationError

from compat.errors import CompatError, error_body
from compat.tei import TeiRerankRequest, parse_tei, render_tei
from tests.unit.compat.helpers import outcome

# What LiteLLM's huggingface provider sends.
LITELLM_BODY = {
    "query": "q",
    "texts": ["a", "b", "c"],
    "return_text": True,
    "raw_scores": False,
    "truncation_direction": "Right",
}


def test_parse_defaults() -> None:
    q = parse_tei(TeiRerankRequest.model_validate({"query": "q", "texts": ["a", "b"]}))
    assert (q.texts, q.top_n, q.return_documents, q.raw_scores, q.truncate) == (("a", "b"), None, False, False, True)


def test_parse_all_fields() -> None:
    q = parse_tei(
        TeiRerankRequest.model_validate(
            {
                "query": "q",
                "texts": ["a"],
                "raw_scores": True,
                "return_text": True,
                "truncate": False,
                "truncation_direction": "left",
            }
        )
    )
    assert (q.raw_scores, q.return_documents, q.truncate) == (True, True, False)


def test_render_bare_array_best_first_with_text() -> None:
    q = parse_tei(TeiRerankRequest.model_validate(LITELLM_BODY))
    assert render_tei(q, outcome([0.2, 0.7, 0.4])) == [
        {"index": 1, "score": 0.7, "text": "b"},
        {"index": 2, "score": 0.4, "text": "c"},
        {"index": 0, "score": 0.2, "text": "a"},
    ]


def test_render_raw_scores_replace_score() -> None:
    q = parse_tei(TeiRerankRequest.model_validate({"query": "q", "texts": ["a", "b"], "raw_scores": True}))
    assert render_tei(q, outcome([0.2, 0.7], raw=[-1.5, 0.8])) == [
        {"index": 1, "score": 0.8},
        {"index": 0, "score": -1.5},
    ]


@pytest.mark.parametrize(
    ("patch", "param"),
    [({"query": ""}, "query"), ({"texts": []}, "texts"), ({"texts": ["a", " "]}, "texts[1]"), ({"top_n": 0}, "top_n")],
)
def test_bad_input_names_the_field(patch: dict, param: str) -> None:
    with pytest.raises(CompatError) as exc:
        parse_tei(TeiRerankRequest.model_validate({**LITELLM_BODY, **patch}))
    assert exc.value.param == param


@pytest.mark.parametrize(
    "patch", [{"texts": "a"}, {"texts": [1]}, {"truncation_direction": "middle"}, {"raw_scores": "maybe"}]
)
def test_wrong_types_are_schema_errors(patch: dict) -> None:
    with pytest.raises(ValidationError):
        TeiRerankRequest.model_validate({**LITELLM_BODY, **patch})


def test_tei_error_shape() -> None:
    body = error_body(dialect="tei", status=400, message="`texts` cannot be empty", request_id="r")
    assert body["error"] == "`texts` cannot be empty"
    assert body["error_type"] == "Empty"
    body = error_body(dialect="tei", status=422, message="bad", request_id="r")
    assert body["error_type"] == "Validation"
