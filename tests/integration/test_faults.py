"""Fault injection with a fake engine (a real subprocess, tests/fakes/fake_vllm.py): every
failure ends in its documented status, within the deadline, and nothing is left running.
Scores are never asserted here: the fake is for faults only."""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.service import ROOT, ServiceProcess, free_port
from tests.support.wait import wait_gone, wait_until

FAKE = str(ROOT / "tests" / "fakes" / "fake_vllm.py")
BODY = {"query": "q", "documents": ["a", "b"]}
FAST = ["--request-timeout", "3", "--stop-grace", "2", "--ready-timeout", "20", "--restart-backoff-cap", "1"]


def fake(*flags: str) -> list[str]:
    return ["--engine-command", shlex.join([sys.executable, FAKE, *flags]), *FAST]


def _leftovers(marker: str) -> set[int]:
    found = set()
    for p in psutil.process_iter(["cmdline"]):
        try:
            if marker in " ".join(p.info["cmdline"] or []) and p.status() != psutil.STATUS_ZOMBIE:
                found.add(p.pid)
        except psutil.NoSuchProcess:
            pass
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.add(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def _health_is(svc: ServiceProcess, status: int, state: str) -> bool:
    code, body = svc.health()
    return code == status and body["status"] == state


def post(svc: ServiceProcess, body: dict | None = None, path: str = "/v1/rerank") -> httpx.Response:  # type: ignore[type-arg]
    return httpx.post(f"{svc.url}{path}", json=body or BODY, timeout=30)


def test_failed_start_exits_1_with_the_cause() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "start_service.py"), "--port", str(free_port()), *fake("--fail-start")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 1
    assert "error: engine failed to start (port_in_use)" in proc.stderr


def test_never_ready_times_out_and_reports_starting_meanwhile() -> None:
    svc = ServiceProcess([*fake("--never-ready"), "--ready-timeout", "6"], name="never-ready").start()
    try:
        wait_until(lambda: _health_is(svc, 503, "starting"), 30, ignore=(httpx.HTTPError,), message=svc.log_tail)
        r = post(svc)
        assert r.status_code == 503 and r.headers["Retry-After"]
        assert svc.wait_exit(30) == 1
        assert "engine failed to start (timeout)" in svc.log_tail()
    finally:
        svc.stop()
    wait_gone(lambda: _leftovers(FAKE + " --never-ready"), what="fake engine")


def test_slow_start_is_503_then_ready(tmp_path: Path) -> None:
    gate = tmp_path / "engine-ready"  # the fake engine opens its port only once this exists
    svc = ServiceProcess([*fake("--start-gate", str(gate)), "--ready-timeout", "300"], name="slow-start").start()
    try:
        # The gateway is up, the engine is not: /health and the rerank route both say 503.
        wait_until(lambda: _health_is(svc, 503, "starting"), 60, ignore=(httpx.HTTPError,), message=svc.log_tail)
        r = post(svc)
        assert r.status_code == 503, r.text
        assert int(r.headers["Retry-After"]) >= 1
        assert r.json()["message"]
        assert _health_is(svc, 503, "starting"), "the engine cannot be ready before the gate opens"
        gate.touch()
        svc.wait_ready(60)
        assert _health_is(svc, 200, "ready")
        assert post(svc).status_code == 200
    finally:
        svc.stop()


def test_hanging_engine_gives_504_within_the_deadline() -> None:
    with ServiceProcess(fake("--hang"), name="hang") as svc:
        t0 = time.monotonic()
        r = post(svc)
        assert r.status_code == 504 and time.monotonic() - t0 < 3 + 2
        assert r.json()["error"]["code"] == 504


@pytest.mark.parametrize(
    ("flags", "status"),
    [(("--status", "500"), 503), (("--status", "503"), 503), (("--reset",), 503), (("--status", "400"), 400)],
)
def test_engine_errors_map_to_documented_statuses(flags: tuple[str, ...], status: int) -> None:
    with ServiceProcess([*fake(*flags), "--request-timeout", "3"], name="status") as svc:
        t0 = time.monotonic()
        r = post(svc)
        assert r.status_code == status, r.text
        assert time.monotonic() - t0 < 3 + 2
        if status == 503:
            assert int(r.headers["Retry-After"]) >= 1
        assert r.json()["message"]


def test_crashing_engine_is_restarted_and_too_many_crashes_mark_it_failed() -> None:
    with ServiceProcess(
        [*fake("--crash-after", "0"), "--max-engine-crashes", "2", "--crash-window", "60"], name="crash"
    ) as svc:
        r = post(svc)  # kills the engine mid-request
        assert r.status_code in (503, 504), r.text

        def failed() -> tuple[int, dict] | None:  # type: ignore[type-arg]
            status, body = svc.health()
            if body["status"] == "failed":
                return status, body
            if status == 200:
                post(svc)  # crash it again
            return None

        status, body = wait_until(failed, 40, 0.2, message=svc.log_tail)
        assert status == 503 and body["engine"]["restarts"] >= 2
        r = post(svc)
        assert r.status_code == 503 and "failed" in r.json()["message"]


