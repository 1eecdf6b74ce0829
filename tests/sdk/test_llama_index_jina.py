"""llama-index-postprocessor-jinaai-rerank JinaRerank (base_url must include /v1)."""

from __future__ import annotations

import pytest

from tests.sdk.conftest import API_KEY, DOCS, QUERY, TOP_N, same_ranking

li_jina = pytest.importorskip("llama_index.postprocessor.jinaai_rerank")
pytestmark = pytest.mark.sdk


def test_jina_rerank(base_url, expected) -> None:  # type: ignore[no-untyped-def]
    from llama_index.core.schema import NodeWithScore, TextNode

    rr = li_jina.JinaRerank(
        top_n=TOP_N, model="jina-reranker-v2-base-multilingual", base_url=f"{base_url}/v1", api_key=API_KEY
    )
    nodes = [NodeWithScore(node=TextNode(text=d, id_=str(i))) for i, d in enumerate(DOCS)]
    got = rr.postprocess_nodes(nodes, query_str=QUERY)
    same_ranking([(int(n.node.node_id), n.score) for n in got], expected())
