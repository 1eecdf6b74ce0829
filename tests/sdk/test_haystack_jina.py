"""jina-haystack JinaRanker (base_url is the full endpoint URL; reads model and usage)."""

from __future__ import annotations

import pytest

from tests.sdk.conftest import API_KEY, DOCS, QUERY, TOP_N, same_ranking

ranker_mod = pytest.importorskip("haystack_integrations.components.rankers.jina")
pytestmark = pytest.mark.sdk


def test_jina_ranker(base_url, expected) -> None:  # type: ignore[no-untyped-def]
    from haystack import Document
    from haystack.utils import Secret

    ranker = ranker_mod.JinaRanker(
        model="jina-reranker-v2-base-multilingual",
        api_key=Secret.from_token(API_KEY),
        top_k=TOP_N,
        base_url=f"{base_url}/v1/rerank",
    )
    out = ranker.run(query=QUERY, documents=[Document(content=d) for d in DOCS])
    same_ranking([(DOCS.index(d.content), d.score) for d in out["documents"]], expected())
    assert out["meta"]["model"]  # Haystack reads resp["model"] and resp["usage"]


def test_jina_ranker_no_top_k_sends_null(base_url, expected) -> None:  # type: ignore[no-untyped-def]
    from haystack import Document
    from haystack.utils import Secret

    ranker = ranker_mod.JinaRanker(api_key=Secret.from_token(API_KEY), base_url=f"{base_url}/v1/rerank")
    out = ranker.run(query=QUERY, documents=[Document(content=d) for d in DOCS])
    same_ranking([(DOCS.index(d.content), d.score) for d in out["documents"]], expected(top_n=None))
