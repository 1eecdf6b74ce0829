"""Cohere's search-unit rule: one unit per 100 documents, a document over 500 tokens (query included)
counting once per 500-token chunk; and every dialect's units and tokens from the same numbers."""

from __future__ import annotations

import pytest

from compat.billing import CHUNK_TOKENS, billing, pair_tokens, search_units
from compat.cohere import CohereV2RerankRequest, parse_cohere_v2, render_cohere_v2
from compat.model import RerankQuery
from compat.pinecone import PineconeRerankRequest, parse_pinecone, render_pinecone
from tests.unit.compat.helpers import outcome


@pytest.mark.parametrize(("documents", "units"), [(1, 1), (100, 1), (101, 2), (200, 2), (250, 3), (1000, 10)])
def test_one_unit_per_hundred_short_documents(documents: int, units: int) -> None:
    assert search_units([20] * documents) == units


@pytest.mark.parametrize(
    ("tokens", "counted_as"),
    [(1, 1), (500, 1), (501, 2), (1000, 2), (1001, 3), (1074, 3), (5000, 10)],
)
def test_a_long_document_counts_once_per_chunk(tokens: int, counted_as: int) -> None:
    """1074 = the best-practices example: a 50-token query and a 1024-token document make 3 chunks."""
    assert search_units([tokens]) == 1  # one document, however long, is still within one unit
    assert search_units([tokens] + [1] * (100 - counted_as)) == 1
    assert search_units([tokens] + [1] * (101 - counted_as)) == 2


def test_long_documents_push_a_hundred_documents_over_one_unit() -> None:
    assert search_units([CHUNK_TOKENS] * 100) == 1
    assert search_units([CHUNK_TOKENS + 1] * 100) == 2  # 200 chunks
    assert search_units([CHUNK_TOKENS * 3] * 50) == 2  # 150 chunks
    assert search_units([CHUNK_TOKENS * 3] * 67) == 3  # 201 chunks


def test_no_documents_or_no_tokens_is_still_one_unit() -> None:
    assert search_units([]) == 1
    assert search_units([0, 0]) == 1


def test_pair_tokens_share_the_total_by_characters() -> None:
    assert pair_tokens("qq", ["aa", "aa"], 40) == [20, 20]
    assert pair_tokens("q", ["a", "a" * 9], 120) == [20, 100]  # 2 : 10 characters
    assert pair_tokens("q", ["a", "b"], 0) == [0, 0]  # every pair cached: no token count
    assert sum(pair_tokens("query", ["x" * 7, "y" * 13, "z"], 1001)) <= 1001  # rounded down, never over


def _query(n: int, *, doc: str = "d", query: str = "q") -> RerankQuery:
    return RerankQuery(query=query, texts=(doc,) * n, originals=(doc,) * n)


@pytest.mark.parametrize(("n", "units"), [(1, 1), (100, 1), (101, 2), (250, 3)])
def test_billing_of_short_documents(n: int, units: int) -> None:
    out = outcome([0.5] * n, tokens=10 * n)
    assert billing(_query(n), out).search_units == units
    assert billing(_query(n), out).tokens == 10 * n


def test_billing_of_long_documents_uses_the_engine_token_count() -> None:
    """10 documents of one length, 12,000 tokens in all: 1,200 per pair, 3 chunks each → 30 documents."""
    long = _query(10, doc="x" * 5000)
    assert billing(long, outcome([0.5] * 10, tokens=12_000)).search_units == 1
    many = _query(40, doc="x" * 5000)  # 40 x 3 = 120 counted documents
    assert billing(many, outcome([0.5] * 40, tokens=40 * 1_200)).search_units == 2


def test_cohere_and_pinecone_report_the_same_units_and_tokens() -> None:
    docs = [f"document {i}" for i in range(101)]
    out = outcome([i / 101 for i in range(101)], tokens=1234)
    cohere = render_cohere_v2(parse_cohere_v2(CohereV2RerankRequest(query="q", documents=docs)), out)
    assert cohere["meta"]["billed_units"] == {"search_units": 2}
    assert cohere["meta"]["tokens"]["input_tokens"] == cohere["usage"]["total_tokens"] == 1234
    pinecone = render_pinecone(parse_pinecone(PineconeRerankRequest(query="q", documents=docs)), out)
    assert pinecone["usage"] == {"rerank_units": 2}
