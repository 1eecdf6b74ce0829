"""vLLM score API (`/score`, `/v1/score`): score (left, right) text pairs, in input order.

Request: one pair of fields, `text_1`/`text_2` (vLLM 0.10), `queries`/`documents`,
`queries`/`items` or `data_1`/`data_2` (vLLM 0.33), each a string or a list of strings.
Shapes, as in vLLM: 1:1, 1:N (one left text against every right text) and N:N (pairs by
position). Response: `{"id", "object": "list", "created", "model", "data": [{"index",
"object": "score", "score"}], "usage"}`, ordered by index, never sorted or cut.

Scores: `score` is the [0, 1] relevance that every other dialect reports (for cross-encoders
and LLM rerankers that is vLLM's own default, the activated probability). Raw scores:
`use_activation: false` (vLLM 0.33) or `activation: false` (vLLM 0.10) makes `score` the raw
score instead (a logit, or an embedding model's cosine).

One request becomes a `ScorePlan`: one `RerankQuery` per distinct left text, each mapping its
documents back to output positions, so N:N pairs need one engine call per distinct query. The
groups stay one request (core's `RerankPipeline.rerank_many`): --max-documents counts all their
pairs (`size`: N for 1:N and for N:N, whose pairs go by position), under one deadline and one
admission ticket.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from compat.documents import MAX_DOCUMENTS, check_query, document_texts
from compat.errors import CompatError
from compat.model import RerankOutcome, RerankQuery

__all__ = ["SCORE_FIELD_PAIRS", "ScoreGroup", "ScorePlan", "ScoreRequest", "parse_score", "render_score"]

# (left, right) field names, in the order they are looked for.
SCORE_FIELD_PAIRS: tuple[tuple[str, str], ...] = (
    ("text_1", "text_2"),
    ("queries", "documents"),
    ("queries", "items"),
    ("data_1", "data_2"),
)

_Texts = str | list[str] | None


class ScoreRequest(BaseModel):
    """vLLM score body. Unknown fields are accepted and ignored; null means "not given"."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    text_1: _Texts = None
    text_2: _Texts = None
    queries: _Texts = None
    documents: _Texts = None
    items: _Texts = None
    data_1: _Texts = None
    data_2: _Texts = None
    use_activation: bool | None = Field(None, description="false → raw scores (vLLM 0.33 name).")
    activation: bool | None = Field(None, description="false → raw scores (vLLM 0.10 name).")
    truncate_prompt_tokens: int | None = Field(None, description="Accepted for compatibility; not applied.")
    instruction: str | None = Field(None, description="Task instruction for LLM rerankers (Qwen3).")


@dataclass(frozen=True)
class ScoreGroup:
    """One engine call: `query.texts[i]` is scored for output position `positions[i]`."""

    query: RerankQuery
    positions: tuple[int, ...]


@dataclass(frozen=True)
class ScorePlan:
    groups: tuple[ScoreGroup, ...]
    size: int
    raw: bool


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def _fields(req: ScoreRequest) -> tuple[str, str, list[str], list[str]]:
    for left, right in SCORE_FIELD_PAIRS:
        lv, rv = getattr(req, left), getattr(req, right)
        if lv is not None and rv is not None:
            return left, right, _as_list(lv), _as_list(rv)
    for left, right in SCORE_FIELD_PAIRS:
        if getattr(req, right) is not None:
            raise CompatError(f"invalid request: {left} is required with {right}", param=left)
        if getattr(req, left) is not None and (left, right) != ("queries", "documents"):
            raise CompatError(f"invalid request: {right} is required with {left}", param=right)
    if req.queries is not None:
        raise CompatError("invalid request: documents is required with queries", param="documents")
    raise CompatError("invalid request: send text_1 and text_2 (or queries and documents)", param="text_1")


def parse_score(req: ScoreRequest) -> ScorePlan:
    """Raises: CompatError naming the offending field (empty or mismatched lists, empty texts)."""
    left, right, lefts, rights = _fields(req)
    if not lefts:
        raise CompatError(f"invalid request: list of {left} must not be empty", param=left)
    texts = document_texts(rights, param=right, max_documents=MAX_DOCUMENTS)
    if len(lefts) == 1:
        lefts = lefts * len(texts)
    elif len(lefts) != len(texts):
        raise CompatError(
            f"invalid request: {left} and {right} must be 1:1, 1:N or N:N; got {len(lefts)}:{len(texts)}",
            param=right,
        )
    positions: dict[str, list[int]] = {}
    for i, q in enumerate(lefts):
        check_query(q, param=left if len(set(lefts)) == 1 else f"{left}[{i}]")
        positions.setdefault(q, []).append(i)
    raw = req.use_activation is False or req.activation is False
    groups = tuple(
        ScoreGroup(
            query=RerankQuery(
                query=q,
                texts=tuple(texts[p] for p in pos),
                originals=tuple(rights[p] for p in pos),
                model=req.model,
                instruction=req.instruction,
                raw_scores=raw,
            ),
            positions=tuple(pos),
        )
        for q, pos in positions.items()
    )
    return ScorePlan(groups=groups, size=len(texts), raw=raw)


def render_score(plan: ScorePlan, outcomes: Sequence[RerankOutcome], *, created: int | None = None) -> dict[str, Any]:
    """`outcomes[i]` answers `plan.groups[i]` (all items, no top_n)."""
    scores = [0.0] * plan.size
    tokens = 0
    for group, out in zip(plan.groups, outcomes, strict=True):
        tokens += out.prompt_tokens
        for item in out.items:
            score = item.relevance_score
            if plan.raw and item.raw_score is not None:
                score = item.raw_score
            scores[group.positions[item.index]] = score
    first = outcomes[0]
    return {
        "id": f"score-{first.request_id}",
        "object": "list",
        "created": int(time.time()) if created is None else created,
        "model": first.model,
        "data": [{"index": i, "object": "score", "score": s} for i, s in enumerate(scores)],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0},
    }
