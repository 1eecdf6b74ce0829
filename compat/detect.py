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

__all__ = ["detect_v1_rerank", "detect_bare_rerank", "V1Dialect", "BareDialect"]

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
