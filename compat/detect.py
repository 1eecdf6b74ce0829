"""Which dialect a request speaks: decided once per request, from its path, body and headers.

`/v1/rerank` is shared by Cohere v1, Jina and Voyage. Voyage is the only one that sends
`top_k` (its SDK always sends it, as null when unset) or `truncation`; everything else is the
Cohere v1 / Jina superset. The Voyage SDK drops every header but Authorization and
Content-Type, so the body is the only evidence.

`/rerank` is shared by TEI (`texts`), Pinecone and the vLLM / Infinity / LiteLLM family
(`documents`, the Cohere v1 / Jina superset). Pinecone is told apart by its API version header:
the spec marks `X-Pinecone-Api-Version` required on every call, and the Pinecone SDK always
sends it (with `Api-Key`, which the gateway accepts as the key for this dialect). A body with a
`parameters` object (Pinecone's model parameters, e.g. `{"truncate": "END"}`; no other /rerank
client has that field) is Pinecone too, for hand-written calls without the header.

LiteLLM's `infinity` and `hosted_vllm` providers send byte-identical requests to `/rerank`
(same path, headers and body, checked for LiteLLM 1.109.1 and 1.110.2), yet parse the answer
differently: `infinity` needs `document` as a plain string (Infinity's shape), `hosted_vllm` an
object (vLLM's). Nothing on the wire tells them apart, so Infinity clients get their own prefix:
`/infinity/rerank` (LiteLLM: `api_base=".../infinity"`). The other vendors' paths are their own:
NVIDIA NIM `/v1/ranking`, Mixedbread `/v1/reranking` (VENDOR_PATHS).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

__all__ = [
    "PINECONE_VERSION_HEADER",
    "VENDOR_PATHS",
    "BareDialect",
    "Dialect",
    "V1Dialect",
    "detect_bare_rerank",
    "detect_v1_rerank",
    "dialect_of",
]

V1Dialect = Literal["voyage", "cohere"]
BareDialect = Literal["tei", "pinecone", "cohere"]
Dialect = Literal["cohere", "voyage", "tei", "openai", "nim", "mixedbread", "pinecone", "infinity"]

# Lower case, as the middleware keys request headers.
PINECONE_VERSION_HEADER = "x-pinecone-api-version"

# Paths that only one dialect uses.
VENDOR_PATHS: Mapping[str, Dialect] = {
    "/v1/ranking": "nim",
    "/v1/reranking": "mixedbread",
    "/infinity/rerank": "infinity",
}


def detect_v1_rerank(body: Mapping[str, Any]) -> V1Dialect:
    """`top_k` or `truncation` present (even as null) → "voyage"; else "cohere" (Cohere v1 / Jina)."""
    if "top_k" in body or "truncation" in body:
        return "voyage"
    return "cohere"


def detect_bare_rerank(body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> BareDialect:
    """The Pinecone version header, or a `parameters` object → "pinecone"; `texts` without
    `documents` → "tei"; else "cohere" (the Cohere v1 / Jina superset)."""
    if headers is not None and PINECONE_VERSION_HEADER in headers:
        return "pinecone"
    if "texts" in body and "documents" not in body:
        return "tei"
    if isinstance(body.get("parameters"), Mapping):
        return "pinecone"
    return "cohere"


_OPENAI_PATHS = frozenset({"/score", "/v1/score", "/v1/models", "/models"})


def dialect_of(path: str, body: object, headers: Mapping[str, str] | None = None) -> Dialect:
    """The dialect of a request, decided once from its path, (parsed JSON) body and (lower-cased)
    headers; every answer to it, errors included, is rendered in this dialect. `body` is None when
    it was not read (yet)."""
    if path == "/v1/rerank":
        return detect_v1_rerank(body) if isinstance(body, Mapping) else "cohere"
    if path == "/rerank":
        return detect_bare_rerank(body if isinstance(body, Mapping) else {}, headers)
    vendor = VENDOR_PATHS.get(path)
    if vendor is not None:
        return vendor
    if path in _OPENAI_PATHS:
        return "openai"
    return "cohere"
