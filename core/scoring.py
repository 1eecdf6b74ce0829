"""Score texts against a query through the engine door: identical texts once, cached pairs not at
all, long lists split into concurrent engine calls (which the door may spread over engines) and
merged back in order."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import anyio.to_thread

from compat.errors import CompatError
from core.cache import ScoreCache
from core.observer import RequestObserver
from core.ports import EngineDoor
from engine.client import ScoreBatch
from engine.tokenizer import ModelTokenizer

__all__ = ["ScoreJob", "Scorer"]


@dataclass(frozen=True)
class ScoreJob:
    """How one request's texts are scored. With `prompt_tokenizer` the prompts go to the engine as
    token ids (vLLM /classify) of the `prompt` format, built within `window` tokens; `refuse_cut`:
    a prompt the format's official budgets would cut is an error (truncation off). Both paths give
    the same scores, so the cache does not tell them apart."""

    query: str
    instruction: str | None
    max_tokens_per_doc: int | None = None
    truncate_to: int | None = None
    prompt_tokenizer: ModelTokenizer | None = None
    prompt: str = "qwen3-reranker"
    window: int | None = None
    refuse_cut: bool = False

    def cache_key(self, model: str) -> tuple[Hashable, ...]:
        return (model, self.query, self.max_tokens_per_doc, self.truncate_to, self.instruction)


class Scorer:
    def __init__(self, door: EngineDoor, cache: ScoreCache, *, split_size: int = 1024) -> None:
        self.door = door
        self.cache = cache
        self.split_size = split_size

    async def score(
        self, job: ScoreJob, texts: Sequence[str], *, model: str, deadline: float, observer: RequestObserver
    ) -> tuple[list[float], int]:
        """Raw engine scores aligned with `texts`, and the prompt tokens the engine counted.

        Raises: EngineError subclasses (see engine.errors)."""
        distinct = list(dict.fromkeys(texts))
        cached: dict[str, tuple[float, int]] = {}
        prefix = job.cache_key(model)
        if self.cache.enabled:
            for t in distinct:
                hit = self.cache.get((*prefix, t))
                if hit is not None:
                    cached[t] = hit
            observer.cache(len(cached), len(distinct) - len(cached))
            distinct = [t for t in distinct if t not in cached]
        if not distinct:
            return [cached[t][0] for t in texts], 0
        all_new = not cached and len(distinct) == len(texts)
        parts = [distinct[i : i + self.split_size] for i in range(0, len(distinct), self.split_size)]
        batches: list[ScoreBatch]
        if len(parts) == 1:  # no task for the common case
            batches = [await self._score_part(job, parts[0], deadline=deadline, observer=observer)]
        else:
            batches = await asyncio.gather(
                *(self._score_part(job, part, deadline=deadline, observer=observer) for part in parts)
            )
        flat = batches[0].scores if len(batches) == 1 else [s for b in batches for s in b.scores]
        tokens = sum(b.prompt_tokens for b in batches)
        if all_new and not self.cache.enabled:
            return flat, tokens  # no duplicates, nothing cached: already aligned with texts
        fresh = dict(zip(distinct, flat, strict=True))
        if self.cache.enabled:
            per_pair = tokens // max(1, len(distinct))
            for t, score in fresh.items():
                self.cache.put((*prefix, t), (score, per_pair))
        return [fresh[t] if t in fresh else cached[t][0] for t in texts], tokens

    async def _score_part(
        self, job: ScoreJob, documents: list[str], *, deadline: float, observer: RequestObserver
    ) -> ScoreBatch:
        tok = job.prompt_tokenizer
        if tok is not None:
            # Off the event loop: tokenising a 1000-document request would stall every other request.
            def encode() -> list[list[int]]:
                built = tok.build_prompts(
                    job.query, documents, instruction=job.instruction, prompt=job.prompt, window=job.window
                )
                if job.refuse_cut and any(p.truncated for p in built):
                    i = next(i for i, p in enumerate(built) if p.truncated)
                    raise CompatError(
                        f"Input validation error: the query or document {i} is longer than the model's "
                        f"{job.prompt} budget allows",
                        param="documents",
                        status=413,
                    )
                return [p.ids for p in built]

            with observer.span("tokenize"):
                prompts = await anyio.to_thread.run_sync(encode)
            observer.engine_call("classify")
            with observer.span("engine_call"):
                return await self.door.score_tokens(prompts=prompts, deadline=deadline)
        observer.engine_call("score")
        with observer.span("engine_call"):
            return await self.door.score(
                query=job.query,
                documents=documents,
                deadline=deadline,
                max_tokens_per_doc=job.max_tokens_per_doc,
                instruction=job.instruction,
                truncate_prompt_tokens=job.truncate_to,
            )
