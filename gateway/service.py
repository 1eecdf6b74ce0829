"""The bridge: RerankQuery → engine calls → RerankOutcome.

Identical documents are scored once; very long lists are split into concurrent engine calls
(which the registry may spread over several engines) and merged back in order. LLM-reranker
prompts that need no truncation are rendered and tokenised here and sent as token ids
(--pretokenize): the engine's single-threaded API server then only schedules them.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from compat.errors import CompatError, UnknownModelError
from compat.model import RerankOutcome, RerankQuery
from compat.ranking import rank, relevances
from engine import FAMILIES, EngineClient, EngineRegistry, EngineView, ScoreBatch
from engine.tokenizer import (
    QWEN3_DEFAULT_INSTRUCTION,
    QWEN3_PREFIX,
    QWEN3_SUFFIX,
    ModelTokenizer,
    load_tokenizer,
)
from gateway.admission import Admission
from gateway.cache import ScoreCache
from gateway.metrics import METRICS
from gateway.middleware import REQUEST_STATS
from gateway.settings import Settings

__all__ = ["RerankService", "ScoringPlan"]


@dataclass(frozen=True)
class ScoringPlan:
    """What is sent to the engine: the (possibly truncated) query, one text per chunk, the
    document each chunk belongs to, the engine-side per-document token limit, and the pair window
    the engine truncates to while it tokenises (cross-encoders: one pass, documents cut first)."""

    query: str
    texts: tuple[str, ...]
    owners: tuple[int, ...]
    engine_max_tokens: int | None
    warnings: tuple[str, ...]
    engine_truncate: int | None = None


class RerankService:
    def __init__(
        self, *, client: EngineClient, registry: EngineRegistry, settings: Settings, split_size: int = 1024
    ) -> None:
        self.client = client
        self.registry = registry
        self.settings = settings
        self.split_size = split_size
        self._configured_name = settings.resolved_served_name
        self.admission = Admission(settings.inflight_pairs_per_worker)
        self.cache = ScoreCache(settings.score_cache_size)

    @property
    def served_name(self) -> str:
        """The configured served name, or (external engines) the name the engine reports."""
        if self._configured_name:
            return self._configured_name
        engines = self.registry.engines()
        return next((e.served_model_name for e in engines if e.served_model_name), "unknown")

    @property
    def accepted_names(self) -> set[str]:
        return {self.served_name, *self.settings.model_aliases}

    def check_model(self, name: str | None) -> None:
        """Raises: UnknownModelError in strict mode for a name that is not served."""
        if self.settings.strict_model_names and name is not None and name not in self.accepted_names:
            raise UnknownModelError(name, sorted(self.accepted_names))

    async def score_texts(
        self,
        query: str,
        texts: tuple[str, ...] | list[str],
        *,
        deadline: float,
        max_tokens_per_doc: int | None,
        instruction: str | None,
        raw: bool,
        prompt_tokenizer: ModelTokenizer | None = None,
        truncate_to: int | None = None,
    ) -> tuple[list[float], int]:
        """Raw engine scores aligned with `texts`, and prompt tokens (duplicates scored once;
        cached pairs not at all). With `prompt_tokenizer` the prompts go to the engine as token
        ids (same scores, so the cache does not tell the two apart)."""
        distinct = list(dict.fromkeys(texts))
        cached: dict[str, tuple[float, int]] = {}
        if self.cache.enabled:
            prefix = (self.served_name, query, max_tokens_per_doc, truncate_to, instruction, raw)
            for t in distinct:
                hit = self.cache.get((*prefix, t))
                if hit is not None:
                    cached[t] = hit
            METRICS.cache.labels("hit").inc(len(cached))
            METRICS.cache.labels("miss").inc(len(distinct) - len(cached))
            distinct = [t for t in distinct if t not in cached]
        if not distinct:
            return [cached[t][0] for t in texts], 0
        all_new = not cached and len(distinct) == len(texts)
        parts = [distinct[i : i + self.split_size] for i in range(0, len(distinct), self.split_size)]
        batches: list[ScoreBatch] = await asyncio.gather(
            *(
                self._score_part(
                    query,
                    part,
                    deadline=deadline,
                    max_tokens_per_doc=max_tokens_per_doc,
                    instruction=instruction,
                    raw=raw,
                    prompt_tokenizer=prompt_tokenizer,
                    truncate_to=truncate_to,
                )
                for part in parts
            )
        )
        flat = [s for b in batches for s in b.scores]
        tokens = sum(b.prompt_tokens for b in batches)
        if all_new and not self.cache.enabled:
            return flat, tokens  # no duplicates, nothing cached: already aligned with texts
        fresh = dict(zip(distinct, flat))
        if self.cache.enabled:
            per_pair = tokens // max(1, len(distinct))
            for t, score in fresh.items():
                self.cache.put((*prefix, t), (score, per_pair))
        return [fresh[t] if t in fresh else cached[t][0] for t in texts], tokens

    async def _score_part(
        self,
        query: str,
        documents: list[str],
        *,
        deadline: float,
        max_tokens_per_doc: int | None,
        instruction: str | None,
        raw: bool,
        prompt_tokenizer: ModelTokenizer | None,
        truncate_to: int | None,
    ) -> ScoreBatch:
        if prompt_tokenizer is not None:
            # Off the event loop: tokenising a 1000-document request would stall every other request.
            prompts = await run_in_threadpool(
                prompt_tokenizer.encode_prompts, query, documents, instruction=instruction
            )
            METRICS.engine_requests.labels("classify").inc()
            return await self.client.score_tokens(prompts=prompts, deadline=deadline)
        METRICS.engine_requests.labels("score").inc()
        return await self.client.score(
            query=query,
            documents=documents,
            deadline=deadline,
            max_tokens_per_doc=max_tokens_per_doc,
            instruction=instruction,
            raw=raw,
            truncate_prompt_tokens=truncate_to,
        )

    async def prompt_tokenizer(self, q: RerankQuery, engine: EngineView, plan: ScoringPlan) -> ModelTokenizer | None:
        """The tokenizer to send this request's prompts with as token ids (vLLM /classify), or None
        to send texts (/score).

        Only where the ids are exactly what the engine would build from the texts: an LLM reranker
        whose engine renders our own template with the model's tokenizer (every engine of a service
        shares that configuration, so whichever the client picks agrees). Truncation and chunking
        stay on /score, where the engine cuts each document (`max_tokens_per_doc`), and so do raw
        scores (the two paths were proven equal for the activated probability only)."""
        if (
            self.settings.pretokenize == "off"
            or engine.family != "llm-reranker"
            or engine.prompt_format != "qwen3-reranker"
            or q.raw_scores
            or plan.engine_max_tokens is not None
            or plan.engine_truncate is not None
            or len(plan.texts) != len(q.texts)
        ):
            return None
        return await self.tokenizer(engine)

    async def tokenizer(self, engine: EngineView) -> ModelTokenizer | None:
        model = str(engine.raw.get("model") or "")
        if not model:
            return None
        return await run_in_threadpool(load_tokenizer, model, FAMILIES.get(engine.family, FAMILIES["bi-encoder"]))

    @staticmethod
    def fits_without_tokenizer(q: RerankQuery, engine: EngineView) -> bool:
        """True when byte lengths alone prove every pair fits (a token covers at least one byte),
        so the common short-document request never touches a tokenizer."""
        max_len = engine.max_model_len
        if max_len is None:
            return True
        frame = 8
        if engine.family == "llm-reranker":
            frame = len((QWEN3_PREFIX + QWEN3_SUFFIX + (q.instruction or QWEN3_DEFAULT_INSTRUCTION)).encode()) + 40
        longest = max(len(t.encode()) for t in q.texts)
        if q.max_tokens_per_doc is not None and longest > q.max_tokens_per_doc:
            return False
        query = len(q.query.encode())
        if engine.family == "bi-encoder":
            return max(query, longest) + frame <= max_len
        return query + longest + frame <= max_len

    def plan(self, q: RerankQuery, engine: EngineView, tok: ModelTokenizer | None) -> ScoringPlan:
        """Fit the request into the model: truncate the query (with a warning), then truncate
        documents to their token budget, or split them into chunks (max_chunks_per_doc).

        Raises: CompatError when truncation is off (TEI truncate=false) and an input is too long.
        """
        max_len = engine.max_model_len
        owners = tuple(range(len(q.texts)))
        if max_len is None or tok is None:
            return ScoringPlan(q.query, q.texts, owners, q.max_tokens_per_doc, ())
        warnings: list[str] = []
        overhead = tok.pair_overhead(q.instruction)
        separate = engine.family == "bi-encoder"  # query and document are embedded separately
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
        budget = window = max_len - overhead - qn
        if q.max_tokens_per_doc is not None:
            budget = min(budget, q.max_tokens_per_doc)
        budget = max(1, budget)
        # Cheap exact pre-check: a token covers at least one UTF-8 byte.
        long_idx = [i for i, t in enumerate(q.texts) if len(t.encode()) > budget]
        if not long_idx:
            return ScoringPlan(query, q.texts, owners, None, tuple(warnings))
        chunks = q.max_chunks_per_doc or 1
        if engine.family == "cross-encoder" and chunks == 1 and q.truncate and budget >= window:
            # Only the pair window limits the documents: the engine truncates in the one tokenizer
            # pass it makes anyway (HF longest_first; the query is at most half the window, so only
            # documents are cut, as in sentence-transformers). Tokenizing here to find the long ones
            # costs as much CPU as the engine's own pass (measured on an H100: docs/gpu-performance.md).
            return ScoringPlan(query, q.texts, owners, None, tuple(warnings), engine_truncate=max_len)
        ids_by_doc = dict(zip(long_idx, tok.encode_many([q.texts[i] for i in long_idx])))
        too_long = {i: ids for i, ids in ids_by_doc.items() if len(ids) > budget}
        if not too_long:
            return ScoringPlan(query, q.texts, owners, None, tuple(warnings))
        if not q.truncate:
            i, ids = next(iter(too_long.items()))
            raise CompatError(
                f"Input validation error: document {i} must have less than {budget} tokens. Given: {len(ids)}",
                param=f"documents[{i}]",
                status=413,
            )
        if chunks == 1:
            if engine.family == "llm-reranker":  # vLLM's max_tokens_per_doc: its tokenization (vllm#57666)
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
            ids = too_long.get(i)
            if ids is None:
                texts.append(text)
                own.append(i)
                continue
            for c in range(min(chunks, -(-len(ids) // budget))):
                texts.append(tok.decode(ids[c * budget : (c + 1) * budget]))
                own.append(i)
        return ScoringPlan(query, tuple(texts), tuple(own), budget, tuple(warnings))

    async def rerank(self, q: RerankQuery, *, request_id: str) -> RerankOutcome:
        """Raises: CompatError, EngineError (see engine.client)."""
        self.check_model(q.model)
        if len(q.texts) > self.settings.max_documents:
            raise CompatError(
                f"invalid request: too many documents: {len(q.texts)} > {self.settings.max_documents} allowed",
                param="documents",
            )
        stats = REQUEST_STATS.get()
        if stats is not None:
            stats["documents"] = len(q.texts)
        deadline = time.monotonic() + self.settings.request_timeout
        engine = self.registry.pick()
        if self.fits_without_tokenizer(q, engine):
            # Everything fits: the engine needs no truncation limit (vLLM rejects one >= max_model_len).
            plan = ScoringPlan(q.query, q.texts, tuple(range(len(q.texts))), None, ())
        else:
            tok = await self.tokenizer(engine) if engine.max_model_len else None
            # tokenizing documents is CPU work: off the event loop (fast tokenizers release the GIL)
            plan = await run_in_threadpool(self.plan, q, engine, tok)
        kind = engine.score_kind
        prompt_tokenizer = await self.prompt_tokenizer(q, engine, plan)
        with self.admission.admit(len(plan.texts)):
            chunk_scores, tokens = await self.score_texts(
                plan.query,
                plan.texts,
                deadline=deadline,
                max_tokens_per_doc=plan.engine_max_tokens,
                truncate_to=plan.engine_truncate,
                instruction=q.instruction,
                raw=q.raw_scores,
                prompt_tokenizer=prompt_tokenizer,
            )
        if stats is not None:
            stats["tokens"] = tokens
        if len(plan.texts) == len(q.texts):  # no chunking: one score per document, in order
            raw_scores = chunk_scores
        else:  # a document's score is its best chunk's
            raw_scores = [float("-inf")] * len(q.texts)
            for owner, score in zip(plan.owners, chunk_scores):
                if score > raw_scores[owner]:
                    raw_scores[owner] = score
        rel = relevances(kind, raw_scores, is_logit=q.raw_scores and kind == "probability")
        items = rank(rel, raw_scores=raw_scores if q.raw_scores else None, top_n=q.top_n)
        return RerankOutcome(
            items=items, model=self.served_name, prompt_tokens=tokens, request_id=request_id, warnings=plan.warnings
        )
