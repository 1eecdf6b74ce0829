"""The bridge: RerankQuery → engine calls → RerankOutcome.

Identical documents are scored once; very long lists are split into concurrent engine calls
(which the registry may spread over several engines) and merged back in order.
"""

from __future__ import annotations

import asyncio
import time

from compat.errors import CompatError, UnknownModelError
from compat.model import RerankOutcome, RerankQuery
from compat.ranking import rank, relevance
from engine import EngineClient, EngineRegistry, ScoreBatch
from gateway.settings import Settings

__all__ = ["RerankService"]


class RerankService:
    def __init__(self, *, client: EngineClient, registry: EngineRegistry, settings: Settings,
                 split_size: int = 1024) -> None:
        self.client = client
        self.registry = registry
        self.settings = settings
        self.split_size = split_size
        self.served_name = settings.resolved_served_name
        self.accepted_names = {self.served_name, *settings.model_aliases}

    def check_model(self, name: str | None) -> None:
        """Raises: UnknownModelError in strict mode for a name that is not served."""
        if self.settings.strict_model_names and name is not None and name not in self.accepted_names:
            raise UnknownModelError(name, sorted(self.accepted_names))

    def score_kind(self) -> str:
        engines = self.registry.engines()
        return engines[0].score_kind if engines else "cosine"

    async def score_texts(
        self, query: str, texts: tuple[str, ...] | list[str], *, deadline: float, max_tokens_per_doc: int | None,
        instruction: str | None, raw: bool,
    ) -> tuple[list[float], int]:
        """Raw engine scores aligned with `texts`, and prompt tokens (duplicates scored once)."""
        unique: dict[str, int] = {}
        for t in texts:
            unique.setdefault(t, len(unique))
        distinct = list(unique)
        parts = [distinct[i : i + self.split_size] for i in range(0, len(distinct), self.split_size)]
        batches: list[ScoreBatch] = await asyncio.gather(
            *(
                self.client.score(query=query, documents=part, deadline=deadline,
                                  max_tokens_per_doc=max_tokens_per_doc, instruction=instruction, raw=raw)
                for part in parts
            )
        )
        flat = [s for b in batches for s in b.scores]
        return [flat[unique[t]] for t in texts], sum(b.prompt_tokens for b in batches)

    async def rerank(self, q: RerankQuery, *, request_id: str) -> RerankOutcome:
        """Raises: CompatError, EngineError (see engine.client)."""
        self.check_model(q.model)
        if q.max_tokens_per_doc is not None and q.max_tokens_per_doc < 1:
            raise CompatError("max_tokens_per_doc must be at least 1", param="max_tokens_per_doc")
        deadline = time.monotonic() + self.settings.request_timeout
        kind = self.score_kind()
        raw_from_engine, tokens = await self.score_texts(
            q.query, q.texts, deadline=deadline, max_tokens_per_doc=q.max_tokens_per_doc,
            instruction=q.instruction, raw=q.raw_scores,
        )
        is_logit = q.raw_scores and kind == "probability"
        rel = [relevance(kind, s, is_logit=is_logit) for s in raw_from_engine]
        items = rank(rel, raw_scores=raw_from_engine if q.raw_scores else None, top_n=q.top_n)
        return RerankOutcome(items=items, model=self.served_name, prompt_tokens=tokens, request_id=request_id)
