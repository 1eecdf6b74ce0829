"""Engine supervision with the real engine: SIGKILL → 503 + Retry-After → restart → correct
answers; stopping the service leaves no engine process; failed starts exit non-zero with the
cause in one line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from tests.support.service import ROOT, ServiceProcess, free_port


def _descendants(pid: int) -> set[int]:
    try:
        return {p.pid for p in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def test_engine_killed_service_reports_503_restarts_and_recovers(st_model) -> None:  # type: ignore[no-untyped-def]
    body = {"query": "cats", "documents": ["a cat sat", "stocks fell"]}
    with ServiceProcess(name="restart") as svc:
        assert svc.proc is not None
        first = httpx.post(f"{svc.url}/v1/rerank", json=body, timeout=60).json()
        old_pid = svc.health()[1]["engine"]["pid"]
        tree = _descendants(svc.proc.pid)
        os.kill(old_pid, signal.SIGKILL)

        saw_503 = None
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            status, health = svc.health()
            if status == 503:
                r = httpx.post(f"{svc.url}/v1/rerank", json=body, timeout=60)
                if r.status_code == 503:
                    saw_503 = r
            elif saw_503 is not None and health["engine"]["pid"] != old_pid:
                break
            time.sleep(0.2)
        assert saw_503 is not None, "the service never reported the dead engine"
        assert int(saw_503.headers["Retry-After"]) >= 1
        assert "unavailable" in saw_503.json()["message"]
        status, health = svc.health()
        assert status == 200 and health["engine"]["restarts"] == 1 and health["engine"]["pid"] != old_pid
        again = httpx.post(f"{svc.url}/v1/rerank", json=body, timeout=60).json()
        assert [r["index"] for r in again["results"]] == [r["index"] for r in first["results"]]
        assert [r["relevance_score"] for r in again["results"]] == pytest.approx(
            [r["relevance_score"] for r in first["results"]], abs=1e-6)
        tree |= _descendants(svc.proc.pid)
        svc_pid = svc.proc.pid
    # Stopping the service (SIGTERM) leaves no engine process behind: not the old, not the new.
    assert svc.proc.returncode == 0, svc.log_tail()
    alive = {p for p in tree if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE}
    assert not alive, alive
    assert not psutil.pid_exists(svc_pid) or psutil.Process(svc_pid).status() == psutil.STATUS_ZOMBIE


def _start_fails(args: list[str], timeout: float = 240) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, str(ROOT / "start_service.py"), "--host", "127.0.0.1", "--port",
                           str(free_port()), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    return proc.returncode, proc.stderr


def test_bad_model_path_fails_fast_with_one_clear_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    missing = str(tmp_path / "missing-model")
    rc, err = _start_fails(["--model", missing])
    assert rc == 1
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "engine failed to start (bad_model)" in lines[0], err[-3000:]
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if missing in " ".join(p.info["cmdline"] or [])]
    assert not leftovers


def test_bad_vllm_flag_fails_with_its_cause() -> None:
    rc, err = _start_fails(["--", "--definitely-not-a-vllm-flag"])
    assert rc == 1
    line = next(line for line in err.splitlines() if line.startswith("error: "))
    assert "(bad_flag)" in line and "--definitely-not-a-vllm-flag" in line


def test_port_in_use_fails_at_once() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = subprocess.run([sys.executable, str(ROOT / "start_service.py"), "--host", "127.0.0.1", "--port",
                               str(port)], capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert proc.returncode == 1
        assert f"port {port}" in proc.stderr and "already in use" in proc.stderr
        proc = subprocess.run([sys.executable, str(ROOT / "start_service.py"), "--host", "127.0.0.1", "--port",
                               str(free_port()), "--engine-port", str(port)], capture_output=True, text=True,
                              timeout=60, cwd=ROOT)
        assert proc.returncode == 1 and "already in use" in proc.stderr


def test_bad_setting_exits_2_naming_it() -> None:
    rc, err = _start_fails(["--workers", "0"], timeout=60)
    assert rc == 2 and "--workers" in err
