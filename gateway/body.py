"""Read and validate a JSON body against a dialect's wire model (orjson, then pydantic)."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from fastapi import Request
from pydantic import BaseModel

from compat.errors import CompatError

__all__ = ["read_json", "validate"]

M = TypeVar("M", bound=BaseModel)


async def read_json(request: Request) -> dict[str, Any]:
    """Raises: CompatError (400) for a body that is not a JSON object."""
    raw = await request.body()
    if not raw.strip():
        raise CompatError("invalid request: the body is empty; send a JSON object", param="body")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CompatError(f"invalid request: the body is not valid JSON ({exc})", param="body") from None
    if not isinstance(data, dict):
        raise CompatError("invalid request: the body must be a JSON object", param="body")
    return data


def validate(model: type[M], data: dict[str, Any]) -> M:
    """Raises: pydantic.ValidationError (rendered as 422 naming the field)."""
    return model.model_validate(data)
