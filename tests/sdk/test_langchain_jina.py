"""langchain-community JinaRerank: no URL parameter, so its module constant is monkeypatched."""

from __future__ import annotations

import pytest

from tests.sdk.conftest import API_KEY, DOCS, QUERY, TOP_N, same_ranking

jina_rerank = pytest.importorskip("langchain_community.document_compressors.jina_rerank")
pytestmark = pytest.mark.sdk


def test_jina_rerank(base_url, expected, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(jina_rerank, "JINA_API_URL", f"{base_url}/v1/rerank")
    rr = jina_rerank.JinaRerank(jina_api_key=API_KEY, model="jina-reranker-v2-base-multilingual", top_n=TOP_N)
    got = rr.rerank(documents=DOCS, query=QUERY)
    same_ranking([(r["index"], r["relevance_score"]) for r in got], expected())


def test_jina_rerank_error_detail(base_url, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """It ignores the status and raises RuntimeError(resp["detail"]): errors must carry `detail`."""
    monkeypatch.setattr(jina_rerank, "JINA_API_URL", f"{base_url}/v1/rerank")
    rr = jina_rerank.JinaRerank(jina_api_key=API_KEY, top_n=TOP_N)
    with pytest.raises(RuntimeError, match="query"):
        rr.rerank(documents=DOCS, query=" ")
