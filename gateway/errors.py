"""The one error table of the service: exception kind → HTTP status (+ Retry-After) → the caller's
dialect envelope. The middleware (auth, body limits, unreadable JSON) and the exception handlers
(everything raised below the routes) both render through `render_error`.

| kind | status |
| CompatError (UnknownModelError: 404; too long with truncation off: 413) | its own, 400 by default |
| pydantic ValidationError (the body does not fit the dialect's schema) | 422 |
| UnauthorizedError | 401 + WWW-Authenticate |
| BodyTooLargeError | 413 |
| OverloadedError (this service's in-flight limit) | 429 + Retry-After |
| EngineUnavailableError, EngineOverloadedError | 503 + Retry-After |
| EngineTimeoutError | 504 |
| EngineRejectedError (the engine's own 4xx) | 413 and 422 as the engine said, else 400 |
| EngineProtocolError | 502 |
| any other EngineError | 503 + Retry-After 2 |
| starlette HTTPException (404 unknown path, 405 method) | its own |
| anything else | 500: a generic message and the request id; the traceback only in the log |

The body is the dialect's envelope: TEI's `{error, error_type}`, Pinecone's `{error: {code,
message}, status}` (compat.pinecone), else the superset every other client reads (Cohere
`message`, Jina / Voyage / NVIDIA NIM `detail`, OpenAI / Infinity `error{}`; Mixedbread publishes
no error schema and its SDK keeps any JSON body).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from compat import pinecone
from compat.errors import CompatError, error_body
from core import OverloadedError
from engine import (
    EngineError,
    EngineProtocolError,
    EngineRejectedError,
    EngineTimeoutError,
    EngineUnavailableError,
)

__all__ = [
    "ERRORS",
    "BodyTooLargeError",
    "ErrorKind",
    "RenderedError",
    "UnauthorizedError",
    "register_error_handlers",
    "render_error",
    "validation_message",
]

log = logging.getLogger("vllm_rerank.gateway")


class UnauthorizedError(Exception):
    """No bearer key, or one that is not accepted."""


class BodyTooLargeError(Exception):
    """The request body is larger than --max-body-bytes."""


def validation_message(exc: ValidationError | RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request body", None
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"invalid request: {param or 'body'}: {first.get('msg', 'invalid')}{more}", param


def _validation(exc: Any) -> tuple[str, str | None]:
    return validation_message(exc)


def _rejected_status(exc: Any) -> int:
    return exc.status if exc.status in (413, 422) else 400


@dataclass(frozen=True)
class ErrorKind:
    """status: a number, or read from the exception. message: (text, param) for the body.
    retry_after: seconds for Retry-After, or None for no header."""

    status: int | Callable[[Any], int]
    message: Callable[[Any], tuple[str, str | None]] = lambda e: (str(e), None)
    retry_after: Callable[[Any], float | None] = lambda e: None
    headers: tuple[tuple[str, str], ...] = ()
    log_error: bool = False


ERRORS: dict[type[BaseException], ErrorKind] = {
    CompatError: ErrorKind(lambda e: e.status, lambda e: (e.message, e.param)),
    ValidationError: ErrorKind(422, _validation),
    RequestValidationError: ErrorKind(422, _validation),
    UnauthorizedError: ErrorKind(401, headers=(("WWW-Authenticate", "Bearer"),)),
    BodyTooLargeError: ErrorKind(413),
    OverloadedError: ErrorKind(429, lambda e: (e.message, None), lambda e: e.retry_after),
    EngineUnavailableError: ErrorKind(
        503, lambda e: (f"service unavailable: {e.message}", None), lambda e: e.retry_after
    ),
    EngineTimeoutError: ErrorKind(504, lambda e: (e.message, None)),
    EngineRejectedError: ErrorKind(_rejected_status, lambda e: (f"invalid request: {e.message}", e.param)),
    EngineProtocolError: ErrorKind(502, lambda e: ("the engine returned an unreadable answer", None), log_error=True),
    EngineError: ErrorKind(503, lambda e: (f"service unavailable: {e.message}", None), lambda e: 2.0),
    StarletteHTTPException: ErrorKind(lambda e: e.status_code, lambda e: (str(e.detail), None)),
}
_UNEXPECTED = ErrorKind(500, log_error=True)


def kind_of(exc: BaseException) -> ErrorKind:
    """The table's entry for the exception's most specific class."""
    for cls in type(exc).__mro__:
        kind = ERRORS.get(cls)
        if kind is not None:
            return kind
    return _UNEXPECTED


@dataclass(frozen=True)
class RenderedError:
    status: int
    message: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


def render_error(exc: BaseException, *, dialect: str, request_id: str) -> RenderedError:
    kind = kind_of(exc)
    status = kind.status if isinstance(kind.status, int) else kind.status(exc)
    if kind is _UNEXPECTED:
        log.error("unhandled_error request_id=%s", request_id, exc_info=exc)
        message, param = f"internal error (request id {request_id})", None
    else:
        message, param = kind.message(exc)
        if kind.log_error:
            log.error("%s request_id=%s %s", type(exc).__name__, request_id, exc)
    headers = list(kind.headers)
    retry = kind.retry_after(exc)
    if retry is not None:
        headers.append(("Retry-After", str(max(1, math.ceil(retry)))))
    if dialect == "pinecone":
        body = pinecone.error_body(status=status, message=message, request_id=request_id, param=param)
    else:
        body = error_body(dialect=dialect, status=status, message=message, request_id=request_id, param=param)
    return RenderedError(status, message, tuple(headers), orjson.dumps(body))


def register_error_handlers(app: FastAPI) -> None:
    """One handler: every exception goes through the table, in the dialect the middleware decided."""

    async def handle(request: Request, exc: Exception) -> Response:
        state = request.state
        err = render_error(
            exc, dialect=str(getattr(state, "dialect", "cohere")), request_id=str(getattr(state, "request_id", ""))
        )
        state.error = err.message
        return Response(err.body, status_code=err.status, media_type="application/json", headers=dict(err.headers))

    for cls in (*ERRORS, Exception):
        app.add_exception_handler(cls, handle)
