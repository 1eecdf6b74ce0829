"""cohere-haystack CohereRanker (api_base_url is the bare base URL; ClientV2 → /v2/rerank)."""

from __future__ import annotations

import pytest

from tests.sdk.conftest import API_KEY, DOCS, QUERY, TOP_N, same_ranking

ranker_mod = pytest.importorskip("haystack_integrations.components.rankers.cohere")
pytestmark = pytest.mark.sdk


def test_cohere_ranker(base_url, expected) -> None:  # type: ignore[no-untyped-def]
    from haystack import Document
    from haystack.utils import Secret

    ranker = ranker_mod.CohereRanker(
        model="rerank-v3.5", top_k=TOP_N, api_key=Secret.from_token(API_KEY), api_base_url=base_url
    )
    out = ranker.run(query=QUERY, documents=[Document(content=d) for d in DOCS])
    same_ranking(
        [(DOCS.index(d.content), d.score) for d in out["documents"]],
        expected(path="/v2/rerank", max_tokens_per_doc=4096),
    )
