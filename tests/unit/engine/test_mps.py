"""The private MPS daemon's lifecycle (engine.mps), against tests/fakes/fake_mps_control.py: CI has no
NVIDIA driver, so this checks what the service does with the daemon (start, wait, env, quit, no
orphan on any way out), not MPS itself (docs/gpu-performance.md measures that on a GPU)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.mps import CONTROL, MpsDaemon, MpsError

FAKE = Path(__file__).resolve().parents[2] / "fakes" / "fake_mps_control.py"


@pytest.fixture
def binary(tmp_path: Path) -> str:
    """The fake, as an executable named like the real control binary."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    path = bin_dir / CONTROL
    path.write_text(f'#!/bin/sh\nexec {sys.executable} {FAKE} "$@"\n')
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def daemon(tmp_path: Path, binary: str) -> Iterator[MpsDaemon]:
    d = MpsDaemon(tmp_path / "mps", binary=binary)
    yield d
    d.stop(grace=2.0)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _server_pid(daemon: MpsDaemon) -> int:
    return int((daemon.pipe_dir / "server.pid").read_text())


def test_start_listens_and_gives_the_engines_its_private_directories(daemon: MpsDaemon) -> None:
    daemon.start(timeout=10)
    assert (daemon.pipe_dir / "control").exists()
    assert daemon.env() == {
        "CUDA_MPS_PIPE_DIRECTORY": str(daemon.pipe_dir),
        "CUDA_MPS_LOG_DIRECTORY": str(daemon.log_dir),
    }
    assert daemon.pipe_dir.stat().st_mode & 0o777 == 0o700  # only this user's processes join it
    pid, server = daemon.pid, _server_pid(daemon)
    assert pid is not None and _alive(pid) and _alive(server)
    daemon.stop(grace=5)
    assert _gone(pid) and _gone(server)
    daemon.stop()  # idempotent


def test_a_server_that_outlives_the_quit_is_killed(daemon: MpsDaemon, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_MPS_ORPHAN", "1")
    daemon.start(timeout=10)
    server = _server_pid(daemon)
    daemon.stop(grace=5)
    assert _gone(server)


@pytest.mark.parametrize(("fail", "why"), [("exit", "exited with code 3"), ("silent", "did not listen within 1 s")])
def test_a_daemon_that_does_not_start_raises_and_leaves_nothing(
    daemon: MpsDaemon, monkeypatch: pytest.MonkeyPatch, fail: str, why: str
) -> None:
    monkeypatch.setenv("FAKE_MPS_FAIL", fail)
    with pytest.raises(MpsError, match=why):
        daemon.start(timeout=1)
    assert daemon.pid is not None and _gone(daemon.pid)
    if fail == "silent":
        assert _gone(_server_pid(daemon))


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_the_daemon_dies_with_the_service(
    tmp_path: Path, binary: str, sig: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service killed (even SIGKILL, which runs no cleanup): the keeper quits the daemon, and kills the
    daemon's server even where the server would outlive the quit (FAKE_MPS_ORPHAN)."""
    monkeypatch.setenv("FAKE_MPS_ORPHAN", "1")
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from engine.mps import MpsDaemon
        d = MpsDaemon(Path({str(tmp_path / "svc")!r}), binary={binary!r})
        d.start(timeout=10)
        print(d.pid, flush=True)
        time.sleep(600)
        """
    )
    root = Path(__file__).resolve().parents[3]
    service = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=root, env={**os.environ, "PYTHONPATH": str(root)}
    )
    assert service.stdout is not None
    pid = int(service.stdout.readline())
    server = int((tmp_path / "svc" / "pipe" / "server.pid").read_text())
    daemon = int(subprocess.check_output(["pgrep", "-P", str(pid)]).split()[0])
    service.send_signal(sig)
    service.wait(10)
    assert _gone(pid) and _gone(daemon) and _gone(server)


@pytest.mark.skipif(shutil.which(CONTROL) is None, reason="no NVIDIA driver utilities here")
def test_the_real_control_binary_starts_and_quits(tmp_path: Path) -> None:  # pragma: no cover - GPU hosts
    d = MpsDaemon(tmp_path / "mps", binary=shutil.which(CONTROL) or CONTROL)
    d.start()
    pid = d.pid
    d.stop()
    assert pid is not None and _gone(pid)
