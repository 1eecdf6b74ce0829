"""The request pipeline: model check → limits → plan → admission → scoring → ranking.

`RerankPipeline.rerank` is the whole life of one rerank request below the HTTP layer;
`rerank_many` the same for several queries in one request (vLLM /score N:N), under one set of
limits, one deadline and one admission ticket (`rerank` is its one-query case). It is
told what to do by a `PipelinePolicy` (values, not the settings object) and reaches engines,
tokenizers and the layer above only through protocols (core.ports, core.observer).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import anyio.to_thread

from compat.errors import CompatError, UnknownModelError
from compat.model import RerankOutcome, RerankQuery
from core.admission import Admission
from core.cache import ScoreCache
from core.observer import NULL_OBSERVER, RequestObserver
from core.plan import ScoringPlan, admission_units, fits_without_tokenizer, plan_request, precut, unchanged
from core.ports import EngineDirectory, EngineDoor, TokenizerSource
from core.ranking import rank, relevances
from core.scoring import ScoreJob, Scorer
from engine.errors import EngineUnavailableError
from engine.snapshot import EngineSnapshot
from engine.tokenizer import ModelTokenizer

__all__ = ["GROUP_CONCURRENCY", "PipelinePolicy", "RerankPipeline"]

# The queries of one `rerank_many` request (vLLM /score N:N) scored at once.
GROUP_CONCURRENCY = 8

_T = TypeVar("_T")


@dataclass(frozen=True)
class PipelinePolicy:
    """served_name: the configured name ("" = learn it from an external engine's /v1/models).
    pretokenize: send LLM-reranker prompts as token ids where that is exact (--pretokenize auto)."""

    served_name: str
    aliases: tuple[str, ...] = ()
    strict_model_names: bool = False
    max_documents: int = 10_000
    request_timeout: float = 120.0
    pretokenize: bool = True
    instruction: str | None = None  # the model's default instruction (LLM rerankers), when a request has none


class RerankPipeline:
    def __init__(
        self,
        *,
        door: EngineDoor,
        engines: EngineDirectory,
        tokenizers: TokenizerSource,
        policy: PipelinePolicy,
        admission: Admission,
        cache: ScoreCache,
        split_size: int = 1024,
    ) -> None:
        self.engines = engines
        self.tokenizers = tokenizers
        self.policy = policy
        self.admission = admission
        self.cache = cache
        self.scorer = Scorer(door, cache, split_size=split_size)

    # ------------------------------------------------------------------ model names
    @property
    def served_name(self) -> str:
        """The configured served name, or (external engines) the name the engine reports."""
        if self.policy.served_name:
            return self.policy.served_name
        return next((e.served_model_name for e in self.engines.engines() if e.served_model_name), "unknown")

    @property
    def accepted_names(self) -> set[str]:
        return {self.served_name, *self.policy.aliases}

    def check_model(self, name: str | None) -> None:
        """Raises: UnknownModelError in strict mode for a name that is not served."""
        if self.policy.strict_model_names and name is not None and name not in self.accepted_names:
            raise UnknownModelError(name, sorted(self.accepted_names))

    def _instruction(self, q: RerankQuery) -> str | None:
        return q.instruction if q.instruction is not None else self.policy.instruction

    # ------------------------------------------------------------------ tokenizers
    async def tokenizer(self, engine: EngineSnapshot) -> ModelTokenizer | None:
        """The engine's model tokenizer; loaded off the event loop the first time only."""
        if not engine.model:
            return None
        tok = self.tokenizers.loaded(engine.model, engine.family)
        if tok is not None:
            return tok
        return await anyio.to_thread.run_sync(self.tokenizers.load, engine.model, engine.family)

    async def _prompt_tokenizer(
        self, q: RerankQuery, engine: EngineSnapshot, plan: ScoringPlan
    ) -> ModelTokenizer | None:
        """The tokenizer to send this request's prompts with as token ids (vLLM /classify), or None
        to send texts (/score).

        Only where the ids are exactly what the engine would build from the texts: an LLM reranker
        whose engine renders our own template with the model's tokenizer (every engine of a service
        shares that configuration, so whichever the door picks agrees). Truncation and chunking
        stay on /score, where the engine cuts each document (`max_tokens_per_doc`)."""
        if (
            not self.policy.pretokenize
            or engine.family.name != "llm-reranker"
            or engine.prompt_format != "qwen3-reranker"
            or plan.engine_max_tokens is not None
            or plan.engine_truncate is not None
            or len(plan.texts) != len(q.texts)
        ):
            return None
        return await self.tokenizer(engine)

    async def _ids_only_job(
        self, q: RerankQuery, engine: EngineSnapshot, observer: RequestObserver
    ) -> tuple[ScoringPlan, ScoreJob]:
        """A format whose official prompt only token ids reproduce (engine.prompts): the gateway builds
        them, with the official truncation, whatever --pretokenize says; a caller's max_tokens_per_doc
        cuts each document's own tokens first.

        Raises: CompatError (400) for chunking, which these formats' official code has no notion of;
        EngineUnavailableError when the model's tokenizer cannot be loaded."""
        fmt = engine.model_format
        if q.max_chunks_per_doc and q.max_chunks_per_doc > 1:
            raise CompatError(
                f"invalid request: max_chunks_per_doc is not supported for {fmt.name} models",
                param="max_chunks_per_doc",
            )
        tok = await self.tokenizer(engine)
        if tok is None:
            raise EngineUnavailableError(f"the tokenizer of {engine.model} is not available", retry_after=30)
        texts = q.texts
        if q.max_tokens_per_doc is not None:
            limit = q.max_tokens_per_doc

            def cut() -> tuple[str, ...]:
                return tuple(tok.truncate(t, limit) if len(t.encode()) > limit else t for t in texts)

            with observer.span("tokenize"):
                texts = await anyio.to_thread.run_sync(cut)
        plan = ScoringPlan(q.query, texts, tuple(range(len(texts))), None, ())
        job = ScoreJob(
            query=q.query,
            instruction=self._instruction(q),
            prompt_tokenizer=tok,
            prompt=engine.prompt_format or fmt.prompt or "",
            window=engine.max_model_len,
            refuse_cut=not q.truncate,
        )
        return plan, job

    async def _plan(self, q: RerankQuery, engine: EngineSnapshot, observer: RequestObserver) -> ScoringPlan:
        window = engine.window
        loaded = self.tokenizers.loaded(engine.model, engine.family) if engine.model else None
        limit = loaded.model_max_length if loaded is not None else None
        if window.family.name == "cross-encoder" and limit and window.max_model_len and limit < window.max_model_len:
            # sentence-transformers cuts a pair to the tokenizer's limit; vLLM's window can be larger
            # (XLM-R: 514 positions, 512 usable tokens).
            window = window.model_copy(update={"max_model_len": limit})
        if fits_without_tokenizer(q, window):
            # Everything fits: the engine needs no truncation limit (vLLM rejects one >= max_model_len).
            return unchanged(q)
        tok = await self.tokenizer(engine) if window.max_model_len else None
        # tokenizing documents is CPU work: off the event loop (fast tokenizers release the GIL)
        with observer.span("tokenize"):
            return await anyio.to_thread.run_sync(plan_request, q, window, tok)

    # ------------------------------------------------------------------ the request
    async def rerank(
        self, q: RerankQuery, *, request_id: str, observer: RequestObserver = NULL_OBSERVER
    ) -> RerankOutcome:
        """One query against its documents: `rerank_many` of one.

        Raises: CompatError, OverloadedError, EngineError (see engine.errors)."""
        (outcome,) = await self.rerank_many((q,), request_id=request_id, observer=observer)
        return outcome

    async def rerank_many(
        self, queries: Sequence[RerankQuery], *, request_id: str, observer: RequestObserver = NULL_OBSERVER
    ) -> list[RerankOutcome]:
        """Several queries (each against its own documents) as ONE request: the limits count the
        pairs of all of them (at most `max_documents`), one deadline (`request_timeout`) and one
        admission ticket cover them all, and at most GROUP_CONCURRENCY are scored at once. The first
        failure fails the request and cancels the rest. `outcomes[i]` answers `queries[i]`.

        Raises: CompatError, OverloadedError, EngineError (see engine.errors)."""
        if not queries:
            return []
        for name in dict.fromkeys(q.model for q in queries):
            self.check_model(name)
        pairs = sum(len(q.texts) for q in queries)
        if pairs > self.policy.max_documents:
            noun = "documents" if len(queries) == 1 else "pairs"
            raise CompatError(
                f"invalid request: too many {noun}: {pairs} > {self.policy.max_documents} allowed",
                param="documents",
            )
        observer.model(self.served_name)
        observer.documents(pairs)
        deadline = time.monotonic() + self.policy.request_timeout
        engine = self.engines.pick()
        with observer.span("plan"):
            prepared = await _all([partial(self._prepare, q, engine, observer) for q in queries])
        model = self.served_name
        with self.admission.admit(sum(admission_units(plan.query, plan.texts) for plan, _ in prepared)):
            scored = await _all(
                [
                    partial(self.scorer.score, job, plan.texts, model=model, deadline=deadline, observer=observer)
                    for plan, job in prepared
                ]
            )
        observer.tokens(sum(tokens for _, tokens in scored))
        return [
            self._outcome(q, engine, plan, chunk_scores, tokens, model=model, request_id=request_id)
            for q, (plan, _), (chunk_scores, tokens) in zip(queries, prepared, scored, strict=True)
        ]

    async def _prepare(
        self, q: RerankQuery, engine: EngineSnapshot, observer: RequestObserver
    ) -> tuple[ScoringPlan, ScoreJob]:
        """What to send for one query: its plan (truncation, chunks) and how to score it."""
        q = precut(q, engine.max_model_len)
        if engine.model_format.ids_only:
            return await self._ids_only_job(q, engine, observer)
        plan = await self._plan(q, engine, observer)
        job = ScoreJob(
            query=plan.query,
            instruction=self._instruction(q),
            max_tokens_per_doc=plan.engine_max_tokens,
            truncate_to=plan.engine_truncate,
            prompt_tokenizer=await self._prompt_tokenizer(q, engine, plan),
        )
        return plan, job

    @staticmethod
    def _outcome(
        q: RerankQuery,
        engine: EngineSnapshot,
        plan: ScoringPlan,
        chunk_scores: list[float],
        tokens: int,
        *,
        model: str,
        request_id: str,
    ) -> RerankOutcome:
        if len(plan.texts) == len(q.texts):  # no chunking: one score per document, in order
            raw_scores = chunk_scores
        else:  # a document's score is its best chunk's
            raw_scores = [float("-inf")] * len(q.texts)
            for owner, score in zip(plan.owners, chunk_scores, strict=True):
                raw_scores[owner] = max(raw_scores[owner], score)
        rel = relevances(engine.score_kind, raw_scores, offset=engine.logit_offset)
        items = rank(rel, raw_scores=raw_scores if q.raw_scores else None, top_n=q.top_n)
        return RerankOutcome(
            items=items, model=model, prompt_tokens=tokens, request_id=request_id, warnings=plan.warnings
        )


async def _all(calls: Sequence[Callable[[], Awaitable[_T]]], limit: int = GROUP_CONCURRENCY) -> list[_T]:
    """Every call's result, in order, with at most `limit` running at once. The first failure is
    raised once the others are cancelled and finished (nothing keeps running behind the answer)."""
    if len(calls) <= 1:  # the rerank routes: no tasks
        return [await call() for call in calls]
    gate = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[_T]]) -> _T:
        async with gate:
            return await call()

    tasks = [asyncio.ensure_future(one(call)) for call in calls]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()  # no-op for the finished ones; on our own cancellation, stops them all
    await asyncio.wait(tasks)
    errors = [(t in done, exc) for t in tasks if not t.cancelled() and (exc := t.exception()) is not None]
    if errors:  # the first to fail (not one raised while being cancelled), else any
        raise next((exc for first, exc in errors if first), errors[0][1])
    return [t.result() for t in tasks]
