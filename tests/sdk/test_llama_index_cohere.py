"""llama-index-postprocessor-cohere-rerank CohereRerank."""

from __future__ import annotations

import pytest

from tests.sdk.conftest import API_KEY, DOCS, QUERY, TOP_N, same_ranking

li_cohere = pytest.importorskip("llama_index.postprocessor.cohere_rerank")
pytestmark = pytest.mark.sdk


def test_cohere_rerank(base_url, expected) -> None:  # type: ignore[no-untyped-def]
    from llama_index.core.schema import NodeWithScore, TextNode

    rr = li_cohere.CohereRerank(top_n=TOP_N, model="rerank-english-v3.0", api_key=API_KEY, base_url=base_url)
    nodes = [NodeWithScore(node=TextNode(text=d, id_=str(i))) for i, d in enumerate(DOCS)]
    got = rr.postprocess_nodes(nodes, query_str=QUERY)
    same_ranking([(int(n.node.node_id), n.score) for n in got], expected())
