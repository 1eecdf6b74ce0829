"""engine.sizing.gpu_total_bytes: the card's memory without nvidia-ml-py (a `pip install vllm` has none)."""

from __future__ import annotations

import subprocess
import types

import pytest

from engine import sizing


class _FakeNvml(types.SimpleNamespace):
    def __init__(self, total: int) -> None:
        super().__init__(calls=[])
        self.total = total

    def nvmlInit(self) -> None:
        self.calls.append("init")

    def nvmlShutdown(self) -> None:
        self.calls.append("shutdown")

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        self.calls.append(f"index {index}")
        return "handle"

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        self.calls.append(f"uuid {uuid}")
        return "handle"

    def nvmlDeviceGetMemoryInfo(self, handle: str) -> types.SimpleNamespace:
        return types.SimpleNamespace(total=self.total)


def _missing() -> None:
    raise ImportError("not installed")


def test_vllms_own_pynvml_is_used_when_nvidia_ml_py_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _FakeNvml(80 * 2**30)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(sizing, "_pynvml", _missing)
    monkeypatch.setattr(sizing, "_vllm_pynvml", lambda: fake)
    assert sizing.gpu_total_bytes() == 80 * 2**30
    assert fake.calls == ["init", "index 0", "shutdown"]


def test_the_visible_device_is_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _FakeNvml(141 * 2**30)
    monkeypatch.setattr(sizing, "_pynvml", lambda: fake)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    assert sizing.gpu_total_bytes(1) == 141 * 2**30
    assert "index 1" in fake.calls
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-5e1d,2")
    fake.calls.clear()
    sizing.gpu_total_bytes()
    assert "uuid GPU-5e1d" in fake.calls
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert sizing.gpu_total_bytes() is None  # no GPU visible: nothing asked


def test_nvidia_smi_is_the_last_resort(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(sizing, "_pynvml", _missing)
    monkeypatch.setattr(sizing, "_vllm_pynvml", _missing)
    seen: list[list[str]] = []

    def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, stdout="81559\n", stderr="")

    monkeypatch.setattr(sizing.subprocess, "run", run)
    assert sizing.gpu_total_bytes() == 81559 * 2**20
    assert seen[0][:2] == ["nvidia-smi", "--id=0"]

    def fail(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        raise FileNotFoundError("nvidia-smi")

    monkeypatch.setattr(sizing.subprocess, "run", fail)
    assert sizing.gpu_total_bytes() is None


def test_vllms_copy_loads_from_its_file_without_importing_vllm() -> None:
    import importlib.util
    import sys

    assert importlib.util.find_spec("vllm") is not None  # the service's own dependency
    before = "vllm" in sys.modules
    module = sizing._vllm_pynvml()
    assert hasattr(module, "nvmlDeviceGetMemoryInfo")
    assert ("vllm" in sys.modules) == before


def test_an_out_of_memory_retry_scales_an_explicit_kv_budget_with_the_share() -> None:
    from engine.gpu_starts import scaled_kv_budget as _scaled_kv_budget

    assert _scaled_kv_budget(("--kv-cache-memory-bytes", "1000", "--seed", "1"), 0.5) == (
        "--kv-cache-memory-bytes",
        "500",
        "--seed",
        "1",
    )
    assert _scaled_kv_budget(("--kv-cache-memory-bytes=1000",), 0.75) == ("--kv-cache-memory-bytes=750",)
    assert _scaled_kv_budget(("--seed", "1"), 0.5) == ("--seed", "1")
