"""The engine command line and environment built from a config (no process started)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from engine import FAMILIES, EngineConfig, LaunchMode
from engine.config import QWEN3_TEMPLATE, detect_launch_mode
from engine.supervisor import EngineSupervisor


def cfg(**kw: object) -> EngineConfig:
    base: dict[str, object] = {
        "model": "/models/m",
        "served_model_name": "m",
        "port": 4321,
        "family": FAMILIES["cross-encoder"],
        "launch": LaunchMode((sys.executable, "-m", "vllm.entrypoints.openai.api_server"), False),
    }
    base.update(kw)
    return EngineConfig(**base)  # type: ignore[arg-type]


def test_module_launch_uses_model_flag_and_loopback() -> None:
    argv = cfg().argv()
    assert argv[:3] == [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    assert argv[argv.index("--model") + 1] == "/models/m"
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--port") + 1] == "4321"
    assert argv[argv.index("--served-model-name") + 1] == "m"


def test_console_script_launch_takes_model_positionally() -> None:
    argv = cfg(launch=LaunchMode(("/venv/bin/vllm", "serve"), True)).argv()
    assert argv[:3] == ["/venv/bin/vllm", "serve", "/models/m"]
    assert "--model" not in argv


def test_concurrency_flags_are_passed() -> None:
    argv = cfg(
        max_num_seqs=1024,
        max_num_batched_tokens=32768,
        gpu_memory_utilization=0.9,
        tensor_parallel_size=2,
        device="cuda",
    ).argv()
    pairs = {argv[i]: argv[i + 1] for i in range(len(argv) - 1)}
    assert pairs["--max-num-seqs"] == "1024"
    assert pairs["--max-num-batched-tokens"] == "32768"
    assert pairs["--gpu-memory-utilization"] == "0.9"
    assert pairs["--tensor-parallel-size"] == "2"


def test_gpu_memory_flag_is_not_sent_to_the_cpu_build() -> None:
    assert "--gpu-memory-utilization" not in cfg(gpu_memory_utilization=0.9, device="cpu").argv()


def test_user_pass_through_flags_win() -> None:
    argv = cfg(max_num_seqs=8, extra_args=("--max-num-seqs", "99", "--enforce-eager"), enforce_eager=True).argv()
    assert argv.count("--max-num-seqs") == 1 and argv[-3:] == ["--max-num-seqs", "99", "--enforce-eager"]
    assert argv.count("--enforce-eager") == 1


def test_effective_args_show_the_kv_budget_and_api_servers_the_engine_runs_with() -> None:
    args = cfg(
        device="cuda", extra_args=("--kv-cache-memory-bytes", "7000000000", "--api-server-count=2")
    ).effective_args()
    assert (args.kv_cache_memory_bytes, args.api_server_count) == (7_000_000_000, 2)
    plain = cfg(device="cuda").effective_args()
    assert (plain.kv_cache_memory_bytes, plain.api_server_count) == (None, None)


def test_hf_overrides_are_json() -> None:
    argv = cfg(hf_overrides={"a": [1]}).argv()
    assert json.loads(argv[argv.index("--hf-overrides") + 1]) == {"a": [1]}


def test_env_for_cpu_and_gpu() -> None:
    cpu = cfg(device="cpu").env({})
    assert cpu["VLLM_CPU_KVCACHE_SPACE"] == "1" and cpu["VLLM_NO_USAGE_STATS"] == "1"
    gpu = cfg(device="cuda", extra_env=(("CUDA_VISIBLE_DEVICES", "1"),)).env({"NCCL_NVLS_ENABLE": "1"})
    assert gpu["NCCL_NVLS_ENABLE"] == "1"  # a value the operator set is kept
    assert cfg(device="cuda").env({})["NCCL_NVLS_ENABLE"] == "0"
    assert gpu["CUDA_VISIBLE_DEVICES"] == "1"


def test_engine_does_not_share_the_callers_prometheus_dir() -> None:
    assert "PROMETHEUS_MULTIPROC_DIR" not in cfg().env({"PROMETHEUS_MULTIPROC_DIR": "/run/gateway-metrics"})


def test_api_key_is_redacted_in_logged_command() -> None:
    shown = " ".join(cfg(extra_args=("--api-key", "s3cret")).redacted_argv())
    assert "s3cret" not in shown


def test_cpu_build_is_launched_as_a_module() -> None:
    # This test environment has vllm-cpu, whose `vllm` console script is broken.
    mode = detect_launch_mode()
    assert mode.prefix[1:] == ("-m", "vllm.entrypoints.openai.api_server") and not mode.model_positional


def test_vllm_without_its_console_script_is_launched_as_vllm_serve(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A `vllm` installed with `pip --target` has no `vllm` script: its CLI module still gives
    `vllm serve`, whose serve-only flags (--api-server-count) the api_server module ignores."""
    import engine.config as config_module

    monkeypatch.setattr(config_module.importlib.metadata, "version", lambda dist: "0.26.0")
    monkeypatch.setattr(config_module.shutil, "which", lambda name: None)
    python = str(tmp_path / "python3")  # no `vllm` beside it
    mode = detect_launch_mode(python)
    assert mode.prefix == (python, "-m", "vllm.entrypoints.cli.main", "serve") and mode.model_positional
    argv = cfg(launch=mode).argv()
    assert argv[:5] == [python, "-m", "vllm.entrypoints.cli.main", "serve", argv[4]] and "--model" not in argv


def test_prompt_format_is_published_only_for_our_template_and_tokenizer() -> None:
    """Callers may build the prompts themselves (pre-tokenised /classify) only when the engine
    renders our own template with the model's tokenizer."""
    llm = {"family": FAMILIES["llm-reranker"], "chat_template": str(QWEN3_TEMPLATE)}
    assert cfg(**llm).prompt_format == "qwen3-reranker"
    assert EngineSupervisor(cfg(**llm)).snapshot().prompt_format == "qwen3-reranker"
    assert cfg().prompt_format is None  # cross-encoder: no template
    assert cfg(family=FAMILIES["llm-reranker"], chat_template="/elsewhere/qwen3_reranker.jinja").prompt_format is None
    for passed in (
        ("--chat-template", "/t.jinja"),
        ("--chat-template=/t.jinja",),
        ("--tokenizer", "/tok"),
        ("--revision", "abc"),
        ("--tokenizer-mode", "slow"),
    ):
        config = cfg(**llm, extra_args=passed)
        assert config.prompt_format is None, passed
        assert EngineSupervisor(config).snapshot().prompt_format is None
