"""Run the real service (start_service.py) as a subprocess for tests and benchmarks.

`ServiceProcess` starts it on a free loopback port in its own session, waits for /health = 200
while checking that the process is alive, and stops it with SIGTERM then SIGKILL of the group.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import httpx

from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]

__all__ = ["ROOT", "ServiceProcess", "engine_pids", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def engine_pids() -> set[int]:
    """PIDs of every vLLM engine process on this machine (API server, EngineCore, workers)."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    pids = set()
    for line in out.splitlines():
        pid, _, args = line.strip().partition(" ")
        if "vllm.entrypoints" in args or "VLLM::EngineCore" in args or " vllm serve" in args:
            pids.add(int(pid))
    return pids


class ServiceProcess:
    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        env: dict[str, str] | None = None,
        port: int | None = None,
        ready_timeout: float = 300.0,
        name: str = "service",
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = list(args)
        self.env = {**os.environ, **(env or {})}
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.ready_timeout = ready_timeout
        self.log_path = Path(tempfile.mkstemp(prefix=f"vllm-rerank-{name}-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - the service's log outlives start(); closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "start_service.py"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                *self.args,
            ],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=str(ROOT),
        )
        return self

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def health(self) -> tuple[int, dict[str, Any]]:
        r = httpx.get(f"{self.url}/health", timeout=5)
        return r.status_code, r.json()

    def wait_ready(self, timeout: float | None = None) -> Self:
        proc = self.proc
        assert proc is not None

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"service exited with {proc.returncode}:\n{self.log_tail()}")
            return self.health()[0] == 200

        wait_until(
            ready,
            timeout or self.ready_timeout,
            0.5,
            ignore=(httpx.HTTPError, ValueError),
            message=lambda: f"service not ready:\n{self.log_tail()}",
        )
        return self

    def wait_exit(self, timeout: float) -> int | None:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace: float = 60.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(10)
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> Self:
        self.start()
        try:
            return self.wait_ready()
        except BaseException:  # a service that never got ready must not outlive the test
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
