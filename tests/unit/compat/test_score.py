from __future__ import annotations

import pytest
from pydantic import ValidationError

from compat.errors import CompatError
from compat.model import RerankOutcome
from compat.score import ScoreRequest, parse_score, render_score
from tests.unit.compat.helpers import outcome


def plan_of(body: dict):  # type: ignore[no-untyped-def]
    return parse_score(ScoreRequest.model_validate(body))


def test_one_to_one() -> None:
    plan = plan_of({"model": "m", "text_1": "q", "text_2": "d"})
    assert plan.size == 1
    assert len(plan.groups) == 1
    assert plan.groups[0].query.query == "q"
    assert plan.groups[0].query.texts == ("d",)
    assert plan.groups[0].query.top_n is None


@pytest.mark.parametrize(
    "body",
    [
        {"text_1": "q", "text_2": ["a", "b", "c"]},
        {"text_1": ["q"], "text_2": ["a", "b", "c"]},
        {"queries": "q", "documents": ["a", "b", "c"]},
        {"queries": "q", "items": ["a", "b", "c"]},
        {"data_1": "q", "data_2": ["a", "b", "c"]},
    ],
)
def test_one_to_many_is_one_group(body: dict) -> None:
    plan = plan_of(body)
    assert [g.query.query for g in plan.groups] == ["q"]
    assert plan.groups[0].query.texts == ("a", "b", "c")
    assert plan.groups[0].positions == (0, 1, 2)


def test_n_to_n_groups_by_distinct_query_and_renders_in_input_order() -> None:
    plan = plan_of({"text_1": ["q1", "q2", "q1"], "text_2": ["a", "b", "c"]})
    assert [(g.query.query, g.query.texts, g.positions) for g in plan.groups] == [
        ("q1", ("a", "c"), (0, 2)),
        ("q2", ("b",), (1,)),
    ]
    outs = [outcome([0.3, 0.8], tokens=5, request_id="r9"), outcome([0.6], tokens=3, request_id="r9")]
    body = render_score(plan, outs, created=123)
    assert body == {
        "id": "score-r9",
        "object": "list",
        "created": 123,
        "model": "served-model",
        "data": [
            {"index": 0, "object": "score", "score": 0.3},
            {"index": 1, "object": "score", "score": 0.6},
            {"index": 2, "object": "score", "score": 0.8},
        ],
        "usage": {"prompt_tokens": 8, "total_tokens": 8, "completion_tokens": 0},
    }


@pytest.mark.parametrize("flag", [{"use_activation": False}, {"activation": False}])
def test_raw_scores(flag: dict) -> None:
    plan = plan_of({"text_1": "q", "text_2": ["a", "b"], **flag})
    assert plan.raw and plan.groups[0].query.raw_scores
    body = render_score(plan, [outcome([0.1, 0.9], raw=[-2.0, 2.0])], created=1)
    assert [d["score"] for d in body["data"]] == [-2.0, 2.0]


def test_activation_true_is_not_raw() -> None:
    assert not plan_of({"text_1": "q", "text_2": "a", "use_activation": True}).raw


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "text_1"),
        ({"text_1": "q"}, "text_2"),
        ({"text_2": ["a"]}, "text_1"),
        ({"text_1": [], "text_2": ["a"]}, "text_1"),
        ({"text_1": "q", "text_2": []}, "text_2"),
        ({"text_1": "q", "text_2": ["a", ""]}, "text_2[1]"),
        ({"text_1": " ", "text_2": ["a"]}, "text_1"),
        ({"text_1": ["q", ""], "text_2": ["a", "b"]}, "text_1[1]"),
        ({"text_1": ["q1", "q2"], "text_2": ["a", "b", "c"]}, "text_2"),
        ({"queries": "q", "documents": []}, "documents"),
    ],
)
def test_bad_input_names_the_field(body: dict, param: str) -> None:
    with pytest.raises(CompatError) as exc:
        plan_of(body)
    assert exc.value.param == param
    assert exc.value.status == 400


@pytest.mark.parametrize("body", [{"text_1": 1, "text_2": "a"}, {"text_1": "q", "text_2": [{"text": "a"}]}])
def test_wrong_types_are_schema_errors(body: dict) -> None:
    with pytest.raises(ValidationError):
        ScoreRequest.model_validate(body)


def test_render_uses_outcome_model() -> None:
    plan = plan_of({"text_1": "q", "text_2": "a"})
    out = RerankOutcome(items=outcome([0.5]).items, model="actual", prompt_tokens=1, request_id="x")
    assert render_score(plan, [out])["model"] == "actual"
