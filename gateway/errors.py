"""Exception → HTTP status → the caller's dialect envelope. The one status table of the service.

| status | when |
| 400 | CompatError, EngineRejectedError (the engine's message), body not JSON |
| 404 | UnknownModelError (strict model names) |
| 422 | the body does not match the dialect's schema (wrong types, missing fields) |
| 429 | OverloadedError: this service's in-flight pair limit, with Retry-After |
| 503 | EngineUnavailableError / EngineOverloadedError, with Retry-After |
| 504 | EngineTimeoutError |
| 502 | EngineProtocolError |
| 500 | anything else: generic message + request id; traceback only in the log |
"""

from __future__ import annotations

import logging
import math

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from compat.errors import CompatError, error_body
from gateway.admission import OverloadedError
from engine import (
    EngineError,
    EngineProtocolError,
    EngineRejectedError,
    EngineTimeoutError,
    EngineUnavailableError,
)

__all__ = ["register_error_handlers", "error_response", "validation_message"]

log = logging.getLogger("vllm_rerank.gateway")


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "") or "")


def _dialect(request: Request) -> str:
    return str(getattr(request.state, "dialect", "cohere"))


def error_response(
    request: Request, status: int, message: str, *, param: str | None = None, retry_after: float | None = None
) -> Response:
    body = error_body(
        dialect=_dialect(request), status=status, message=message, request_id=_request_id(request), param=param
    )
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    request.state.error = message
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def validation_message(exc: ValidationError | RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request body", None
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"invalid request: {param or 'body'}: {first.get('msg', 'invalid')}{more}", param


def register_error_handlers(app: FastAPI) -> None:
    """Specific handlers first; `Exception` last (it must never leak details)."""

    async def compat_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, CompatError)
        return error_response(request, exc.status, exc.message, param=exc.param)

    async def pydantic_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, (ValidationError, RequestValidationError))
        message, param = validation_message(exc)
        return error_response(request, 422, message, param=param)

    async def engine_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, EngineError)
        if isinstance(exc, EngineUnavailableError):
            return error_response(request, 503, f"service unavailable: {exc.message}", retry_after=exc.retry_after)
        if isinstance(exc, EngineTimeoutError):
            return error_response(request, 504, exc.message)
        if isinstance(exc, EngineRejectedError):
            return error_response(request, 400, f"invalid request: {exc.message}", param=exc.param)
        if isinstance(exc, EngineProtocolError):
            log.error("engine_protocol_error request_id=%s %s", _request_id(request), exc.message)
            return error_response(request, 502, "the engine returned an unreadable answer")
        return error_response(request, 503, f"service unavailable: {exc.message}", retry_after=2)

    async def overloaded(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, OverloadedError)
        return error_response(request, 429, exc.message, retry_after=exc.retry_after)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return error_response(request, exc.status_code, str(exc.detail))

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled_error request_id=%s", _request_id(request))
        return error_response(request, 500, f"internal error (request id {_request_id(request)})")

    app.add_exception_handler(CompatError, compat_error)
    app.add_exception_handler(RequestValidationError, pydantic_error)
    app.add_exception_handler(ValidationError, pydantic_error)
    app.add_exception_handler(EngineError, engine_error)
    app.add_exception_handler(OverloadedError, overloaded)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
