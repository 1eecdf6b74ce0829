"""The Dockerfile's exact ENTRYPOINT + CMD, run here without a container engine.

The command line is parsed from the Dockerfile; only what cannot exist outside the image is
substituted: `python3` -> this venv's interpreter, /app -> the repository, /cache -> a temp
dir, and tini (PID 1 inside the image) is kept when installed here, else dropped. The
environment is the CPU image's ENV plus the origin guide's `docker run -e ...`, on loopback and
a free port. It must start a working service, then stop on SIGTERM (what `docker stop` sends)
with exit 0 and no engine process left.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.service import ROOT, engine_pids, free_port
from tests.support.wait import wait_gone, wait_until
from tests.unit.test_dockerfile import parse_dockerfile

pytestmark = [pytest.mark.engine, pytest.mark.timeout(420)]

# The origin guide's Docker section: docker run ... -e WORKERS=2 -e MAX_NUM_SEQS=1024
#   -e GPU_MEMORY_UTILIZATION=0.9 -e MAX_WORKERS=8 vllm-rerank:latest
GUIDE_ENV = {"WORKERS": "2", "MAX_NUM_SEQS": "1024", "GPU_MEMORY_UTILIZATION": "0.9", "MAX_WORKERS": "8"}
DOCKER_STOP_TIMEOUT_S = 10.0  # Docker's default `docker stop` grace before SIGKILL


def local_command(argv: list[str]) -> list[str]:
    out = list(argv)
    if out[0].endswith("/tini"):
        tini = shutil.which("tini")
        out = [tini, *out[1:]] if tini else out[out.index("--") + 1 :]
    assert out[0] == "python3", out
    out[0] = sys.executable
    return [str(ROOT / a[len("/app/") :]) if a.startswith("/app/") else a for a in out]


def local_env(image_env: dict[str, str], tmp: Path, port: int) -> dict[str, str]:
    env = dict(os.environ)
    for key, value in image_env.items():
        if key in ("HOME", "LD_PRELOAD"):
            continue  # the image's user and preload paths do not exist here
        env[key] = value.replace("/cache", str(tmp / "cache"))
    env.update(GUIDE_ENV)
    env.update({"HOST": "127.0.0.1", "PORT": str(port), "HF_HUB_OFFLINE": "1"})
    return env


def descendants(pid: int) -> set[int]:
    """pid's live descendants (the engine runs in its own session, so not in our process group)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_dockerfile_entrypoint_starts_serves_and_stops_cleanly(tmp_path: Path) -> None:
    dockerfile = parse_dockerfile()
    port = free_port()
    argv = local_command(dockerfile.command())
    env = local_env(dockerfile.image_env("cpu"), tmp_path, port)
    log_path = tmp_path / "service.log"
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv, env=env, cwd=str(tmp_path), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    ours: set[int] = set()
    try:

        def ready() -> bool:
            assert proc.poll() is None, f"exited {proc.returncode}:\n{log_path.read_text()[-4000:]}"
            ours.update(descendants(proc.pid) & engine_pids())
            return httpx.get(f"{url}/health", timeout=5).status_code == 200

        wait_until(
            ready, 300, 1, ignore=(httpx.HTTPError,), message=lambda: f"not ready:\n{log_path.read_text()[-4000:]}"
        )
        health = httpx.get(f"{url}/health", timeout=5).json()
        assert health["workers"] == 2 and health["max_num_seqs"] == 1024 and health["max_workers"] == 8

        r = httpx.post(
            f"{url}/v1/rerank",
            timeout=60,
            json={
                "model": "all-MiniLM-L6-v2",
                "query": "What is the capital of France?",
                "documents": ["Berlin is the capital of Germany.", "Paris is the capital of France."],
            },
        )
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert [x["index"] for x in results] == [1, 0]

        ours |= descendants(proc.pid) & engine_pids()
        assert ours, "no engine process found under the service"

        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)  # what `docker stop` makes tini forward
        rc = proc.wait(60)
        took = time.monotonic() - t0
        assert rc == 0, f"exit code {rc}:\n{log_path.read_text()[-4000:]}"
        # SIGKILLed engine processes can take a moment to exit on a loaded machine; a leaked one never does.
        wait_gone(lambda: {p for p in ours if alive(p)}, 30, what="engine process left behind")
        # Idle, the whole stop must fit Docker's default timeout, or `docker stop` would SIGKILL.
        assert took < DOCKER_STOP_TIMEOUT_S, f"idle stop took {took:.1f}s"
        print(f"idle SIGTERM -> exit took {took:.1f}s; engine pids {sorted(ours)}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        for pid in ours:
            if alive(pid):
                try:
                    os.killpg(os.getpgid(pid), signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
