"""Command line and environment → `Settings`: one table of options, CLI > env > default.

The origin guide's names work as written (WORKERS, MAX_NUM_SEQS, MAX_NUM_BATCHED_TOKENS,
GPU_MEMORY_UTILIZATION, MAX_WORKERS, TENSOR_PARALLEL_SIZE, MODEL_SIZE), plus MODEL, HOST, PORT,
LOG_LEVEL; the service's own extras use the RERANK_ prefix. Flags this parser does not know are
passed verbatim to `vllm serve`. This is the only module that reads os.environ for settings.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from typing import Any

from engine import FAMILIES, QWEN3_PRESETS
from gateway.settings import Settings, SettingsError

__all__ = ["OPTIONS", "build_parser", "parse_settings"]

# (flag, env var, type, help). Booleans are parsed from env as 1/true/yes/on.
OPTIONS: list[tuple[str, str, Any, str]] = [
    ("--host", "HOST", str, "Address the HTTP API binds to."),
    ("--port", "PORT", int, "Port of the HTTP API."),
    ("--workers", "WORKERS", int, "Gateway worker processes (all share one engine)."),
    ("--max-workers", "MAX_WORKERS", int, "Threads per worker for CPU-bound request work (parsing, rendering)."),
    ("--max-num-seqs", "MAX_NUM_SEQS", int, "vLLM --max-num-seqs: (query, document) pairs scheduled at once."),
    ("--max-num-batched-tokens", "MAX_NUM_BATCHED_TOKENS", int, "vLLM --max-num-batched-tokens per engine step."),
    (
        "--gpu-memory-utilization",
        "GPU_MEMORY_UTILIZATION",
        float,
        "vLLM --gpu-memory-utilization (GPU only; share of GPU memory for weights + KV cache).",
    ),
    ("--tensor-parallel-size", "TENSOR_PARALLEL_SIZE", int, "vLLM --tensor-parallel-size (GPUs per engine)."),
    ("--model-size", "MODEL_SIZE", str, "Qwen3-Reranker preset: 0.6B, 4B or 8B (Qwen/Qwen3-Reranker-*)."),
    ("--model", "MODEL", str, "Model id or local path (wins over --model-size). Default: bundled all-MiniLM-L6-v2."),
    ("--served-model-name", "RERANK_SERVED_MODEL_NAME", str, "Name the model is served and reported under."),
    (
        "--model-family",
        "RERANK_MODEL_FAMILY",
        str,
        "Override family detection: bi-encoder, cross-encoder or llm-reranker.",
    ),
    ("--max-model-len", "RERANK_MAX_MODEL_LEN", int, "vLLM --max-model-len (query+document tokens per pair)."),
    ("--dtype", "RERANK_DTYPE", str, "vLLM --dtype (default float32 on CPU, auto on GPU)."),
    ("--enforce-eager", "RERANK_ENFORCE_EAGER", bool, "vLLM --enforce-eager (default on for CPU: faster start)."),
    ("--engine-port", "RERANK_ENGINE_PORT", int, "Loopback port of the first engine (0 = pick free ones)."),
    (
        "--engine-replicas",
        "RERANK_ENGINE_REPLICAS",
        int,
        "Engine processes to run and balance over (least outstanding work). On one GPU they share its memory "
        "(--gpu-memory-utilization is split between them); with --engine-devices each gets its own GPUs. "
        "0 = auto: for encoder models (cross-/bi-encoders) on a GPU, round((host cores - 2) / 1.8) up to 8, "
        "since one vLLM API server is CPU-bound long before the GPU is (docs/gpu-performance.md); else 1.",
    ),
    (
        "--engine-url",
        "RERANK_ENGINE_URLS",
        list,
        "Use an existing vLLM server instead of launching one (repeatable; env: comma-separated). Requests go to "
        "the least loaded ready one; a dead one is skipped and re-checked every second.",
    ),
    (
        "--engine-devices",
        "RERANK_ENGINE_DEVICES",
        list,
        "CUDA_VISIBLE_DEVICES per replica, e.g. --engine-devices 0 --engine-devices 1 (env: 0;1 or 0,1 per "
        "replica separated by ';').",
    ),
    ("--ready-timeout", "RERANK_READY_TIMEOUT", float, "Seconds to wait for the engine to become ready."),
    ("--request-timeout", "RERANK_REQUEST_TIMEOUT", float, "Deadline of one rerank request, seconds."),
    ("--stop-grace", "RERANK_STOP_GRACE", float, "Seconds the engine gets after SIGTERM before SIGKILL."),
    ("--log-level", "LOG_LEVEL", str, "debug, info, warning or error."),
    (
        "--strict-model-names",
        "RERANK_STRICT_MODEL_NAMES",
        bool,
        "Answer 404 for model names other than the served name and its aliases.",
    ),
    ("--model-alias", "RERANK_MODEL_ALIASES", list, "Extra accepted model name (repeatable; env: comma-separated)."),
    ("--runtime-dir", "RERANK_RUNTIME_DIR", str, "Directory for the engine state file (default: a temp dir)."),
    ("--device", "RERANK_DEVICE", str, "cpu or cuda (default: detected from the installed vLLM build)."),
    (
        "--api-key",
        "RERANK_API_KEYS",
        list,
        "Accepted bearer key (repeatable; env: comma-separated). With none set (and no key file) auth is off.",
    ),
    (
        "--api-key-file",
        "RERANK_API_KEY_FILE",
        str,
        "File with one accepted key per line; re-read when it changes (rotation without restart).",
    ),
    ("--protect-ops", "RERANK_PROTECT_OPS", bool, "Require the key on /health and /metrics too."),
    ("--max-body-bytes", "RERANK_MAX_BODY_BYTES", int, "Largest request body accepted (413 beyond)."),
    ("--max-documents", "RERANK_MAX_DOCUMENTS", int, "Most documents per request (400 beyond; at most 10000)."),
    (
        "--max-inflight-pairs",
        "RERANK_MAX_INFLIGHT_PAIRS",
        int,
        "(query, document) pairs in flight per service before 429 + Retry-After (split over workers; default: "
        "32 x max-num-seqs x engines per worker).",
    ),
    (
        "--score-cache-size",
        "RERANK_SCORE_CACHE_SIZE",
        int,
        "Entries of the (model, query, document, settings) score cache per worker; 0 = off.",
    ),
    (
        "--pretokenize",
        "RERANK_PRETOKENIZE",
        str,
        "auto or off. auto: for an LLM reranker served with the built-in Qwen3 template, the gateway renders and "
        "tokenises each (query, document) prompt itself and sends token ids to vLLM's /classify instead of texts "
        "to /score: same scores, and vLLM's single-threaded API server (the bottleneck on a GPU) no longer "
        "templates and tokenises every pair. Requests that need truncation, chunking or raw scores, and other "
        "models, always use /score. off: always /score.",
    ),
    (
        "--max-engine-crashes",
        "RERANK_MAX_ENGINE_CRASHES",
        int,
        "Crashes tolerated within --crash-window; one more marks the engine failed (health 503).",
    ),
    ("--crash-window", "RERANK_CRASH_WINDOW", float, "Window for counting engine crashes, seconds."),
    (
        "--restart-backoff-cap",
        "RERANK_RESTART_BACKOFF_CAP",
        float,
        "Longest wait before restarting a crashed engine (backoff 1, 2, 4... seconds up to this).",
    ),
    (
        "--engine-command",
        "RERANK_ENGINE_COMMAND",
        str,
        "Replace the engine launcher (default: `vllm serve` or `python -m vllm.entrypoints.openai.api_server`), "
        "e.g. a wrapper script; it receives the usual vLLM arguments.",
    ),
]


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _field_name(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _dest(flag: str) -> str:
    name = _field_name(flag)
    return {"model_alias": "model_aliases", "engine_url": "engine_urls", "api_key": "api_keys"}.get(name, name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="start_service.py",
        description="vllm-rerank: a drop-in rerank API (Cohere, Jina, Voyage, TEI, vLLM dialects) in front of a "
        "supervised vLLM engine. Every flag can also be set by the env var named in brackets; a flag wins over "
        "its env var, the env var over the default. Unknown flags are passed to `vllm serve` as they are.",
        allow_abbrev=False,
    )
    defaults = Settings()
    for flag, env, typ, help_text in OPTIONS:
        name = _dest(flag)
        default = getattr(defaults, name)
        shown = f"{help_text} [env {env}; default {default!r}]"
        if typ is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=shown)
        elif typ is list:
            parser.add_argument(flag, dest=name, action="append", default=None, help=shown)
        elif name == "model_size":
            parser.add_argument(flag, dest=name, choices=sorted(QWEN3_PRESETS), default=None, help=shown)
        else:
            parser.add_argument(flag, dest=name, type=typ, default=None, help=shown)
    return parser


def parse_settings(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from argv and the environment.

    Raises:
        SettingsError: a bad value (the message names the flag or env var).
        SystemExit: for --help, or argparse errors on known flags.
    """
    env = os.environ if environ is None else environ
    argv = list(argv)
    passthrough: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1 :]
    parser = build_parser()
    ns, unknown = parser.parse_known_args(argv)
    values: dict[str, Any] = {}
    for flag, env_name, typ, _ in OPTIONS:
        name = _dest(flag)
        cli_value = getattr(ns, name)
        if cli_value is not None:
            values[name] = tuple(cli_value) if typ is list else cli_value
            continue
        raw = env.get(env_name)
        if raw is None or raw == "":
            continue
        try:
            if typ is bool:
                values[name] = _bool(raw)
            elif typ is list:
                sep = ";" if name == "engine_devices" else ","
                values[name] = tuple(a.strip() for a in raw.split(sep) if a.strip())
            else:
                values[name] = typ(raw)
        except ValueError as exc:
            raise SettingsError(f"env {env_name}={raw!r}: {exc}") from exc
    values["vllm_args"] = tuple(unknown + passthrough)
    settings = Settings(**values)
    _validate(settings)
    return settings


