"""langchain-cohere CohereRerank (ClientV2 → /v2/rerank; sends nulls for unset fields)."""

from __future__ import annotations

import pytest

from tests.sdk.conftest import API_KEY, DOCS, QUERY, TOP_N, same_ranking

lc_cohere = pytest.importorskip("langchain_cohere")
pytestmark = pytest.mark.sdk


def test_cohere_rerank(base_url, expected) -> None:  # type: ignore[no-untyped-def]
    from langchain_core.documents import Document

    rr = lc_cohere.CohereRerank(model="rerank-v3.5", cohere_api_key=API_KEY, base_url=base_url, top_n=TOP_N)
    got = rr.rerank(documents=DOCS, query=QUERY)
    same_ranking([(r["index"], r["relevance_score"]) for r in got], expected(path="/v2/rerank"))
    docs = rr.compress_documents([Document(page_content=d) for d in DOCS], QUERY)
    same_ranking(
        [(DOCS.index(d.page_content), d.metadata["relevance_score"]) for d in docs], expected(path="/v2/rerank")
    )
