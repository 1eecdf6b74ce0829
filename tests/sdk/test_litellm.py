"""litellm.rerank with the cohere, jina_ai, voyage, infinity, hosted_vllm and huggingface (TEI) providers."""

from __future__ import annotations

import pytest

from tests.sdk.conftest import API_KEY, DOCS, QUERY, TOP_N, same_ranking

litellm = pytest.importorskip("litellm")
pytestmark = pytest.mark.sdk

# provider → (model, api_base suffix): how a user points each provider at us.
PROVIDERS = {
    "cohere": ("cohere/rerank-v3.5", ""),
    "jina_ai": ("jina_ai/jina-reranker-v2-base-multilingual", ""),
    "voyage": ("voyage/rerank-2", "/v1"),
    "infinity": ("infinity/any-model", ""),
    "hosted_vllm": ("hosted_vllm/any-model", ""),
    "huggingface": ("huggingface/any-model", ""),
}


# LiteLLM's infinity provider reads `document` as a plain string (Infinity's shape), while
# hosted_vllm reads `{"text": ...}` (vLLM's shape); both post the same body to /rerank, where we
# answer vLLM's shape. With infinity, ask for no documents here, or use the /infinity base
# (tests/sdk/test_litellm_infinity.py; docs/compatibility.md).
EXTRA = {"infinity": {"return_documents": False}}


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_rerank(provider, base_url, expected) -> None:  # type: ignore[no-untyped-def]
    model, suffix = PROVIDERS[provider]
    res = litellm.rerank(
        model=model,
        query=QUERY,
        documents=DOCS,
        top_n=TOP_N,
        api_base=base_url + suffix,
        api_key=API_KEY,
        num_retries=0,
        **EXTRA.get(provider, {}),
    )
    got = [(r["index"], r["relevance_score"]) for r in res.results]
    if provider == "huggingface":  # TEI has no top_n: LiteLLM gets every text back
        got = got[:TOP_N]
    same_ranking(got, expected())
    for r in res.results:  # LiteLLM defaults return_documents=True
        if r.get("document") is not None:
            assert r["document"]["text"] == DOCS[r["index"]]
