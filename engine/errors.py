"""Errors raised by the engine layer.

EngineError
├── EngineStartError          the engine process could not be started (cause in one line)
├── EngineUnavailableError    no ready engine (starting, restarting, failed, connect refused)
│   └── EngineOverloadedError the engine said it is saturated (queue limits)
├── EngineTimeoutError        the engine did not answer within the deadline
├── EngineRejectedError       the engine refused the request as invalid (4xx; not retried)
└── EngineProtocolError       the engine answered something we cannot read
"""

from __future__ import annotations

__all__ = [
    "EngineError",
    "EngineOverloadedError",
    "EngineProtocolError",
    "EngineRejectedError",
    "EngineStartError",
    "EngineTimeoutError",
    "EngineUnavailableError",
]


class EngineError(Exception):
    """Base of every error the engine package raises."""

    def __init__(self, message: str, *, status: int | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.param = param


class EngineStartError(EngineError):
    """The engine failed to start; `cause` is a short classification (port_in_use, out_of_memory...)."""

    def __init__(self, message: str, *, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


class EngineUnavailableError(EngineError):
    """No engine can take the request now; callers should retry after `retry_after` seconds."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class EngineOverloadedError(EngineUnavailableError):
    """The engine is up but refused work for lack of capacity."""


class EngineTimeoutError(EngineError):
    """The engine did not answer within the request deadline."""


class EngineRejectedError(EngineError):
    """The engine rejected the request (its 4xx); the message is the engine's."""


class EngineProtocolError(EngineError):
    """The engine answered with a body we could not interpret."""
