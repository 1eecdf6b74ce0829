from __future__ import annotations

import pytest
from pydantic import ValidationError

from compat.errors import CompatError
from compat.nim import NimRankingRequest, parse_nim, render_nim
from tests.unit.compat.helpers import outcome

# LangChain NVIDIARerank's payload (langchain-nvidia-ai-endpoints 1.5: `_prepare_payload`).
BODY = {
    "model": "nvidia/llama-nemotron-rerank-1b-v2",
    "query": {"text": "q"},
    "passages": [{"text": "a"}, {"text": "b"}, {"text": "c"}],
}


def test_parse_defaults_truncate_none_and_asks_for_raw_scores() -> None:
    q = parse_nim(NimRankingRequest.model_validate(BODY))
    assert (q.query, q.texts, q.model) == ("q", ("a", "b", "c"), "nvidia/llama-nemotron-rerank-1b-v2")
    assert q.truncate is False  # NIM's default is NONE: too long is an error, not a cut
    assert q.raw_scores is True  # `logit` is the raw score
    assert q.top_n is None


def test_parse_truncate_end_and_ignores_image_fields() -> None:
    body = {**BODY, "truncate": "END", "passages": [{"text": "a", "image": "data:image/png;base64,AA=="}]}
    q = parse_nim(NimRankingRequest.model_validate(body))
    assert q.truncate is True and q.texts == ("a",)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({**BODY, "query": {"text": "  "}}, "query.text"),
        ({**BODY, "passages": []}, "passages"),
        ({**BODY, "passages": [{"text": "a"}, {"text": ""}]}, "passages[1]"),
    ],
)
def test_bad_input_names_the_field(body: dict, param: str) -> None:
    with pytest.raises(CompatError) as err:
        parse_nim(NimRankingRequest.model_validate(body))
    assert err.value.param == param and err.value.status == 400


@pytest.mark.parametrize(
    "body",
    [
        {**BODY, "query": "q"},  # the query is an object
        {**BODY, "passages": ["a"]},  # passages are objects
        {**BODY, "truncate": "START"},
    ],
)
def test_schema_errors(body: dict) -> None:
    with pytest.raises(ValidationError):
        NimRankingRequest.model_validate(body)


def test_render_rankings_are_raw_logits_best_first_with_usage() -> None:
    q = parse_nim(NimRankingRequest.model_validate(BODY))
    body = render_nim(q, outcome([0.2, 0.9, 0.5], raw=[-1.4, 2.2, 0.0], tokens=9))
    assert body == {
        "rankings": [{"index": 1, "logit": 2.2}, {"index": 2, "logit": 0.0}, {"index": 0, "logit": -1.4}],
        "usage": {"prompt_tokens": 9, "total_tokens": 9},
    }
