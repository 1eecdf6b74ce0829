"""What the pipeline needs from the layer below, as protocols (`engine` provides all three)."""

from __future__ import annotations

from typing import Protocol

from engine.client import ScoreBatch
from engine.families import ModelFamily
from engine.snapshot import EngineSnapshot
from engine.tokenizer import ModelTokenizer

__all__ = ["EngineDirectory", "EngineDoor", "TokenizerSource"]


class EngineDoor(Protocol):
    """Scores on whichever ready engine the door picks (`engine.EngineClient`).

    Raises (both calls): EngineError subclasses (see engine.errors)."""

    async def score(
        self,
        *,
        query: str,
        documents: list[str],
        deadline: float,
        max_tokens_per_doc: int | None = None,
        instruction: str | None = None,
        truncate_prompt_tokens: int | None = None,
    ) -> ScoreBatch: ...

    async def score_tokens(self, *, prompts: list[list[int]], deadline: float) -> ScoreBatch: ...


class EngineDirectory(Protocol):
    """The engines and their snapshots (`engine.EngineRegistry`)."""

    def engines(self) -> tuple[EngineSnapshot, ...]: ...

    def pick(self, *, exclude: frozenset[str] = ...) -> EngineSnapshot: ...


class TokenizerSource(Protocol):
    """The model's tokenizer: `loaded` is a lookup (None: not loaded yet), `load` may block on disk."""

    def loaded(self, model: str, family: ModelFamily) -> ModelTokenizer | None: ...

    def load(self, model: str, family: ModelFamily) -> ModelTokenizer | None: ...
