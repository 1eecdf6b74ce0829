"""Engine supervision with the real engine: SIGKILL → 503 + Retry-After → restart → correct
answers; stopping the service leaves no engine process; failed starts exit non-zero with the
cause in one line."""

from __future__ import annotations

import concurrent.futures
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
from tests.support.wait import wait_gone, wait_until


def _descendants(pid: int) -> set[int]:
    try:
        return {p.pid for p in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def _alive(pids: set[int]) -> set[int]:
    """The PIDs still running (zombies are dead: only their exit status is left)."""
    alive = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.add(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def test_engine_killed_service_reports_503_restarts_and_recovers(st_model) -> None:  # type: ignore[no-untyped-def]
    body = {"query": "cats", "documents": ["a cat sat", "stocks fell"]}
    with ServiceProcess(name="restart") as svc:
        assert svc.proc is not None
        first = httpx.post(f"{svc.url}/v1/rerank", json=body, timeout=60).json()
        old_pid = svc.health()[1]["engine"]["pid"]
        tree = _descendants(svc.proc.pid)
        os.kill(old_pid, signal.SIGKILL)

        saw_503 = None

        def restarted() -> bool:
            nonlocal saw_503
            status, health = svc.health()
            if status == 503:
                r = httpx.post(f"{svc.url}/v1/rerank", json=body, timeout=60)
                if r.status_code == 503:
                    saw_503 = r
                return False
            return saw_503 is not None and health["engine"]["pid"] != old_pid

        wait_until(restarted, 240, 0.2, message=lambda: f"saw 503: {saw_503 is not None}\n{svc.log_tail()}")
        assert saw_503 is not None, "the service never reported the dead engine"
        assert int(saw_503.headers["Retry-After"]) >= 1
        assert "unavailable" in saw_503.json()["message"]
        status, health = svc.health()
        assert status == 200 and health["engine"]["restarts"] == 1 and health["engine"]["pid"] != old_pid
        again = httpx.post(f"{svc.url}/v1/rerank", json=body, timeout=60).json()
        assert [r["index"] for r in again["results"]] == [r["index"] for r in first["results"]]
        assert [r["relevance_score"] for r in again["results"]] == pytest.approx(
            [r["relevance_score"] for r in first["results"]], abs=1e-6
        )
        tree |= _descendants(svc.proc.pid)
        svc_pid = svc.proc.pid
    # Stopping the service (SIGTERM) leaves no engine process behind: not the old, not the new.
    assert svc.proc.returncode == 0, svc.log_tail()
    wait_gone(lambda: _alive(tree | {svc_pid}), 30, what="service or engine process")


def test_engine_sigkilled_under_20_clients_then_sigterm_under_load() -> None:
    """Every request gets 200 or 503 + Retry-After, none hangs, traffic recovers; then SIGTERM
    with requests in flight answers them all and leaves no process."""
    import threading

    body = {"query": "cats", "documents": ["a cat sat on the mat", "stocks fell", "dogs bark"]}
    # --stop-grace bounds the drain: room for the 8 in-flight 64-document requests on a loaded 2-core box.
    with ServiceProcess(["--workers", "2", "--stop-grace", "60"], name="chaos") as svc:
        assert svc.proc is not None
        stop = threading.Event()
        results: list[tuple[float, int, str | None]] = []
        lock = threading.Lock()

        def client() -> None:
            with httpx.Client(timeout=60) as c:
                while not stop.is_set():
                    try:
                        r = c.post(f"{svc.url}/v1/rerank", json=body)
                        entry = (time.monotonic(), r.status_code, r.headers.get("retry-after"))
                    except httpx.TimeoutException:
                        entry = (time.monotonic(), -1, None)  # a hang: fails the test below
                    with lock:
                        results.append(entry)
                    if entry[1] == 503:
                        stop.wait(0.2)  # a client's back-off during the outage (ends at once on stop)

        def count(since: float = 0.0) -> int:
            with lock:
                return sum(1 for t, _, _ in results if t >= since)

        threads = [threading.Thread(target=client) for _ in range(20)]
        for t in threads:
            t.start()
        # Traffic flows before the kill: every client has had time for a couple of answers.
        wait_until(lambda: count() >= 40, 120, message="no traffic before the kill")
        old_pid = svc.health()[1]["engine"]["pid"]
        killed_at = time.monotonic()
        os.kill(old_pid, signal.SIGKILL)

        def recovered() -> bool:
            status, health = svc.health()
            return status == 200 and health["engine"]["pid"] != old_pid

        wait_until(recovered, 240, 0.5, message=svc.log_tail)
        recovered_at = time.monotonic()
        # Enough traffic after the recovery to judge it (counted from 1 s after, as asserted below).
        wait_until(lambda: count(recovered_at + 1) >= 100, 120, message="too little traffic after the restart")
        stop.set()
        for t in threads:
            t.join(90)
        assert not any(t.is_alive() for t in threads), "a client hung"
        statuses = [s for _, s, _ in results]
        assert set(statuses) <= {200, 503}, sorted(set(statuses))
        assert all(int(ra) >= 1 for _, s, ra in results if s == 503 and ra is not None)
        assert all(ra is not None for _, s, ra in results if s == 503)
        before = [s for t, s, _ in results if t < killed_at]
        during = [s for t, s, _ in results if killed_at <= t < recovered_at]
        after = [s for t, s, _ in results if t >= recovered_at + 1]
        assert before and set(before) == {200}
        assert 503 in during, "the outage was never reported"
        assert after and after.count(200) / len(after) > 0.95
        print(f"chaos: before={len(before)} during={len(during)} ({during.count(503)} x 503) after={len(after)}")

        # SIGTERM with requests in flight: each in-flight request is answered.
        tree = _descendants(svc.proc.pid)
        # Large enough that the 8 stay in flight together for a while, even on an idle engine.
        big = {"query": "cats", "documents": [f"document number {i} about cats and dogs and birds" for i in range(256)]}
        clients = [httpx.Client(timeout=180) for _ in range(8)]
        for c in clients:  # open keep-alive connections first: the requests below are truly in flight
            c.post(f"{svc.url}/v1/rerank", json=body)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(c.post, f"{svc.url}/v1/rerank", json=big) for c in clients]

            def inflight() -> float:
                text = httpx.get(f"{svc.url}/metrics", timeout=10).text
                line = next(x for x in text.splitlines() if x.startswith("vllm_rerank_inflight_requests "))
                return float(line.split()[1])

            wait_until(lambda: inflight() >= 8, 30, 0.05, message="the 8 requests never were in flight together")
            svc.proc.send_signal(signal.SIGTERM)
            answered = [f.result().status_code for f in futures]
        for c in clients:
            c.close()
        assert svc.wait_exit(120) == 0
        assert answered == [200] * 8, answered
    # No orphan: SIGKILLed descendants can take a moment to exit on a loaded machine; one that
    # was left running never does.
    wait_gone(lambda: _alive(tree), 30, what="descendant of the service")


def _start_fails(args: list[str], timeout: float = 240) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "start_service.py"), "--host", "127.0.0.1", "--port", str(free_port()), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    return proc.returncode, proc.stderr


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


