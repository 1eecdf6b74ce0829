"""plan_engines with --mps: the private daemon starts before any engine, its directories reach the engines
that join it, cleanup() stops it; a daemon that cannot start is a warning on auto and an error on on.
Against tests/fakes/fake_mps_control.py (CI has no NVIDIA driver)."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import pytest

from engine.mps import CONTROL, MpsError
from gateway.launch import plan_engines
from gateway.settings import Settings
from gateway.topology import plan_topology
from tests.unit.gateway.test_many_models import QWEN_06B, _qwen_dir

FAKE = Path(__file__).resolve().parents[2] / "fakes" / "fake_mps_control.py"


def _binary(tmp_path: Path) -> str:
    path = tmp_path / CONTROL
    path.write_text(f'#!/bin/sh\nexec {sys.executable} {FAKE} "$@"\n')
    path.chmod(0o755)
    return str(path)


def _settings(tmp_path: Path, **kw: object) -> tuple[Settings, object]:
    s = Settings(model=(_qwen_dir(tmp_path, QWEN_06B),), model_format="qwen3-reranker", **kw)
    binary = _binary(tmp_path)
    topo = plan_topology(s, device="cuda", cpu_count=16, gpu_bytes=80 * 2**30, which=lambda _: binary, environ={})
    return s, topo


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1][:3]:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_the_daemon_runs_for_the_engines_and_stops_with_cleanup(tmp_path: Path) -> None:
    s, topo = _settings(tmp_path, runtime_dir=str(tmp_path / "rt"))
    engines = plan_engines(s, topo, ports=[])  # type: ignore[arg-type]
    try:
        assert engines.mps is not None and engines.mps.pid is not None
        pipe = engines.mps.pipe_dir
        assert (pipe / "control").exists()
        assert {c.env({}).get("CUDA_MPS_PIPE_DIRECTORY") for c in engines.configs} == {str(pipe)}
    finally:
        daemon = engines.mps
        engines.cleanup()
    assert daemon is not None and daemon.pid is not None and _gone(daemon.pid)
    assert engines.mps is None and not pipe.exists()


def test_a_daemon_that_cannot_start_is_a_warning_on_auto_and_an_error_on_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("FAKE_MPS_FAIL", "exit")
    s, topo = _settings(tmp_path, runtime_dir=str(tmp_path / "rt"))
    with caplog.at_level(logging.WARNING, logger="vllm_rerank"):
        engines = plan_engines(s, topo, ports=[])  # type: ignore[arg-type]
    assert engines.mps is None
    assert not any("CUDA_MPS_PIPE_DIRECTORY" in c.env({}) for c in engines.configs)
    assert "mps_unavailable" in caplog.text and "exited with code 3" in caplog.text
    engines.cleanup()
    (tmp_path / "on").mkdir()
    on, topo_on = _settings(tmp_path / "on", runtime_dir=str(tmp_path / "rt2"), mps="on")
    with pytest.raises(MpsError, match="exited with code 3"):
        plan_engines(on, topo_on, ports=[])  # type: ignore[arg-type]
