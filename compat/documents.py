"""Shared request checks: documents (strings or objects), rank_fields, query, top_n."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from compat.errors import CompatError

__all__ = ["MAX_DOCUMENTS", "check_query", "check_top_n", "document_texts"]

MAX_DOCUMENTS = 10_000


def _field_text(value: Any, *, param: str) -> str:
    """A field's text: a string as it is, anything else as JSON.

    Raises: CompatError (400) for a value nested too deep to serialise (the gateway refuses such
    bodies before they get here; this keeps the parser safe on its own)."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    except RecursionError:
        raise CompatError(f"invalid request: {param} is nested too deeply", param=param) from None


def document_texts(
    documents: Sequence[Any],
    *,
    rank_fields: Sequence[str] | None = None,
    max_documents: int = MAX_DOCUMENTS,
    param: str = "documents",
) -> tuple[str, ...]:
    """The text to score for each document.

    Strings are used as they are. Objects use `text`, or with `rank_fields` the listed fields
    in order as `field: value` lines (order matters, as in Cohere v1).

    Raises:
        CompatError: empty list, too many documents, an empty document, or an object without
            the needed fields.
    """
    if len(documents) == 0:
        raise CompatError(f"invalid request: list of {param} must not be empty", param=param)
    if len(documents) > max_documents:
        raise CompatError(f"invalid request: too many {param}: {len(documents)} > {max_documents} allowed", param=param)
    if set(map(type, documents)) == {str} and "" not in documents and not any(map(str.isspace, documents)):
        return tuple(documents)  # plain strings, none empty: the common request, checked in C loops
    out: list[str] = []
    for i, doc in enumerate(documents):
        if isinstance(doc, str):
            text = doc
        elif isinstance(doc, dict):
            if rank_fields:
                missing = [f for f in rank_fields if f not in doc]
                if missing:
                    raise CompatError(
                        f"invalid request: document at index {i} has no field {missing[0]!r} named in rank_fields",
                        param=f"{param}[{i}]",
                    )
                text = "\n".join(f"{f}: {_field_text(doc[f], param=f'{param}[{i}]')}" for f in rank_fields)
            elif "text" in doc:
                text = _field_text(doc["text"], param=f"{param}[{i}]")
            else:
                raise CompatError(
                    f"invalid request: document at index {i} does not have a 'text' field "
                    "(or name its fields with rank_fields)",
                    param=f"{param}[{i}]",
                )
        else:
            raise CompatError(
                f"invalid request: document at index {i} must be a string or an object", param=f"{param}[{i}]"
            )
        if not text or text.isspace():
            raise CompatError(f"invalid request: document at index {i} cannot be empty", param=f"{param}[{i}]")
        out.append(text)
    return tuple(out)


def check_query(query: str, *, param: str = "query") -> str:
    if not query.strip():
        raise CompatError("invalid request: query must not be empty or be only whitespace", param=param)
    return query


def check_top_n(top_n: int | None, *, param: str = "top_n", allow_zero: bool = False) -> int | None:
    """None → all; values above the number of documents are clamped later; < 1 is an error
    (0 means "all" only where a dialect says so)."""
    if top_n is None:
        return None
    if top_n == 0 and allow_zero:
        return None
    if top_n < 1:
        raise CompatError(f"invalid request: {param} must be at least 1, got {top_n}", param=param)
    return top_n


def check_positive(value: int | None, *, param: str) -> int | None:
    if value is not None and value < 1:
        raise CompatError(f"invalid request: {param} must be at least 1, got {value}", param=param)
    return value
