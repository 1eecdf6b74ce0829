"""The warm-up before READY: shaped like real traffic, on the engine's own endpoints, never fatal."""

from __future__ import annotations

import json
import shlex
import sys

import httpx

from engine import FAMILIES, FORMATS, EngineConfig, EngineState, EngineSupervisor, LaunchMode
from engine.config import QWEN3_TEMPLATE
from engine.warmup import WARMUP_HEADER, warm_up, warmup_documents
from tests.support.service import ROOT, free_port

FAKE = str(ROOT / "tests" / "fakes" / "fake_vllm.py")


def config(**kw: object) -> EngineConfig:
    base: dict[str, object] = {
        "model": "/m",
        "served_model_name": "m",
        "port": 1,
        "family": FAMILIES["bi-encoder"],
        "device": "cpu",
        "max_num_seqs": 256,
        "max_model_len": 256,
        "launch": LaunchMode(("python",), False),
    }
    return EngineConfig(**{**base, **kw})  # type: ignore[arg-type]


def recording(status: int = 200) -> tuple[httpx.Client, list[tuple[str, dict]]]:  # type: ignore[type-arg]
    seen: list[tuple[str, dict]] = []  # type: ignore[type-arg]

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert request.headers[WARMUP_HEADER] == "1"
        seen.append((request.url.path, body))
        if request.url.path == "/tokenize":
            return httpx.Response(200, json={"tokens": [1, 2, 3, 4], "count": 4})
        return httpx.Response(status, json={"data": []} if status == 200 else {"error": {"message": "no"}})

    return httpx.Client(transport=httpx.MockTransport(handle)), seen


def test_a_cpu_engine_gets_one_score_call_with_a_batch_of_passages() -> None:
    client, seen = recording()
    w = warm_up(client, "http://e", config(), timeout=10)
    assert w.error is None and w.requests == 1 and w.documents == 32
    ((path, body),) = seen
    assert path == "/score" and body["model"] == "m" and body["text_1"]
    docs = body["text_2"]
    assert len(docs) == 32 and len(set(docs)) == 32  # distinct: no prefix cache hit makes it cheap
    assert all(len(d.split()) >= 80 for d in docs)  # a third of a 256-token window


def test_a_gpu_engine_gets_a_full_batch_and_short_windows_short_passages() -> None:
    assert warmup_documents(config(device="cuda", max_num_seqs=1024, max_model_len=8192)) == (1024, 150)
    assert warmup_documents(config(max_model_len=32)) == (32, 10)


def test_pretokenized_engines_also_get_token_ids_through_classify() -> None:
    qwen = config(family=FAMILIES["llm-reranker"], format=FORMATS["qwen3-reranker"], chat_template=str(QWEN3_TEMPLATE))
    assert qwen.prompt_format is not None
    client, seen = recording()
    w = warm_up(client, "http://e", qwen, timeout=10)
    assert w.error is None and w.requests == 2
    assert [p for p, _ in seen] == ["/score", "/tokenize", "/classify"]
    classify = seen[2][1]
    assert classify["input"] == [[1, 2, 3, 4]] * 32 and classify["use_activation"] is False


def test_a_refused_warm_up_is_reported_not_raised() -> None:
    client, _ = recording(status=400)
    w = warm_up(client, "http://e", config(), timeout=10)
    assert w.requests == 0 and w.error is not None and "400" in w.error


def test_the_supervisor_warms_the_engine_up_before_ready() -> None:
    """With a real subprocess (the fault fake): the warm-up happened, then READY; the fake does not count it."""
    port = free_port()
    cfg = config(
        port=port,
        launch=LaunchMode(tuple(shlex.split(shlex.join([sys.executable, FAKE, "--crash-after", "0"]))), False),
    )
    sup = EngineSupervisor(cfg, ready_timeout_s=30, stop_grace_s=2, hang_timeout_s=0)
    sup.start()
    try:
        assert sup.wait_first_start(60), sup.last_error
        assert sup.state == EngineState.READY
        assert sup.warmup is not None and sup.warmup.error is None and sup.warmup.requests == 1
        assert sup.start_seconds is not None and sup.start_seconds >= sup.warmup.seconds
    finally:
        sup.stop()
