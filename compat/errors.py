"""Validation errors raised while parsing a dialect, and the error envelope every client can read.

One body serves every client family (see research: rerank-api-anchors.md §9.6):
Cohere reads `message` (+ `id`), Jina integrations and Voyage read `detail`, OpenAI-style
clients read `error{message,type,param,code}`. TEI clients get TEI's own shape.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ERROR_TYPES", "CompatError", "UnknownModelError", "error_body"]


class CompatError(Exception):
    """A request that no engine call can fix. `param` names the offending field."""

    def __init__(self, message: str, *, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status


class UnknownModelError(CompatError):
    def __init__(self, model: str, served: list[str]) -> None:
        super().__init__(
            f"model '{model}' not found; this server serves: {', '.join(served)}", param="model", status=404
        )


ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "internal_server_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "timeout_error",
}

_TEI_TYPES = {
    400: "Empty",
    401: "Unauthorized",
    413: "Validation",
    422: "Validation",
    429: "Overloaded",
    503: "Unhealthy",
    504: "Backend",
}


def error_body(*, dialect: str, status: int, message: str, request_id: str, param: str | None = None) -> dict[str, Any]:
    """The JSON error body for `dialect` ('tei' or anything else: the superset envelope)."""
    if dialect == "tei":
        return {
            "error": message,
            "error_type": _TEI_TYPES.get(status, "Validation" if status < 500 else "Backend"),
            "message": message,
            "detail": message,
            "id": request_id,
        }
    return {
        "id": request_id,
        "message": message,
        "detail": message,
        "error": {"message": message, "type": ERROR_TYPES.get(status, "error"), "param": param, "code": status},
    }