def test_engine_ignoring_sigterm_is_killed_and_nothing_is_left() -> None:
    svc = ServiceProcess(fake("--ignore-sigterm"), name="ignore-term").start().wait_ready()
    assert svc.proc is not None
    tree = {p.pid for p in psutil.Process(svc.proc.pid).children(recursive=True)}
    t0 = time.monotonic()
    assert svc.stop(grace=30) == 0
    assert time.monotonic() - t0 < 2 + 10
    wait_gone(lambda: _alive(tree), what="engine process")


def test_overload_answers_429_at_once_with_retry_after(tmp_path: Path) -> None:
    gate = tmp_path / "answer"  # the fake holds every /score request until this exists
    args = [*fake("--score-gate", str(gate)), "--max-inflight-pairs", "3", "--request-timeout", "60"]
    with ServiceProcess(args, name="overload") as svc, concurrent.futures.ThreadPoolExecutor(4) as pool:
        first = pool.submit(post, svc, {"query": "q", "documents": ["a", "b", "c"]})
        wait_until(
            lambda: svc.health()[1]["inflight_pairs"] == 3,
            30,
            0.05,
            message="the first request never took the 3 pairs",
        )  # one worker: its inflight is the service's
        t0 = time.monotonic()
        r = post(svc)
        assert r.status_code == 429 and time.monotonic() - t0 < 1.0
        assert int(r.headers["Retry-After"]) >= 1
        assert not first.done()
        gate.touch()
        assert first.result().status_code == 200


def test_client_disconnect_cancels_engine_work() -> None:
    with ServiceProcess(fake("--slow", "5"), name="disconnect") as svc:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{svc.url}/v1/rerank", json=BODY, timeout=0.5)
        t0 = time.monotonic()

        def cancelled() -> bool:
            metrics = httpx.get(f"{svc.url}/metrics").text
            return "vllm_rerank_client_disconnects_total 1.0" in metrics and "vllm_rerank_inflight_pairs 0.0" in metrics

        wait_until(cancelled, 10, message="the disconnect was never counted, or its pairs stay in flight")
        assert time.monotonic() - t0 < 4, "not cancelled: the fake's 5 s answer came first"


def test_out_of_memory_retries_on_a_shared_card_run_alone(tmp_path: Path) -> None:
    """Issue 20: engines that start together on one card and all fail the KV-cache sizing retry one at a
    time, each after every other engine's first start has ended (a retry that profiles while another
    allocates fails the same way, and the service used to exit)."""
    log = tmp_path / "starts.jsonl"
    flags = ("--oom-first", str(tmp_path), "--start-log", str(log), "--start-delay", "2.0")
    args = [*fake(*flags), "--device", "cuda", "--engine-replicas", "3", "--gpu-memory-utilization", "0.9"]
    args += ["--ready-timeout", "120"]  # also how long a retry may wait for the others: room for a slow box
    with ServiceProcess(args, name="oom-shared") as svc:

        def all_ready() -> bool:  # /health says 200 once one engine serves; the retries come one by one
            return [e["state"] for e in svc.health()[1]["engines"]] == ["ready"] * 3

        wait_until(all_ready, 180, message="the three engines never all became ready")
        health = svc.health()[1]
        assert {e["gpu_memory_utilization"] for e in health["engines"]} == {0.15}  # 0.9 / 3 = 0.30 -> 0.15
        assert svc.log_tail(400).count("engine_oom_retry") == 3
    starts = [json.loads(line) for line in log.read_text().splitlines()]
    firsts = [s for s in starts if s["attempt"] == 1]
    retries = sorted((s for s in starts if s["attempt"] == 2), key=lambda s: s["start"])
    assert len(firsts) == 3 and len(retries) == 3, starts
    assert min(r["start"] for r in retries) >= max(f["end"] for f in firsts), starts
    for before, after in itertools.pairwise(retries):
        assert after["start"] >= before["end"], f"two retries overlapped: {before} {after}"


def test_out_of_memory_start_is_retried_once_with_less_gpu_memory() -> None:
    args = [*fake("--oom-above", "0.8"), "--device", "cuda", "--gpu-memory-utilization", "0.9"]
    with ServiceProcess(args, name="oom") as svc:
        engine = svc.health()[1]["engine"]
        assert engine["gpu_memory_utilization"] == 0.75
        assert "engine_oom_retry" in svc.log_tail(400) and "0.90 -> 0.75" in svc.log_tail(400)
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "start_service.py"),
            "--port",
            str(free_port()),
            *fake("--oom-above", "0.5"),
            "--device",
            "cuda",
            "--gpu-memory-utilization",
            "0.9",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 1 and "engine failed to start (out_of_memory)" in proc.stderr