def test_bad_model_path_fails_fast_with_one_clear_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    missing = str(tmp_path / "missing-model")
    started = time.monotonic()
    rc, err = _start_fails(["--model", missing, "--model-family", "cross-encoder"], timeout=60)
    assert rc == 2
    assert _one_error_line(err) == f"error: cannot start (bad_model): model path {missing} does not exist"
    assert time.monotonic() - started < 30  # no engine was started: no vLLM import, no 20 s wait
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if missing in " ".join(p.info["cmdline"] or [])]
    assert not leftovers


def test_mistyped_vllm_flag_fails_before_any_engine_with_a_suggestion() -> None:
    rc, err = _start_fails(["--modle", "x"], timeout=240)
    assert rc == 2
    line = _one_error_line(err)
    assert line.startswith("error: cannot start (bad_flag): unknown vLLM flag --modle (did you mean --model")
    assert "engine_starting" not in err  # refused before any engine was spawned


def test_hub_id_neither_cached_nor_downloadable_says_so() -> None:
    rc, err = _start_fails(["--model", "nobody-here/no-such-reranker", "--model-family", "cross-encoder"], timeout=60)
    assert rc == 2  # the session runs with HF_HUB_OFFLINE=1 (tests/conftest.py)
    assert _one_error_line(err).startswith("error: cannot start (not_cached): 'nobody-here/no-such-reranker' is not")


@pytest.mark.skipif(
    os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") > 30e9, reason="the 8B preset fits this machine's RAM"
)
def test_model_size_too_large_for_this_machine_fails_at_once() -> None:
    rc, err = _start_fails(["--model-size", "8B"], timeout=60)
    assert rc == 2
    line = _one_error_line(err)
    assert line.startswith("error: cannot start (too_large): Qwen/Qwen3-Reranker-8B needs ~32.8 GB") and "RAM" in line


def test_port_in_use_fails_at_once() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, str(ROOT / "start_service.py"), "--host", "127.0.0.1", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert proc.returncode == 1
        assert f"port {port}" in proc.stderr and "already in use" in proc.stderr
        proc = subprocess.run(
            [
                sys.executable,
                str(ROOT / "start_service.py"),
                "--host",
                "127.0.0.1",
                "--port",
                str(free_port()),
                "--engine-port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert proc.returncode == 1 and "already in use" in proc.stderr


def test_bad_setting_exits_2_naming_it() -> None:
    rc, err = _start_fails(["--max-num-seqs", "0"], timeout=60)  # (--workers 0 means auto since the many-models change)
    assert rc == 2 and "--max-num-seqs" in err
