"""The vendor dialects with their own client libraries: the `pinecone` SDK (`inference.rerank`),
the `mixedbread` SDK (`rerank`), LangChain's `NVIDIARerank` (NIM `/v1/ranking`) and LiteLLM's
`nvidia_nim/ranking` provider; and Cohere's search units as the SDK reads them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.sdk.conftest import API_KEY, DOCS, QUERY, TOP_N, Ranked, same_ranking

pytestmark = pytest.mark.sdk


def _raw(direct: Callable[[str, dict[str, Any]], Any], *, top_n: int | None = None) -> Ranked:
    """[(index, raw_score)] best first: what NIM reports as `logit`."""
    body = {"query": QUERY, "documents": DOCS, "top_n": top_n, "raw_scores": True}
    return [(r["index"], r["raw_score"]) for r in direct("/v1/rerank", body)["results"]]


def test_pinecone_sdk(base_url: str, expected: Callable[..., Ranked]) -> None:
    pinecone = pytest.importorskip("pinecone")
    pc = pinecone.Pinecone(api_key=API_KEY, host=base_url)
    res = pc.inference.rerank(model="bge-reranker-v2-m3", query=QUERY, documents=DOCS, top_n=TOP_N)
    same_ranking([(d.index, d.score) for d in res.data], expected())
    assert [d.document["text"] for d in res.data] == [DOCS[d.index] for d in res.data]
    assert res.usage.rerank_units == 1 and res.model
    # objects ranked by another field, ids kept, no documents back
    records = [{"id": f"doc-{i}", "summary": d} for i, d in enumerate(DOCS)]
    res = pc.inference.rerank(
        model="m", query=QUERY, documents=records, rank_fields=["summary"], return_documents=False
    )
    same_ranking([(d.index, d.score) for d in res.data], expected(top_n=None))
    assert all(d.document is None for d in res.data)
    with pytest.raises(pinecone.errors.PineconeError) as err:  # a record without the ranked field: 400
        pc.inference.rerank(model="m", query=QUERY, documents=[{"id": "x", "title": "t"}])
    assert "text" in str(err.value) and err.value.status_code == 400


def test_mixedbread_sdk(base_url: str, expected: Callable[..., Ranked]) -> None:
    mixedbread = pytest.importorskip("mixedbread")
    mx = mixedbread.Mixedbread(api_key=API_KEY, base_url=base_url, max_retries=0)
    res = mx.rerank(
        model="mixedbread-ai/mxbai-rerank-large-v2", query=QUERY, input=DOCS, top_k=TOP_N, return_input=True
    )
    same_ranking([(d.index, d.score) for d in res.data], expected())
    assert [d.input for d in res.data] == [DOCS[d.index] for d in res.data]
    assert res.usage.total_tokens > 0 and res.top_k == TOP_N and res.return_input is True
    with pytest.raises(mixedbread.BadRequestError) as err:
        mx.rerank(query=QUERY, input=["fine", "  "])
    assert "input[1]" in str(err.value.body)


def test_langchain_nvidia_rerank(base_url: str, direct: Callable[[str, dict[str, Any]], Any]) -> None:
    nvidia = pytest.importorskip("langchain_nvidia_ai_endpoints")
    from langchain_core.documents import Document

    ranker = nvidia.NVIDIARerank(
        base_url=f"{base_url}/v1", model="nvidia/llama-nemotron-rerank-1b-v2", api_key=API_KEY, top_n=TOP_N
    )
    docs = ranker.compress_documents(documents=[Document(page_content=d) for d in DOCS], query=QUERY)
    got = [(DOCS.index(d.page_content), d.metadata["relevance_score"]) for d in docs]
    same_ranking(got, _raw(direct, top_n=TOP_N))
    # NIM's default truncate is NONE: a passage longer than the model's window is refused (413) ...
    long = [Document(page_content="paris " * 2000), Document(page_content=DOCS[1])]
    with pytest.raises(Exception, match="413"):
        ranker.compress_documents(documents=long, query=QUERY)
    # ... and cut with truncate="END"
    cut = ranker.model_copy(update={"truncate": "END"}).compress_documents(documents=long, query=QUERY)
    assert len(cut) == 2


def test_litellm_nvidia_nim_ranking(base_url: str, direct: Callable[[str, dict[str, Any]], Any]) -> None:
    litellm = pytest.importorskip("litellm")
    res = litellm.rerank(
        model="nvidia_nim/ranking/nvidia/llama-nemotron-rerank-1b-v2",
        query=QUERY,
        documents=DOCS,
        top_n=TOP_N,
        api_base=base_url,
        api_key=API_KEY,
        num_retries=0,
    )
    same_ranking([(r["index"], r["relevance_score"]) for r in res.results], _raw(direct, top_n=TOP_N))


def test_cohere_search_units_count_per_hundred_documents(base_url: str) -> None:
    cohere = pytest.importorskip("cohere")
    co = cohere.ClientV2(api_key=API_KEY, base_url=base_url)
    one = co.rerank(model="rerank-v3.5", query=QUERY, documents=[f"fact {i}" for i in range(100)], top_n=1)
    two = co.rerank(model="rerank-v3.5", query=QUERY, documents=[f"fact {i}" for i in range(101)], top_n=1)
    assert one.meta.billed_units.search_units == 1
    assert two.meta.billed_units.search_units == 2
    assert two.meta.tokens.input_tokens > one.meta.tokens.input_tokens > 0
