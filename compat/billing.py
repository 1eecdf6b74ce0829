"""Billing units: Cohere's search units, from which every dialect's unit field is filled.

Cohere's rule (its pricing page): "A single search unit is a query with up to 100 documents to
be ranked. Documents longer than 500 tokens when including the length of the search query will
be split up into multiple chunks, where each chunk counts as a singular document." LiteLLM
prices a rerank call as `input_cost_per_query x search_units`, so this number is what cost
tracking multiplies.

Here: a document counts as ceil((query + document tokens) / 500) documents, at least one (the
rerank best-practices page's example: a 50-token query and a 1024-token document make 3
chunks), and a request is ceil(counted documents / 100) search units, at least one.

Token counts: the engine reports one total per request (`RerankOutcome.prompt_tokens`: every
scored pair, its query included, after truncation, as the model's tokenizer counts), not one
per pair. Each pair's count is estimated from that total in proportion to its characters:
pair i gets `total x (len(query) + len(doc_i)) / sum_j (len(query) + len(doc_j))`, rounded down.
That is exact when documents are of one length and close when lengths vary. A total of 0 (every
pair answered from the score cache) counts every document as one.

Units and tokens in the other dialects come from the same two numbers (`Billing`): Pinecone's
`usage.rerank_units` is the search-unit count (Pinecone bills rerank units per request of up to
100 documents); every `total_tokens` / `prompt_tokens` field is `RerankOutcome.prompt_tokens`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from compat.model import RerankOutcome, RerankQuery

__all__ = ["CHUNK_TOKENS", "DOCUMENTS_PER_UNIT", "Billing", "billing", "pair_tokens", "search_units"]

CHUNK_TOKENS = 500
DOCUMENTS_PER_UNIT = 100


@dataclass(frozen=True)
class Billing:
    """What one rerank request is billed: tokens (every dialect's token fields) and search units
    (Cohere `meta.billed_units.search_units`, Pinecone `usage.rerank_units`)."""

    tokens: int
    search_units: int


def search_units(pair_token_counts: Sequence[int]) -> int:
    """Search units for one query against documents whose (query + document) token counts are given."""
    documents = sum(max(1, -(-tokens // CHUNK_TOKENS)) for tokens in pair_token_counts)
    return max(1, -(-documents // DOCUMENTS_PER_UNIT))


def pair_tokens(query: str, texts: Sequence[str], total_tokens: int) -> list[int]:
    """Each (query, text) pair's share of `total_tokens`, by characters (see the module docstring)."""
    weights = [len(query) + len(t) for t in texts]
    whole = sum(weights)
    if total_tokens <= 0 or whole == 0:
        return [0] * len(texts)
    return [total_tokens * w // whole for w in weights]


def billing(q: RerankQuery, out: RerankOutcome) -> Billing:
    """The request's tokens and search units."""
    n, total = len(q.texts), out.prompt_tokens
    if n and total > 0:
        # The pair with the longest text gets the largest share; when even it fits in one chunk, every
        # document counts once (what search_units(pair_tokens(...)) gives, without a loop per document).
        whole = len(q.query) * n + sum(map(len, q.texts))
        if whole and total * (len(q.query) + max(map(len, q.texts))) // whole <= CHUNK_TOKENS:
            return Billing(tokens=total, search_units=max(1, -(-n // DOCUMENTS_PER_UNIT)))
    return Billing(
        tokens=out.prompt_tokens, search_units=search_units(pair_tokens(q.query, q.texts, out.prompt_tokens))
    )
