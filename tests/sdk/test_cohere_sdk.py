"""`cohere` SDK: Client (v1: string and object docs, rank_fields, return_documents), ClientV2, AsyncClientV2."""

from __future__ import annotations

import asyncio

import pytest

from tests.sdk.conftest import API_KEY, DOCS, QUERY, TOP_N, same_ranking

cohere = pytest.importorskip("cohere")
pytestmark = pytest.mark.sdk

MODEL = "rerank-v3.5"  # a Cohere name: the lenient default serves it with our model


def test_client_v1_string_documents(base_url, expected) -> None:  # type: ignore[no-untyped-def]
    co = cohere.Client(api_key=API_KEY, base_url=base_url)
    res = co.rerank(model=MODEL, query=QUERY, documents=DOCS, top_n=TOP_N)
    same_ranking([(r.index, r.relevance_score) for r in res.results], expected())
    assert res.meta.api_version.version == "1"
    assert all(r.document is None for r in res.results)


def test_client_v1_object_documents_rank_fields_return_documents(base_url, expected) -> None:  # type: ignore[no-untyped-def]
    docs = [{"title": f"doc {i}", "text": t, "lang": "en"} for i, t in enumerate(DOCS)]
    co = cohere.Client(api_key=API_KEY, base_url=base_url)
    res = co.rerank(
        model=MODEL, query=QUERY, documents=docs, top_n=TOP_N, rank_fields=["text", "title"], return_documents=True
    )
    same_ranking(
        [(r.index, r.relevance_score) for r in res.results], expected(documents=docs, rank_fields=["text", "title"])
    )
    for r in res.results:  # the original object, extra fields preserved
        assert r.document.text == docs[r.index]["text"]
        assert r.document.dict()["title"] == docs[r.index]["title"]


def test_client_v2(base_url, expected) -> None:  # type: ignore[no-untyped-def]
    co = cohere.ClientV2(api_key=API_KEY, base_url=base_url)
    res = co.rerank(model=MODEL, query=QUERY, documents=DOCS, top_n=TOP_N)
    same_ranking([(r.index, r.relevance_score) for r in res.results], expected(path="/v2/rerank", model=MODEL))
    assert res.meta.api_version.version == "2"


def test_async_client_v2(base_url, expected) -> None:  # type: ignore[no-untyped-def]
    async def call():  # type: ignore[no-untyped-def]
        co = cohere.AsyncClientV2(api_key=API_KEY, base_url=base_url)
        return await co.rerank(model=MODEL, query=QUERY, documents=DOCS, top_n=len(DOCS) + 5)

    res = asyncio.run(call())
    same_ranking([(r.index, r.relevance_score) for r in res.results], expected(top_n=None, path="/v2/rerank"))


def test_bad_input_is_a_bad_request_error_with_a_message(base_url) -> None:  # type: ignore[no-untyped-def]
    co = cohere.ClientV2(api_key=API_KEY, base_url=base_url)
    with pytest.raises(cohere.errors.BadRequestError) as exc:
        co.rerank(model=MODEL, query="   ", documents=DOCS)
    assert "query" in exc.value.body["message"]
