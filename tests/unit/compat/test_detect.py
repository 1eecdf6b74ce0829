from __future__ import annotations

import pytest

from compat.detect import detect_bare_rerank, detect_v1_rerank


@pytest.mark.parametrize(
    ("body", "dialect"),
    [
        ({"query": "q", "documents": ["a"], "top_k": None, "truncation": True, "model": "rerank-2"}, "voyage"),
        ({"query": "q", "documents": ["a"], "top_k": 2}, "voyage"),
        ({"query": "q", "documents": ["a"], "truncation": False}, "voyage"),
        ({"query": "q", "documents": ["a"], "top_n": 2}, "cohere"),
        ({"query": "q", "documents": [{"text": "a"}], "rank_fields": ["text"], "return_documents": True}, "cohere"),
        ({"model": "jina-reranker-v2-base-multilingual", "query": "q", "documents": ["a"], "top_n": None}, "cohere"),
        ({}, "cohere"),
    ],
)
def test_v1_rerank(body: dict, dialect: str) -> None:
    assert detect_v1_rerank(body) == dialect


@pytest.mark.parametrize(
    ("body", "dialect"),
    [
        ({"query": "q", "texts": ["a"], "raw_scores": False}, "tei"),
        ({"query": "q", "documents": ["a"]}, "cohere"),
        ({"query": "q", "documents": ["a"], "texts": ["b"]}, "cohere"),
        ({"query": "q"}, "cohere"),
    ],
)
def test_bare_rerank(body: dict, dialect: str) -> None:
    assert detect_bare_rerank(body) == dialect
