"""EngineClient against a scripted transport: what each call sends, how answers are read, which
failures are retried (on another engine) and which surface at once. No engine runs here, and
the scores are the script's own numbers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import stamina

from engine import EngineClient, EngineRegistry
from engine.errors import EngineProtocolError, EngineRejectedError, EngineUnavailableError
from engine.transport import CallableTransport, ConnectFailed
from tests.unit.engines import snapshot

Reply = tuple[int, bytes]


@pytest.fixture(autouse=True)
def _no_backoff() -> Iterator[None]:
    stamina.set_testing(True, attempts=3)
    yield
    stamina.set_testing(False)


def _registry(*urls: str) -> EngineRegistry:
    return EngineRegistry(
        static=[snapshot(name=f"engine{i}", url=u, family="llm-reranker") for i, u in enumerate(urls or ("http://e0",))]
    )


class Script:
    """The transport: records every POST and answers with `answer(url, body)`."""

    def __init__(self, answer: Callable[[str, dict[str, Any]], Reply]) -> None:
        self.answer = answer
        self.posts: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, method: str, url: str, body: bytes | None) -> Reply:
        payload = orjson.loads(body or b"{}")
        self.posts.append((url, payload))
        return self.answer(url, payload)


def _classified(probs: list[list[float]], *, order: list[int] | None = None, tokens: int = 7) -> Reply:
    idx = order or list(range(len(probs)))
    data = [{"index": i, "label": "LABEL_0", "probs": probs[i], "num_classes": len(probs[i])} for i in idx]
    return 200, orjson.dumps({"object": "list", "data": data, "usage": {"prompt_tokens": tokens}})


def _run(client: EngineClient, **kw: Any) -> Any:
    return asyncio.run(client.score_tokens(deadline=time.monotonic() + 10, **kw))


def test_score_tokens_posts_ids_to_classify_and_reads_logits() -> None:
    script = Script(lambda url, body: _classified([[0.25], [0.75]], tokens=5))
    batch = _run(EngineClient(_registry(), transport=CallableTransport(script)), prompts=[[1, 2], [3, 4, 5]])
    assert script.posts == [
        ("http://e0/classify", {"model": "m", "input": [[1, 2], [3, 4, 5]], "use_activation": False})
    ]
    assert batch.scores == [0.25, 0.75] and batch.prompt_tokens == 5 and batch.engine == "engine0"


def test_score_tokens_puts_answers_back_in_input_order() -> None:
    script = Script(lambda url, body: _classified([[0.1], [0.2], [0.3]], order=[2, 0, 1]))
    batch = _run(EngineClient(_registry(), transport=CallableTransport(script)), prompts=[[1], [2], [3]])
    assert batch.scores == [0.1, 0.2, 0.3]


@pytest.mark.parametrize(
    "reply",
    [
        _classified([[0.4, 0.6]]),  # two labels: not a one-label reranker
        (200, orjson.dumps({"data": [], "usage": {"prompt_tokens": 0}})),  # wrong count
        (200, b"<html>"),
    ],
)
def test_unreadable_classify_answers_are_protocol_errors(reply: Reply) -> None:
    client = EngineClient(_registry(), transport=CallableTransport(Script(lambda url, body: reply)))
    with pytest.raises(EngineProtocolError):
        _run(client, prompts=[[1, 2]])


def test_rejected_input_surfaces_the_engine_message_without_retry() -> None:
    body = {"error": {"message": "This model's maximum context length is 512 tokens", "type": "BadRequestError"}}
    script = Script(lambda url, b: (400, orjson.dumps(body)))
    with pytest.raises(EngineRejectedError, match="maximum context length") as info:
        _run(EngineClient(_registry(), transport=CallableTransport(script)), prompts=[[1] * 600])
    assert info.value.status == 400 and len(script.posts) == 1


def test_restarting_engine_is_retried_and_then_answers() -> None:
    replies = iter([(503, b'{"error": {"message": "restarting"}}'), _classified([[0.5]])])
    script = Script(lambda url, body: next(replies))
    batch = _run(EngineClient(_registry(), transport=CallableTransport(script)), prompts=[[1]])
    assert batch.scores == [0.5]
    assert [url for url, _ in script.posts] == ["http://e0/classify"] * 2
    assert script.posts[0][1] == script.posts[1][1]  # the same body again


def test_unreachable_engine_fails_over_to_another() -> None:
    def answer(url: str, body: dict[str, Any]) -> Reply:
        if url.startswith("http://e0"):
            raise ConnectFailed("refused")
        return _classified([[0.9]])

    script = Script(answer)
    batch = _run(EngineClient(_registry("http://e0", "http://e1"), transport=CallableTransport(script)), prompts=[[1]])
    assert batch.scores == [0.9] and batch.engine == "engine1"
    assert [url for url, _ in script.posts] == ["http://e0/classify", "http://e1/classify"]


def test_unreachable_everywhere_is_unavailable_after_the_retries() -> None:
    def refuse(url: str, body: dict[str, Any]) -> Reply:
        raise ConnectFailed("refused")

    with pytest.raises(EngineUnavailableError, match="unreachable"):
        _run(EngineClient(_registry(), transport=CallableTransport(Script(refuse))), prompts=[[1]])


def test_score_still_sends_texts_to_score() -> None:
    """The text path shares the retry loop and status handling (regression for the refactor)."""
    replies = iter(
        [
            (502, b"bad gateway"),
            (
                200,
                orjson.dumps(
                    {"data": [{"index": 1, "score": 0.2}, {"index": 0, "score": 0.1}], "usage": {"prompt_tokens": 9}}
                ),
            ),
        ]
    )
    script = Script(lambda url, body: next(replies))
    client = EngineClient(_registry(), transport=CallableTransport(script))
    batch = asyncio.run(
        client.score(
            query="q",
            documents=["a", "b"],
            deadline=time.monotonic() + 10,
            max_tokens_per_doc=4,
            instruction="i",
        )
    )
    assert batch.scores == [0.1, 0.2] and batch.prompt_tokens == 9
    assert script.posts[-1] == (
        "http://e0/score",
        {
            "model": "m",
            "text_1": "q",
            "text_2": ["a", "b"],
            "max_tokens_per_doc": 4,
            "instruction": "i",
            "use_activation": False,
        },
    )
    assert len(script.posts) == 2


def _scored(pairs: list[tuple[Any, Any]], usage: Any = None) -> Reply:
    body: dict[str, Any] = {"id": "score-1", "object": "list", "data": [{"index": i, "score": s} for i, s in pairs]}
    if usage is not None:
        body["usage"] = usage
    return 200, orjson.dumps(body)


def _score(reply: Reply, n: int) -> Any:
    client = EngineClient(_registry(), transport=CallableTransport(Script(lambda url, body: reply)))
    return asyncio.run(client.score(query="q", documents=["d"] * n, deadline=time.monotonic() + 10))


@pytest.mark.parametrize(
    ("reply", "scores", "tokens"),
    [
        (_scored([(0, 0.5), (1, 1)], {"prompt_tokens": 9, "total_tokens": 9}), [0.5, 1.0], 9),  # an int score
        (_scored([(1, 0.25), (0, 0.75)], {"prompt_tokens": None}), [0.75, 0.25], 0),  # out of order
        (_scored([(0, 0.5), (1, 0.5)]), [0.5, 0.5], 0),  # no usage
    ],
)
def test_score_answers_are_read_typed_and_in_input_order(reply: Reply, scores: list[float], tokens: int) -> None:
    batch = _score(reply, len(scores))
    assert batch.scores == scores and batch.prompt_tokens == tokens


@pytest.mark.parametrize(
    "reply",
    [
        _scored([(0, "0.5")]),  # a score that is not a number
        _scored([(0, None)]),
        (200, orjson.dumps({"data": [{"index": 0}]})),  # no score
        (200, orjson.dumps({"data": {"index": 0, "score": 0.5}})),  # not a list
        _scored([(3, 0.5)]),  # an index out of range
        _scored([(0, 0.5), (1, 0.5)]),  # more scores than documents
        (200, b"<html>"),
    ],
)
def test_unreadable_score_answers_are_protocol_errors(reply: Reply) -> None:
    with pytest.raises(EngineProtocolError):
        _score(reply, 1)
