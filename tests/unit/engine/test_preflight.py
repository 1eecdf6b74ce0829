"""Pre-flight checks: each wrong start fails at once with one line and a cause (no engine, no network)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from engine import FAMILIES, EngineConfig, EngineStartError, LaunchMode
from engine.preflight import DeviceMemory, check_fits, check_model, hf_cache_dir, preflight, weight_bytes

OFFLINE = {"HF_HUB_OFFLINE": "1"}


def config(model: str, **kw: object) -> EngineConfig:
    base: dict[str, object] = {
        "model": model,
        "served_model_name": "m",
        "port": 1,
        "family": FAMILIES["cross-encoder"],
        "device": "cpu",
        "dtype": "float32",
        "launch": LaunchMode(("python", "-m", "vllm.entrypoints.openai.api_server"), False),
    }
    return EngineConfig(**{**base, **kw})  # type: ignore[arg-type]


def cause_of(exc: pytest.ExceptionInfo[EngineStartError]) -> str:
    assert "\n" not in exc.value.message
    return exc.value.cause


def cached_model(home: Path, repo: str, files: dict[str, bytes]) -> Path:
    """A Hugging Face cache entry as huggingface_hub writes it (refs/main → snapshots/<hash>/...)."""
    entry = home / "hub" / ("models--" + repo.replace("/", "--"))
    snap = entry / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text("abc123")
    for name, data in files.items():
        (snap / name).write_bytes(data)
    return snap


def test_missing_local_path_is_bad_model(tmp_path: Path) -> None:
    with pytest.raises(EngineStartError) as exc:
        check_model(str(tmp_path / "missing-model"), environ=OFFLINE)
    assert cause_of(exc) == "bad_model" and "does not exist" in exc.value.message


def test_directory_without_config_is_bad_model(tmp_path: Path) -> None:
    with pytest.raises(EngineStartError) as exc:
        check_model(str(tmp_path), environ=OFFLINE)
    assert cause_of(exc) == "bad_model" and "config.json" in exc.value.message


def test_name_that_is_no_path_and_no_hub_id_is_bad_model() -> None:
    with pytest.raises(EngineStartError) as exc:
        check_model("not a model!", environ=OFFLINE)
    assert cause_of(exc) == "bad_model"


def test_hub_id_found_in_the_cache_that_hf_home_names(tmp_path: Path) -> None:
    cached_model(tmp_path, "org/tiny", {"config.json": b"{}"})
    assert hf_cache_dir({"HF_HOME": str(tmp_path)}) == tmp_path / "hub"
    assert check_model("org/tiny", environ={"HF_HOME": str(tmp_path), **OFFLINE}) == "cache"
    with pytest.raises(EngineStartError) as exc:  # the same id, another cache: not there
        check_model("org/tiny", environ={"HF_HOME": str(tmp_path / "other"), **OFFLINE})
    assert cause_of(exc) == "not_cached" and "HF_HUB_OFFLINE" in exc.value.message


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """huggingface_hub reads HF_HUB_OFFLINE once, at import (the test session sets it): online for this test."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.mark.usefixtures("online")
def test_unreachable_hub_is_network_not_bad_model(tmp_path: Path) -> None:
    env = {"HF_HOME": str(tmp_path), "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"}
    started = time.monotonic()
    with pytest.raises(EngineStartError) as exc:
        check_model("org/tiny", environ=env, timeout=3)
    assert cause_of(exc) == "network" and "cannot be reached" in exc.value.message
    assert time.monotonic() - started < 10


@pytest.fixture
def hub() -> Iterator[str]:
    """A stand-in for the hub's model API: org/real exists, anything else is RepoNotFound."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.startswith("/api/models/org/real"):
                body = json.dumps({"id": "org/real", "modelId": "org/real", "sha": "abc", "private": False}).encode()
                self.send_response(200)
            else:
                body = b'{"error": "Repository not found"}'
                self.send_response(404)
                self.send_header("X-Error-Code", "RepoNotFound")
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.mark.usefixtures("online")
def test_hub_answers_tell_a_missing_model_from_a_real_one(tmp_path: Path, hub: str) -> None:
    env = {"HF_HOME": str(tmp_path), "HF_ENDPOINT": hub}
    assert check_model("org/real", environ=env) == "hub"
    with pytest.raises(EngineStartError) as exc:
        check_model("org/typo", environ=env)
    assert cause_of(exc) == "bad_model" and "no model 'org/typo'" in exc.value.message


def test_weights_on_disk_are_scaled_to_the_engine_dtype(tmp_path: Path) -> None:
    cfg = json.dumps({"torch_dtype": "bfloat16"}).encode()
    snap = cached_model(tmp_path, "org/tiny", {"config.json": cfg, "model.safetensors": b"\0" * 1000})
    env = {"HF_HOME": str(tmp_path)}
    assert weight_bytes(config("org/tiny", dtype="float32"), environ=env)[0] == 2000  # type: ignore[index]
    assert weight_bytes(config("org/tiny", dtype="bfloat16"), environ=env)[0] == 1000  # type: ignore[index]
    assert weight_bytes(config(str(snap), dtype=None), environ=env)[0] == 1000  # type: ignore[index]


def test_model_size_preset_too_large_for_the_device_fails_before_any_download() -> None:
    big = config("Qwen/Qwen3-Reranker-8B", family=FAMILIES["llm-reranker"])
    with pytest.raises(EngineStartError) as exc:  # offline and not cached, yet the size speaks first
        preflight(big, environ=OFFLINE, memory=lambda c: DeviceMemory(16_000_000_000, "16.0 GB of RAM"))
    assert cause_of(exc) == "too_large"
    assert "Qwen/Qwen3-Reranker-8B needs ~32.8 GB" in exc.value.message and "16.0 GB of RAM" in exc.value.message
    check_fits(big, weights=(10, "x"), memory=DeviceMemory(11, "y"))  # fits: no error
    check_fits(big, weights=None, memory=DeviceMemory(1, "y"))  # unknown size: no error


def test_gpu_preset_counts_two_bytes_a_parameter_and_the_memory_share() -> None:
    gpu = config("Qwen/Qwen3-Reranker-4B", device="cuda", dtype=None, family=FAMILIES["llm-reranker"])
    weights = weight_bytes(gpu, environ=OFFLINE)
    assert weights is not None and weights[0] == 8_000_000_000
