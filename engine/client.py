"""Async client for vLLM's scoring API: one pooled keep-alive transport, deadlines, transient retries.

Two calls: `score()` sends texts to `/score` (the engine renders and tokenises each pair) and
`score_tokens()` sends prompts already tokenised to `/classify`. Both share one retry loop and one
reading of statuses.

Only this module (through engine.transport) talks HTTP to engines. It translates transport failures into
`EngineError`s and
retries what is safe to retry (scoring is idempotent): connection failures and 502/503 while
an engine restarts, with jittered backoff inside the caller's deadline. 4xx answers and read
timeouts are never retried.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from typing import Any

import msgspec
import orjson
import stamina

from engine.errors import (
    EngineError,
    EngineOverloadedError,
    EngineProtocolError,
    EngineRejectedError,
    EngineTimeoutError,
    EngineUnavailableError,
)
from engine.registry import EngineSet
from engine.snapshot import EngineSnapshot
from engine.transport import ConnectFailed, ConnectionLost, HttpTransport, ReadTimeout, Transport

__all__ = ["EngineClient", "ScoreBatch"]


@dataclass(frozen=True)
class ScoreBatch:
    """Raw engine scores, aligned with the documents sent, and the tokens the engine counted."""

    scores: list[float]
    prompt_tokens: int
    engine: str


# (engine) -> (path, JSON body) of one call; the answer's items -> their scores, item by item.
_Request = Callable[[EngineSnapshot], tuple[str, dict[str, Any]]]
_Parse = Callable[[bytes, int], tuple[list[float], int]]  # (answer, inputs) -> (scores, prompt tokens)


class _Transient(Exception):
    """Internal: a failure worth retrying (another engine, or the same one after a restart)."""

    def __init__(self, cause: EngineError) -> None:
        super().__init__(cause.message)
        self.cause = cause


def _error_message(body: bytes) -> str:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace")[:500]
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and "message" in err:
            return str(err["message"])
        for key in ("message", "detail", "error"):
            if key in data:
                return str(data[key])
    return str(data)[:500]


class EngineClient:
    """Score (query, documents) on the least-loaded ready engine."""

    def __init__(
        self,
        registry: EngineSet,
        *,
        connect_timeout_s: float = 2.0,
        retry_budget_s: float = 10.0,
        max_connections: int = 512,
        transport: Transport | None = None,
    ) -> None:
        self.registry = registry
        self.retry_budget_s = retry_budget_s
        self.connect_timeout_s = connect_timeout_s
        self._http: Transport = transport or HttpTransport(max_connections=max_connections)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def engine_metrics(self) -> list[tuple[str, str]]:
        """(engine name, Prometheus text) of every ready engine; unreachable ones are left out."""
        out = []
        for e in self.registry.engines():
            if not e.ready:
                continue
            try:
                status, content = await self._http.get(f"{e.url}/metrics", timeout=2.0)
            except (ConnectFailed, ConnectionLost, ReadTimeout):
                continue
            if status == 200:
                out.append((e.name, content.decode("utf-8", "replace")))
        return out

    async def score(
        self,
        *,
        query: str,
        documents: list[str],
        deadline: float,
        max_tokens_per_doc: int | None = None,
        instruction: str | None = None,
        truncate_prompt_tokens: int | None = None,
    ) -> ScoreBatch:
        """Score every document against the query on one engine (vLLM `/score`: the engine renders
        and tokenises each pair).

        `deadline` is a `time.monotonic()` instant. A classifier is always asked for its raw logit
        (`use_activation: false`: the gateway applies sigmoid itself, whatever activation the
        model's config asks vLLM for); embedding models return cosines. `truncate_prompt_tokens`
        lets the engine's tokenizer truncate each pair to that many tokens in the same pass.

        Raises:
            EngineUnavailableError: no ready engine, or it stayed unreachable past the retry budget.
            EngineOverloadedError: the engine kept refusing for capacity.
            EngineTimeoutError: the deadline passed.
            EngineRejectedError: the engine refused the input (its message).
            EngineProtocolError: an unreadable answer.
        """

        def request(engine: EngineSnapshot) -> tuple[str, dict[str, Any]]:
            body: dict[str, Any] = {"model": engine.served_model_name, "text_1": query, "text_2": documents}
            if max_tokens_per_doc:
                body["max_tokens_per_doc"] = max_tokens_per_doc
            if truncate_prompt_tokens:
                body["truncate_prompt_tokens"] = truncate_prompt_tokens
            if instruction is not None:
                body["instruction"] = instruction
            if engine.score_kind == "logit":
                body["use_activation"] = False
            return "/score", body

        return await self._with_retries(request, _read_score, len(documents), deadline)

    async def score_tokens(self, *, prompts: list[list[int]], deadline: float) -> ScoreBatch:
        """Score prompts the caller already rendered and tokenised, one per document (vLLM
        `/classify` with token-id inputs; a one-label classifier's probability, which for the same
        prompt equals what `/score` answers). The engine's API server skips templating and
        tokenisation, its costliest per-pair work.

        Raises: as `score()`.
        """

        def request(engine: EngineSnapshot) -> tuple[str, dict[str, Any]]:
            return "/classify", {"model": engine.served_model_name, "input": prompts, "use_activation": False}

        return await self._with_retries(request, _read_classify, len(prompts), deadline)

    async def _with_retries(self, request: _Request, parse: _Parse, n: int, deadline: float) -> ScoreBatch:
        """One call on the least-loaded engine; transient failures retried on another engine (or the
        same one after its restart) with backoff, until the retry budget or the deadline."""
        now = time.monotonic()
        # Stop retrying a little before the deadline, so the caller gets the real cause (503), not 504.
        retry_until = min(now + self.retry_budget_s, deadline - min(0.5, 0.2 * max(0.0, deadline - now)))
        failed: set[str] = set()
        last: EngineError | None = None
        # Happy path first, outside the retry machinery (it costs CPU on every request).
        engine = self.registry.pick()
        try:
            return await self._call_once(engine, request, parse, n, deadline)
        except _Transient as exc:
            failed.add(engine.url)
            last = exc.cause
            if time.monotonic() >= retry_until:
                raise exc.cause from None
        try:
            async for attempt in stamina.retry_context(
                on=_Transient,
                attempts=None,
                timeout=max(0.0, retry_until - time.monotonic()),
                wait_initial=0.05,
                wait_max=1.0,
                wait_jitter=0.2,
            ):
                with attempt:
                    if last is not None and time.monotonic() >= retry_until:
                        raise last
                    engine = self.registry.pick(exclude=frozenset(failed))
                    try:
                        return await self._call_once(engine, request, parse, n, deadline)
                    except _Transient as exc:
                        failed.add(engine.url)
                        last = exc.cause
                        if time.monotonic() >= retry_until:
                            raise exc.cause from None
                        raise
        except _Transient as exc:  # retry budget spent
            raise exc.cause from None
        raise last or EngineUnavailableError("engine unavailable")  # pragma: no cover

    async def _call_once(
        self, engine: EngineSnapshot, request: _Request, parse: _Parse, n: int, deadline: float
    ) -> ScoreBatch:
        path, body = request(engine)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise EngineTimeoutError("request deadline passed before the engine was called")
        self.registry.acquire(engine.url, n)
        try:
            status, content = await self._http.post(
                f"{engine.url}{path}",
                orjson.dumps(body),
                timeout=remaining,
                connect_timeout=min(self.connect_timeout_s, remaining),
            )
        except (ConnectFailed, ConnectionLost) as exc:
            raise _Transient(EngineUnavailableError(f"engine {engine.name} unreachable: {exc}")) from exc
        except ReadTimeout as exc:
            raise EngineTimeoutError(f"engine {engine.name} did not answer within the deadline") from exc
        finally:
            self.registry.release(engine.url, n)
        if status in (502, 503):
            cls = EngineOverloadedError if status == 503 else EngineUnavailableError
            raise _Transient(cls(f"engine {engine.name} answered {status}: {_error_message(content)}"))
        if 400 <= status < 500:
            raise EngineRejectedError(_error_message(content), status=status)
        if status != 200:
            raise EngineUnavailableError(
                f"engine {engine.name} answered {status}: {_error_message(content)}", retry_after=2.0
            )
        try:
            scores, tokens = parse(content, n)
        except (msgspec.DecodeError, orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as exc:
            raise EngineProtocolError(f"unreadable engine answer: {content[:200]!r}") from exc
        return ScoreBatch(scores=scores, prompt_tokens=tokens, engine=engine.name)


# gc=False: a 1000-document answer is 1000 items; untracked by the cyclic collector, they neither
# count toward nor lengthen its collections (they hold only an int and a float, so form no cycle).
class _ScoreItem(msgspec.Struct, gc=False):
    index: int
    score: float


class _Usage(msgspec.Struct, gc=False):
    prompt_tokens: int | None = None


class _ScoreAnswer(msgspec.Struct):
    """What vLLM's /score answers (other fields are skipped unread)."""

    data: list[_ScoreItem]
    usage: _Usage | None = None


# A /score answer is read into typed structs in one pass (msgspec): no dict per item, and the types
# checked while reading (bench/gateway_cost.py: ~75 µs less than orjson + itemgetter at 1000 documents).
_SCORE_ANSWER = msgspec.json.Decoder(_ScoreAnswer)
_INDEX_OF = attrgetter("index")
_SCORE_OF = attrgetter("score")
_INDEX = itemgetter("index")
_PROBS = itemgetter("probs")
_FIRST = itemgetter(0)


# The answer readers loop in C (map, attrgetter/itemgetter): a 1000-document answer is read per
# document on every request, and a Python-level call per item was most of the client's per-document cost.
def _read_score(content: bytes, n: int) -> tuple[list[float], int]:
    answer = _SCORE_ANSWER.decode(content)
    items = answer.data
    if len(items) != n:
        raise ValueError(f"{len(items)} scores for {n} inputs")
    tokens = (answer.usage.prompt_tokens if answer.usage is not None else None) or 0
    return _aligned(list(map(_INDEX_OF, items)), list(map(_SCORE_OF, items))), tokens


def _read_classify(content: bytes, n: int) -> tuple[list[float], int]:
    data = orjson.loads(content)
    items: list[dict[str, Any]] = data["data"]
    if len(items) != n:
        raise ValueError(f"{len(items)} scores for {n} inputs")
    probs = list(map(_PROBS, items))
    sizes = set(map(len, probs))
    if sizes - {1}:
        raise ValueError(f"{max(sizes - {1})} outputs for a one-label classifier")
    scores = list(map(float, map(_FIRST, probs)))
    tokens = int((data.get("usage") or {}).get("prompt_tokens") or 0)
    return _aligned(list(map(_INDEX, items)), scores), tokens


def _aligned(indexes: list[Any], scores: list[float]) -> list[float]:
    """Scores aligned with the inputs, by each item's index. Raises: IndexError for one out of range."""
    if indexes == list(range(len(scores))):  # vLLM answers in order
        return scores
    out = [0.0] * len(scores)
    for i, score in zip(indexes, scores, strict=True):
        out[int(i)] = score
    return out
