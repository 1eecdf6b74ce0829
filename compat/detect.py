"""Which dialect a request body speaks, on the paths that several dialects share.

`/v1/rerank` is shared by Cohere v1, Jina and Voyage. Voyage is the only one that sends
`top_k` (its SDK always sends it, as null when unset) or `truncation`; everything else is the
Cohere v1 / Jina superset. The Voyage SDK drops every header but Authorization and
Content-Type, so the body is the only evidence.

`/rerank` is shared by TEI (`texts`) and the vLLM / Infinity / LiteLLM family (`documents`,
the Cohere v1 / Jina superset).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

__all__ = ["BareDialect", "Dialect", "V1Dialect", "detect_bare_rerank", "detect_v1_rerank", "dialect_of"]

V1Dialect = Literal["voyage", "cohere"]
BareDialect = Literal["tei", "cohere"]


def detect_v1_rerank(body: Mapping[str, Any]) -> V1Dialect:
    """`top_k` or `truncation` present (even as null) → "voyage"; else "cohere" (Cohere v1 / Jina)."""
    if "top_k" in body or "truncation" in body:
        return "voyage"
    return "cohere"


def detect_bare_rerank(body: Mapping[str, Any]) -> BareDialect:
    """`texts` without `documents` → "tei"; else "cohere" (the Cohere v1 / Jina superset)."""
    if "texts" in body and "documents" not in body:
        return "tei"
    return "cohere"


Dialect = Literal["cohere", "voyage", "tei", "openai"]

_OPENAI_PATHS = frozenset({"/score", "/v1/score", "/v1/models", "/models"})


def dialect_of(path: str, body: object) -> Dialect:
    """The dialect of a request, decided once from its path and (parsed JSON) body; every answer to
    it, errors included, is rendered in this dialect. `body` is None when it was not read."""
    if path == "/v1/rerank":
        return detect_v1_rerank(body) if isinstance(body, Mapping) else "cohere"
    if path == "/rerank":
        return detect_bare_rerank(body) if isinstance(body, Mapping) else "cohere"
    if path in _OPENAI_PATHS:
        return "openai"
    return "cohere"
