"""Fit one request into the model's window: a pure function from query + window + tokenizer to a plan.

The planner decides, per request, whether the engine needs any limit at all, whether the
engine truncates pairs in its own tokenizer pass, whether the gateway cuts documents itself,
or whether documents are split into chunks (`max_chunks_per_doc`). It never calls an engine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from compat.errors import CompatError
from compat.model import RerankQuery
from engine.snapshot import ModelWindow
from engine.tokenizer import QWEN3_DEFAULT_INSTRUCTION, QWEN3_PREFIX, QWEN3_SUFFIX, ModelTokenizer

__all__ = ["ScoringPlan", "admission_units", "fits_without_tokenizer", "plan_request", "precut", "unchanged"]

_ENCODER_FRAME = 8  # bytes of slack for a cross-/bi-encoder's special tokens


@dataclass(frozen=True)
class ScoringPlan:
    """What is sent to the engine.

    query: the (possibly truncated) query. texts: one text per chunk; owners: the document each
    chunk belongs to (the identity when nothing is chunked). engine_max_tokens: the engine-side
    per-document token limit (vLLM `max_tokens_per_doc`). engine_truncate: the pair window the
    engine truncates to while it tokenises (cross-encoders: one pass, documents cut first).
    """

    query: str
    texts: tuple[str, ...]
    owners: tuple[int, ...]
    engine_max_tokens: int | None
    warnings: tuple[str, ...]
    engine_truncate: int | None = None


# No token of the tokenizers served here covers more than this many characters (WordPiece gives up on
# words longer than 100 characters); text beyond `window x this` can never reach the model.
MAX_CHARS_PER_TOKEN = 100
# Admission counts a pair as one unit per this many characters (at least one): a 19 MB document is not
# "one pair" of work.
ADMISSION_CHARS = 4096


def precut(q: RerankQuery, window: int | None) -> RerankQuery:
    """`q` with every text longer than the model could ever read cut to `window x MAX_CHARS_PER_TOKEN`
    characters (times the chunks asked for), so neither the gateway's tokenizer nor the engine's
    reads megabytes it would throw away. Scores are unchanged: what is cut lies past the window."""
    if not window:
        return q
    cap = window * max(1, q.max_chunks_per_doc or 1) * MAX_CHARS_PER_TOKEN
    if len(q.query) <= cap and max(map(len, q.texts), default=0) <= cap:
        return q
    return dataclasses.replace(q, query=q.query[:cap], texts=tuple(t[:cap] for t in q.texts))


def admission_units(query: str, texts: Sequence[str]) -> int:
    """What a request costs the in-flight budget: a pair per text, more for long ones."""
    if len(query) + max(map(len, texts), default=0) < ADMISSION_CHARS:
        return len(texts)  # every pair is one unit (the common case, without a loop in Python)
    return sum(1 + (len(query) + len(t)) // ADMISSION_CHARS for t in texts)


def unchanged(q: RerankQuery, *, warnings: tuple[str, ...] = (), query: str | None = None) -> ScoringPlan:
    """Every document as sent, one text each, no engine-side limit."""
    return ScoringPlan(query if query is not None else q.query, q.texts, tuple(range(len(q.texts))), None, warnings)


def fits_without_tokenizer(q: RerankQuery, window: ModelWindow) -> bool:
    """True when byte lengths alone prove every pair fits (a token covers at least one byte),
    so the common short-document request never touches a tokenizer."""
    max_len = window.max_model_len
    if max_len is None:
        return True
    family = window.family.name
    frame = _ENCODER_FRAME
    if family == "llm-reranker":
        frame = len((QWEN3_PREFIX + QWEN3_SUFFIX + (q.instruction or QWEN3_DEFAULT_INSTRUCTION)).encode()) + 40
    longest = max(map(len, map(str.encode, q.texts)))
    if q.max_tokens_per_doc is not None and longest > q.max_tokens_per_doc:
        return False
    query = len(q.query.encode())
    if family == "bi-encoder":
        return max(query, longest) + frame <= max_len
    return query + longest + frame <= max_len


def plan_request(q: RerankQuery, window: ModelWindow, tok: ModelTokenizer | None) -> ScoringPlan:
    """Truncate the query (with a warning), then truncate documents to their token budget, or
    split them into chunks (max_chunks_per_doc).

    Raises: CompatError (413) when truncation is off (TEI truncate=false) and an input is too long.
    """
    max_len = window.max_model_len
    if max_len is None or tok is None:
        return ScoringPlan(q.query, q.texts, tuple(range(len(q.texts))), q.max_tokens_per_doc, ())
    family = window.family.name
    warnings: list[str] = []
    overhead = tok.pair_overhead(q.instruction)
    separate = family == "bi-encoder"  # query and document are embedded separately
    query = q.query
    query_limit = max_len - overhead if separate else max(1, (max_len - overhead) // 2)
    if len(query.encode()) > query_limit:
        qids = tok.encode(query)
        if len(qids) > query_limit:
            if not q.truncate:
                raise CompatError(
                    f"Input validation error: `query` must have less than {query_limit} tokens. Given: {len(qids)}",
                    param="query",
                    status=413,
                )
            query = tok.decode(qids[:query_limit])
            warnings.append(f"query truncated from {len(qids)} to {query_limit} tokens (model limit {max_len})")
    qn = 0 if separate else len(tok.encode(query))
    budget = window_left = max_len - overhead - qn
    if q.max_tokens_per_doc is not None:
        budget = min(budget, q.max_tokens_per_doc)
    budget = max(1, budget)
    # Cheap exact pre-check: a token covers at least one UTF-8 byte.
    long_idx = [i for i, t in enumerate(q.texts) if len(t.encode()) > budget]
    if not long_idx:
        return unchanged(q, warnings=tuple(warnings), query=query)
    chunks = q.max_chunks_per_doc or 1
    if family == "cross-encoder" and chunks == 1 and q.truncate and budget >= window_left:
        # Only the pair window limits the documents: the engine truncates in the one tokenizer
        # pass it makes anyway (HF longest_first; the query is at most half the window, so only
        # documents are cut, as in sentence-transformers). Tokenizing here to find the long ones
        # costs as much CPU as the engine's own pass (measured on an H100: docs/gpu-performance.md).
        owners = tuple(range(len(q.texts)))
        return ScoringPlan(query, q.texts, owners, None, tuple(warnings), engine_truncate=max_len)
    ids_by_doc = dict(zip(long_idx, tok.encode_many([q.texts[i] for i in long_idx]), strict=True))
    too_long = {i: ids for i, ids in ids_by_doc.items() if len(ids) > budget}
    if not too_long:
        return unchanged(q, warnings=tuple(warnings), query=query)
    if not q.truncate:
        i, ids = next(iter(too_long.items()))
        raise CompatError(
            f"Input validation error: document {i} must have less than {budget} tokens. Given: {len(ids)}",
            param=f"documents[{i}]",
            status=413,
        )
    if chunks == 1:
        owners = tuple(range(len(q.texts)))
        if family == "llm-reranker":  # vLLM's max_tokens_per_doc: its tokenization (vllm#57666)
            return ScoringPlan(query, q.texts, owners, budget, tuple(warnings))
        # Encoders: cut the too-long documents here, exactly as vLLM's max_tokens_per_doc would.
        # Leaving it to the engine costs its single-threaded API server a second tokenization of
        # every document (measured on an H100: 0.58-0.83x direct throughput; docs/gpu-performance.md).
        cut = list(q.texts)
        for i in too_long:
            cut[i] = tok.truncate(cut[i], budget)
        return ScoringPlan(query, tuple(cut), owners, None, tuple(warnings))
    texts: list[str] = []
    own: list[int] = []
    for i, text in enumerate(q.texts):
        doc_ids = too_long.get(i)
        if doc_ids is None:
            texts.append(text)
            own.append(i)
            continue
        for c in range(min(chunks, -(-len(doc_ids) // budget))):
            texts.append(tok.decode(doc_ids[c * budget : (c + 1) * budget]))
            own.append(i)
    return ScoringPlan(query, tuple(texts), tuple(own), budget, tuple(warnings))
