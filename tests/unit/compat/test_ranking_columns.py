"""The pipeline's ranking is columns (compat.model.Ranking): it reads as RankedItems everywhere, and
every dialect renders the same bytes from it as from a tuple of RankedItem (the renderers' fast
paths read the columns, the rest make the items)."""

from __future__ import annotations

import random
from functools import partial
from typing import Any

import orjson
import pytest

from compat import cohere, infinity, mixedbread, nim, pinecone, tei, voyage
from compat.model import RankedItem, Ranking, RerankOutcome, RerankQuery, ranked_pairs
from core.ranking import rank

RENDERERS: list[Any] = [
    cohere.render_cohere_v1,
    cohere.render_cohere_v2,
    tei.render_tei,
    voyage.render_voyage,
    pinecone.render_pinecone,
    partial(infinity.render_infinity, created=1700000000),
    mixedbread.render_mixedbread,
    nim.render_nim,
]


def _scores(n: int, seed: int) -> tuple[list[float], list[float]]:
    rnd = random.Random(seed)
    raw = [rnd.uniform(-12, 12) for _ in range(n)]
    raw[n // 2] = raw[0]  # a tie: ascending index order
    rel = [1 / (1 + 2.718281828459045**-x) for x in raw]
    rel.append(1e-7)  # a tiny float (exponent notation)
    raw.append(-16.1)
    return rel, raw


def test_a_ranking_reads_as_its_ranked_items() -> None:
    rel, raw = _scores(50, 1)
    ranking = rank(rel, raw_scores=raw, top_n=20)
    items = tuple(ranking)
    assert all(type(item) is RankedItem for item in items)
    assert [i.index for i in items] == sorted(range(len(rel)), key=lambda i: (-rel[i], i))[:20]
    assert [i.relevance_score for i in items] == [rel[i.index] for i in items]
    assert [i.raw_score for i in items] == [raw[i.index] for i in items]
    assert len(ranking) == 20 and ranking[3] == items[3] and ranking[-1] == items[-1] and ranking[2:5] == items[2:5]
    assert ranking == items and ranking == list(items) and ranking != items[:-1]
    assert list(ranked_pairs(ranking)) == [(i.index, i.relevance_score) for i in items]
    assert list(ranked_pairs(items)) == list(ranked_pairs(ranking))
    assert tuple(rank(rel)) == tuple(RankedItem(i, rel[i]) for i in sorted(range(len(rel)), key=lambda i: (-rel[i], i)))
    assert Ranking([], []) == () and list(Ranking([], [])) == []


@pytest.mark.parametrize("render", RENDERERS, ids=lambda r: getattr(r, "__name__", "render_infinity"))
@pytest.mark.parametrize("return_documents", [False, True])
@pytest.mark.parametrize("raw_scores", [False, True])
def test_every_dialect_renders_the_same_bytes_from_columns_and_from_items(
    render: Any, return_documents: bool, raw_scores: bool
) -> None:
    rel, raw = _scores(200, 7)
    texts = tuple(f"doc {i} ü" for i in range(len(rel)))
    q = RerankQuery(
        query="q",
        texts=texts,
        originals=texts,
        return_documents=return_documents,
        raw_scores=raw_scores,
    )
    ranking = rank(rel, raw_scores=raw if raw_scores else None, top_n=150)
    common = {"model": "m", "prompt_tokens": 4321, "request_id": "rid"}
    columns = render(q, RerankOutcome(items=ranking, **common))
    items = render(q, RerankOutcome(items=tuple(ranking), **common))
    assert orjson.dumps(columns) == orjson.dumps(items)
