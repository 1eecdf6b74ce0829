"""plan_engines with --mps: the private daemon starts before any engine, its directories reach the engines
that join it, cleanup() stops it; a daemon that cannot start is a warning on auto and an error on on.
Against tests/fakes/fake_mps_control.py (CI has no NVIDIA driver)."""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

import pytest

from engine import mps as mps_
from engine.mps import CONTROL, MpsError
from gateway.launch import plan_engines
from gateway.settings import Settings
from gateway.topology import Topology, plan_topology
from tests.unit.engine.test_mps import _gone
from tests.unit.gateway.test_many_models import QWEN_06B, _qwen_dir

FAKE = Path(__file__).resolve().parents[2] / "fakes" / "fake_mps_control.py"


def _binary(tmp_path: Path) -> str:
    path = tmp_path / CONTROL
    path.write_text(f'#!/bin/sh\nexec {sys.executable} {FAKE} "$@"\n')
    path.chmod(0o755)
    return str(path)


def _settings(tmp_path: Path, **kw: object) -> tuple[Settings, Topology]:
    s = Settings(model=(_qwen_dir(tmp_path, QWEN_06B),), model_format="qwen3-reranker", **kw)
    binary = _binary(tmp_path)
    topo = plan_topology(s, device="cuda", cpu_count=16, gpu_bytes=80 * 2**30, which=lambda _: binary, environ={})
    return s, topo


def test_the_daemon_runs_for_the_engines_and_stops_with_cleanup(tmp_path: Path) -> None:
    s, topo = _settings(tmp_path, runtime_dir=str(tmp_path / "rt"))
    engines = plan_engines(s, topo, ports=[])
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
        engines = plan_engines(s, topo, ports=[])
    assert engines.mps is None
    assert not any("CUDA_MPS_PIPE_DIRECTORY" in c.env({}) for c in engines.configs)
    assert "mps_unavailable" in caplog.text and "exited with code 3" in caplog.text
    engines.cleanup()
    (tmp_path / "on").mkdir()
    on, topo_on = _settings(tmp_path / "on", runtime_dir=str(tmp_path / "rt2"), mps="on")
    with pytest.raises(MpsError, match="exited with code 3"):
        plan_engines(on, topo_on, ports=[])
    made: list[Path] = []

    def mkdtemp(prefix: str = "") -> str:
        made.append(tmp_path / f"made{len(made)}")
        made[-1].mkdir()
        return str(made[-1])

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    with pytest.raises(MpsError):  # the dirs of its own making (runtime, sockets) are removed again
        plan_engines(on.replace(runtime_dir=None), topo_on, ports=[])
    assert made and not any(d.exists() for d in made)


def test_a_gpu_that_cannot_take_the_daemon_is_skipped_on_auto(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(mps_, "mps_refusal", lambda: "GPU 0 has MIG enabled")
    s, topo = _settings(tmp_path, runtime_dir=str(tmp_path / "rt"))
    with caplog.at_level(logging.INFO, logger="vllm_rerank"):
        engines = plan_engines(s, topo, ports=[])
    assert engines.mps is None and "mps_skipped reason='GPU 0 has MIG enabled'" in caplog.text
    engines.cleanup()
    (tmp_path / "on").mkdir()
    on, topo_on = _settings(tmp_path / "on", runtime_dir=str(tmp_path / "rt2"), mps="on")
    forced = plan_engines(on, topo_on, ports=[])  # the user's call
    assert forced.mps is not None
    forced.cleanup()


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ("0, Default, Disabled\n1, Default, [N/A]\n", None),
        ("0, Default, Disabled\n1, Exclusive_Process, Disabled\n", "GPU 1 is in compute mode Exclusive_Process"),
        ("0, Default, Enabled\n", "GPU 0 has MIG enabled"),
    ],
)
def test_mps_refusal_reads_nvidia_smi(tmp_path: Path, answer: str, why: str | None) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\nprintf '{answer}'\n")
    smi.chmod(0o755)
    assert mps_.mps_refusal(str(smi)) == why
    broken = tmp_path / "broken-smi"
    broken.write_text("#!/bin/sh\nexit 9\n")
    broken.chmod(0o755)
    assert mps_.mps_refusal(str(broken)) is None
