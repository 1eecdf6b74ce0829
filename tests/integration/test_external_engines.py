"""--engine-url with two real engines started outside the service: kill one mid-traffic and
every request still succeeds on the other; the dead one is skipped, then used again when back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import httpx

from engine.process import group_shm_files, unlink_shm
from tests.support.service import ServiceProcess, free_port
from tests.support.wait import wait_until


def _engine(model: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            model,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--served-model-name",
            "minilm",
            "--runner",
            "pooling",
            "--enforce-eager",
            "--dtype",
            "float32",
            "--disable-uvicorn-access-log",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _wait(port: int, proc: subprocess.Popen[bytes], timeout: float = 300) -> None:
    def ready() -> bool:
        assert proc.poll() is None, "engine died during start"
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200

    wait_until(ready, timeout, 0.5, ignore=(httpx.HTTPError,), message=f"engine on port {port} not ready")


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the engine's group, then remove the shared memory it mapped (vLLM's message-queue
    segments, 160-250 MB each on CPU): a killed engine cannot, and these engines are the test's own,
    not the service's (whose supervisor does the same, engine.process)."""
    shm = group_shm_files(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(30)
    wait_until(lambda: not group_shm_files(proc.pid), 30, 0.2, message="the engine's group outlived its SIGKILL")
    unlink_shm(shm)


def test_kill_one_external_engine_mid_traffic(bundled_model_path: str) -> None:
    ports = [free_port(), free_port()]
    engines = [_engine(bundled_model_path, p) for p in ports]
    try:
        for p, e in zip(ports, engines, strict=True):
            _wait(p, e)
        args = [a for p in ports for a in ("--engine-url", f"http://127.0.0.1:{p}")]
        with ServiceProcess(args, name="external") as svc:
            # /health turns 200 once one engine serves; the other may still be waiting for its first check
            wait_until(
                lambda: [e["state"] for e in svc.health()[1]["engines"]] == ["ready", "ready"],
                60,
                0.2,
                message=lambda: f"both engines never ready: {svc.health()[1]['engines']}",
            )
            assert svc.health()[1]["model"] == "minilm"
            body = {"query": "cats", "documents": ["a cat sat", "stocks fell", "dogs bark"]}
            statuses: list[int] = []
            stop = threading.Event()
            dead = f"http://127.0.0.1:{ports[0]}"

            def client() -> None:
                with httpx.Client(timeout=60) as c:
                    while not stop.is_set():
                        try:
                            statuses.append(c.post(f"{svc.url}/v1/rerank", json=body).status_code)
                        except httpx.HTTPError:
                            statuses.append(-1)  # no answer at all: fails the test below

            def skipped() -> bool:  # the dead engine is marked, and traffic went on after the kill
                states = {e["url"]: e["state"] for e in svc.health()[1]["engines"]}
                return states[dead] == "unreachable" and len(statuses) >= at_kill + 100

            threads = [threading.Thread(target=client) for _ in range(8)]
            for t in threads:
                t.start()
            wait_until(lambda: len(statuses) >= 40, 120, message="no traffic before the kill")
            at_kill = len(statuses)
            _kill(engines[0])
            wait_until(
                skipped,
                120,
                0.2,
                message=lambda: (
                    f"{len(statuses) - at_kill} requests since the kill, engines: {svc.health()[1]['engines']}"
                ),
            )
            stop.set()
            for t in threads:
                t.join(60)
            assert statuses and set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
            states = {e["url"]: e["state"] for e in svc.health()[1]["engines"]}
            assert states[f"http://127.0.0.1:{ports[0]}"] == "unreachable"
            assert states[f"http://127.0.0.1:{ports[1]}"] == "ready"
            assert svc.health()[0] == 200
            print(f"external: {len(statuses)} requests, all 200, across the kill")
    finally:
        for e in engines:
            _kill(e)