def _validate(s: Settings) -> None:
    if s.model_size is not None and s.model_size not in QWEN3_PRESETS:
        raise SettingsError(f"--model-size/MODEL_SIZE must be one of {sorted(QWEN3_PRESETS)}, got {s.model_size!r}")
    if s.model_family is not None and s.model_family not in FAMILIES:
        raise SettingsError(f"--model-family must be one of {sorted(FAMILIES)}, got {s.model_family!r}")
    if s.engine_replicas < 0:
        raise SettingsError("--engine-replicas must be >= 0 (0 = auto)")
    for name in ("workers", "max_workers", "max_num_seqs", "tensor_parallel_size"):
        if getattr(s, name) < 1:
            raise SettingsError(f"--{name.replace('_', '-')} must be at least 1")
    if s.max_num_batched_tokens is not None and s.max_num_batched_tokens < 1:
        raise SettingsError("--max-num-batched-tokens must be at least 1")
    if s.gpu_memory_utilization is not None and not 0.0 < s.gpu_memory_utilization <= 1.0:
        raise SettingsError("--gpu-memory-utilization must be in (0, 1]")
    if not 0 <= s.port <= 65535 or not 0 <= s.engine_port <= 65535:
        raise SettingsError("ports must be in 0..65535")
    if s.engine_port and s.engine_port == s.port:
        raise SettingsError("--engine-port must differ from --port")
    if s.log_level.lower() not in ("debug", "info", "warning", "error", "critical"):
        raise SettingsError(f"--log-level: unknown level {s.log_level!r}")
    if not 1 <= s.max_documents <= 10_000:
        raise SettingsError("--max-documents must be in 1..10000")
    if s.max_body_bytes < 1024:
        raise SettingsError("--max-body-bytes must be at least 1024")
    if s.score_cache_size < 0:
        raise SettingsError("--score-cache-size must be >= 0")
    if s.pretokenize not in ("auto", "off"):
        raise SettingsError(f"--pretokenize/RERANK_PRETOKENIZE must be auto or off, got {s.pretokenize!r}")
    if s.device is not None and s.device not in ("cpu", "cuda"):
        raise SettingsError("--device must be cpu or cuda")
