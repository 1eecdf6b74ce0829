"""Several models behind one endpoint: a request's `model` picks the pipeline that scores it.

Each served model has its own `RerankPipeline` (engines, admission limit, score cache,
tokenizer). `ModelRouter.route(name)` picks by name or alias; a name that matches no model
goes to the first model, unless the service is strict (`--strict-model-names`), where it is an
`UnknownModelError` listing the names (404 in the caller's dialect).
"""

from __future__ import annotations

from collections.abc import Sequence

from compat.errors import UnknownModelError
from core.pipeline import RerankPipeline

__all__ = ["ModelRouter"]


class ModelRouter:
    def __init__(self, pipelines: Sequence[RerankPipeline], *, strict: bool = False) -> None:
        if not pipelines:
            raise ValueError("a router needs at least one model")
        self.pipelines = tuple(pipelines)
        self.strict = strict

    @property
    def default(self) -> RerankPipeline:
        return self.pipelines[0]

    def names(self) -> list[str]:
        """Every accepted name (served names, then aliases), each once."""
        return list(dict.fromkeys(n for p in self.pipelines for n in (p.served_name, *p.policy.aliases)))

    def find(self, name: str) -> RerankPipeline | None:
        """The model served under `name` (or an alias), or None."""
        for p in self.pipelines:
            if name == p.served_name or name in p.policy.aliases:
                return p
        return None

    def route(self, name: str | None) -> RerankPipeline:
        """The pipeline for a request's `model` (None: the request named none).

        Raises: UnknownModelError in strict mode for a name no model is served under."""
        if name is None:
            return self.default
        found = self.find(name)
        if found is not None:
            return found
        if self.strict:
            raise UnknownModelError(name, sorted(self.names()))
        return self.default
