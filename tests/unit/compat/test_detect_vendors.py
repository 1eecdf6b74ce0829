"""The vendor dialects: own paths (NIM, Mixedbread, Infinity) and Pinecone on the shared /rerank."""

from __future__ import annotations

import pytest

from compat.detect import dialect_of

PINECONE_SDK_HEADERS = {"api-key": "k", "x-pinecone-api-version": "2026-07", "user-agent": "python-client-10.2.0"}
LITELLM_HEADERS = {"authorization": "Bearer k", "accept": "application/json", "user-agent": "litellm/1.110.2"}


@pytest.mark.parametrize(
    ("path", "body", "headers", "dialect"),
    [
        ("/v1/ranking", {"query": {"text": "q"}, "passages": [{"text": "a"}]}, {}, "nim"),
        ("/v1/ranking", None, {}, "nim"),  # before the body is read: the path alone
        ("/v1/reranking", {"query": "q", "input": ["a"]}, {}, "mixedbread"),
        ("/infinity/rerank", {"query": "q", "documents": ["a"]}, LITELLM_HEADERS, "infinity"),
        # Pinecone on /rerank: its version header (the SDK always sends it), even before the body
        ("/rerank", {"query": "q", "documents": [{"text": "a"}], "rank_fields": ["text"]}, PINECONE_SDK_HEADERS,
         "pinecone"),
        ("/rerank", None, PINECONE_SDK_HEADERS, "pinecone"),
        # ... or a `parameters` object, which only Pinecone sends
        ("/rerank", {"query": "q", "documents": [{"text": "a"}], "parameters": {"truncate": "END"}}, {}, "pinecone"),
        ("/rerank", {"query": "q", "documents": ["a"], "parameters": None}, {}, "cohere"),
        # LiteLLM's infinity and hosted_vllm providers send exactly this to /rerank: the vLLM shape
        ("/rerank", {"model": "m", "query": "q", "documents": ["a"], "top_n": 1, "return_documents": True},
         LITELLM_HEADERS, "cohere"),
        ("/rerank", {"query": "q", "texts": ["a"]}, {}, "tei"),
        ("/v1/rerank", {"query": "q", "documents": ["a"]}, PINECONE_SDK_HEADERS, "cohere"),  # only /rerank is shared
        ("/v1/rerank", {"query": "q", "documents": ["a"], "top_k": None}, {}, "voyage"),
    ],
)  # fmt: skip
def test_dialect_of(path: str, body: dict | None, headers: dict[str, str], dialect: str) -> None:
    assert dialect_of(path, body, headers) == dialect


def test_headers_are_optional() -> None:
    assert dialect_of("/rerank", None) == "cohere"
    assert dialect_of("/v1/reranking", None) == "mixedbread"
