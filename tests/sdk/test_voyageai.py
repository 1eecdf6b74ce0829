"""voyageai Client (base_url includes /v1; sends top_k and truncation, reads data and usage)."""

from __future__ import annotations

import pytest

from tests.sdk.conftest import API_KEY, DOCS, QUERY, TOP_N, same_ranking

voyageai = pytest.importorskip("voyageai")
pytestmark = pytest.mark.sdk


def _direct(direct, top_k):  # type: ignore[no-untyped-def]
    body = {"query": QUERY, "documents": DOCS, "model": "rerank-2", "top_k": top_k, "truncation": True}
    return [(d["index"], d["relevance_score"]) for d in direct("/v1/rerank", body)["data"]]


@pytest.mark.parametrize("top_k", [None, TOP_N])
def test_client_rerank(base_url, direct, expected, top_k) -> None:  # type: ignore[no-untyped-def]
    vo = voyageai.Client(api_key=API_KEY, base_url=f"{base_url}/v1")
    res = vo.rerank(query=QUERY, documents=DOCS, model="rerank-2", top_k=top_k)
    got = [(r.index, r.relevance_score) for r in res.results]
    same_ranking(got, _direct(direct, top_k))
    same_ranking(got, expected(top_n=top_k))  # the same scores as every other dialect
    assert [r.document for r in res.results] == [DOCS[i] for i, _ in got]
    assert res.total_tokens > 0


def test_error_detail_is_read(base_url) -> None:  # type: ignore[no-untyped-def]
    vo = voyageai.Client(api_key=API_KEY, base_url=f"{base_url}/v1")
    with pytest.raises(voyageai.error.InvalidRequestError, match="top_k"):
        vo.rerank(query=QUERY, documents=DOCS, model="rerank-2", top_k=0)
