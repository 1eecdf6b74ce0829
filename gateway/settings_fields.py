"""The service's options, declared once: each field carries its flag, env var(s), default, help and checks.

`SettingsFields` holds every option, in the order `--help` lists them (`gateway.cli` generates the
command line from these fields), and the checks that look at one option's value alone. Build a
`gateway.settings.Settings`, never this: it adds the checks across options, the served models and
where the values come from (flag > env > config file > default, and no environment in code).

The origin guide's names work as written (WORKERS, MAX_NUM_SEQS, MAX_NUM_BATCHED_TOKENS,
GPU_MEMORY_UTILIZATION, MAX_WORKERS, TENSOR_PARALLEL_SIZE, MODEL_SIZE), plus MODEL, HOST, PORT,
LOG_LEVEL; the service's own extras use the RERANK_ prefix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, JsonValue, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from engine.formats import FORMATS
from engine.logs import EngineLogLevel
from gateway.model_specs import FormatName, ModelSpec

__all__ = ["SettingsFields", "opt"]


def opt(default: Any, env: str, help: str, *, flag: str | None = None, **checks: Any) -> Any:
    """One option: its default, env var, help text, and (optionally) a flag other than `--field-name`."""
    extra: dict[str, JsonValue] | None = {"flag": flag} if flag else None
    return Field(default, validation_alias=AliasChoices(env), description=help, json_schema_extra=extra, **checks)


Strs = Annotated[tuple[str, ...], NoDecode]  # from env: a comma-separated list (not JSON)
Level = Literal["debug", "info", "warning", "error", "critical"]
Family = Literal["bi-encoder", "cross-encoder", "llm-reranker"]
Size = Literal["0.6B", "4B", "8B"]


class SettingsFields(BaseSettings):
    """The fields of `gateway.settings.Settings` (module docstring)."""

    model_config = SettingsConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, validate_by_alias=True, case_sensitive=True
    )

    host: str = opt("0.0.0.0", "HOST", "Address the HTTP API binds to.")
    port: int = opt(8000, "PORT", "Port of the HTTP API.", ge=0, le=65535)
    workers: int = opt(
        0,
        "WORKERS",
        "Gateway worker processes (all share the engines). 0 = auto: 1 on CPU; on a GPU one per engine, at "
        "least 2 and at most half the host cores (8 engines on 16 cores: 8).",
        ge=0,
    )
    max_workers: int = opt(
        8, "MAX_WORKERS", "Threads per worker for CPU-bound request work (parsing, rendering).", ge=1
    )
    max_num_seqs: int = opt(
        256, "MAX_NUM_SEQS", "vLLM --max-num-seqs: (query, document) pairs scheduled at once.", ge=1
    )
    max_num_batched_tokens: int | None = opt(
        None,
        "MAX_NUM_BATCHED_TOKENS",
        "vLLM --max-num-batched-tokens per engine step. Unset: vLLM's default, except 32768 (at least the "
        "model's window) for an LLM reranker whose engines share a GPU (replicas: 1.06x the pairs/s, "
        "measured with the Qwen3-Reranker-0.6B shape).",
        ge=1,
    )
    gpu_memory_utilization: float | None = opt(
        None,
        "GPU_MEMORY_UTILIZATION",
        "vLLM --gpu-memory-utilization (GPU only; share of GPU memory for weights + KV cache). One engine: "
        "vLLM's default when unset. Several engines on one card: this budget (unset: 0.9) is split between "
        "them, model by model (8 engines: 0.112 each); /health shows each engine's share.",
        gt=0.0,
        le=1.0,
    )
    tensor_parallel_size: int = opt(1, "TENSOR_PARALLEL_SIZE", "vLLM --tensor-parallel-size (GPUs per engine).", ge=1)
    model_size: Size | None = opt(None, "MODEL_SIZE", "Qwen3-Reranker preset: 0.6B, 4B or 8B (Qwen/Qwen3-Reranker-*).")
    model: Strs = opt(
        (),
        "MODEL",
        "Model id or local path (wins over --model-size). Default: bundled all-MiniLM-L6-v2. Several models: "
        "NAME=ID_OR_PATH, repeated (env: comma-separated); a request's `model` picks one, the first serves the rest.",
    )
    models_file: str | None = opt(
        None,
        "RERANK_MODELS_FILE",
        "YAML or TOML file of the models to serve, each with its own settings (README: Several models).",
    )
    served_model_name: str | None = opt(
        None, "RERANK_SERVED_MODEL_NAME", "Name the model is served and reported under."
    )
    model_family: Family | None = opt(
        None,
        "RERANK_MODEL_FAMILY",
        "Override family detection: bi-encoder, cross-encoder or llm-reranker (the family's generic format; "
        "--model-format is more precise).",
    )
    model_format: FormatName | None = opt(
        None,
        "RERANK_MODEL_FORMAT",
        "Override format detection (README: Supported rerankers): " + ", ".join(FORMATS) + ".",
    )
    max_model_len: int | None = opt(
        None, "RERANK_MAX_MODEL_LEN", "vLLM --max-model-len (query+document tokens per pair).", ge=1
    )
    dtype: str | None = opt(None, "RERANK_DTYPE", "vLLM --dtype (default float32 on CPU, auto on GPU).")
    enforce_eager: bool | None = opt(
        None, "RERANK_ENFORCE_EAGER", "vLLM --enforce-eager (default on for CPU: faster start)."
    )
    engine_port: int = opt(
        0,
        "RERANK_ENGINE_PORT",
        "Loopback TCP port of the first engine (the next ones count up). 0: every managed engine listens on a "
        "Unix socket in a directory only this user can open, so nothing but the gateway reaches it.",
        ge=0,
        le=65535,
    )
    engine_replicas: int = opt(
        0,
        "RERANK_ENGINE_REPLICAS",
        "Engine processes to run and balance over (least outstanding work). On one GPU they share its memory "
        "(--gpu-memory-utilization is split between them); with --engine-devices each gets its own GPUs. "
        "0 = auto, on a GPU: encoder models (cross-/bi-encoders) round((host cores - 2) / 1.8) up to 8, LLM "
        "rerankers up to 1.5B parameters round((host cores - 2) / 2.3) up to 4 (each with an explicit KV-cache "
        "budget, so engines starting together never profile each other's memory), larger ones 1; shared out "
        "between the models that run on auto. One vLLM API server is CPU-bound long before the GPU is: on an "
        "H100 with 16 cores this gives 8 BERT-base engines (11.3k-12.4k pairs/s) or 4 Qwen3-0.6B ones "
        "(3.9k pairs/s, as many as 6 gave with less CPU and memory; docs/gpu-performance.md). On CPU: 1.",
        ge=0,
    )
    engine_urls: Strs = opt(
        (),
        "RERANK_ENGINE_URLS",
        "Use an existing vLLM server instead of launching one (repeatable; env: comma-separated). Requests go to "
        "the least loaded ready one; a dead one is skipped and re-checked every second. An http://, https:// or "
        "http+unix:// URL with no credentials, else the service refuses to start.",
        flag="--engine-url",
    )
    engine_devices: Strs = opt(
        (),
        "RERANK_ENGINE_DEVICES",
        "CUDA_VISIBLE_DEVICES per replica, e.g. --engine-devices 0 --engine-devices 1 (env: 0;1 or 0,1 per "
        "replica separated by ';').",
    )
    mps: Literal["auto", "on", "off"] = opt(
        "auto",
        "RERANK_MPS",
        "CUDA MPS for engines that share a GPU. auto: where two or more managed engines share a card and "
        "nvidia-cuda-mps-control is on PATH, the service runs a private MPS control daemon (its pipe directory "
        "in the runtime dir) and the engines on shared cards join it, so their kernels run side by side instead "
        "of in turns; where the daemon cannot start, the engines run without it. on: every managed GPU engine "
        "joins it, and a missing binary or a daemon that does not start stops the service. off: never. An "
        "MPS pipe directory already in the environment (CUDA_MPS_PIPE_DIRECTORY: the operator's own daemon) "
        "is left to the engines as it is.",
    )
    ready_timeout: float = opt(600.0, "RERANK_READY_TIMEOUT", "Seconds to wait for the engine to become ready.", gt=0)
    request_timeout: float = opt(120.0, "RERANK_REQUEST_TIMEOUT", "Deadline of one rerank request, seconds.", gt=0)
    stop_grace: float = opt(
        15.0,
        "RERANK_STOP_GRACE",
        "On SIGTERM: seconds requests in flight get to finish (then 503 + Retry-After), and then, separately, "
        "seconds the engine gets after its SIGTERM before SIGKILL.",
        ge=0,
    )
    header_timeout: float = opt(
        10.0,
        "RERANK_HEADER_TIMEOUT",
        "Seconds a client connection may take to send a complete request head (from when it opens, or from "
        "the previous response); then it is closed (408 if part of a head came).",
        gt=0,
    )
    body_timeout: float = opt(
        30.0,
        "RERANK_BODY_TIMEOUT",
        "Seconds a request body may take to arrive after its head; then 408 and the connection is closed.",
        gt=0,
    )
    max_connections: int | None = opt(
        None,
        "RERANK_MAX_CONNECTIONS",
        "Open client connections per worker. At the cap a new connection closes the longest-idle one; when "
        "none is idle it gets 503 + Retry-After. Default: min(10000, fd limit - min(1024, fd limit / 4)).",
        ge=1,
    )
    log_level: Level = opt("info", "LOG_LEVEL", "debug, info, warning or error.")
    strict_model_names: bool = opt(
        False,
        "RERANK_STRICT_MODEL_NAMES",
        "Answer 404 for model names other than the served name and its aliases.",
    )
    model_aliases: Strs = opt(
        (),
        "RERANK_MODEL_ALIASES",
        "Extra accepted model name (repeatable; env: comma-separated).",
        flag="--model-alias",
    )
    runtime_dir: str | None = opt(
        None, "RERANK_RUNTIME_DIR", "Directory for the engine state file (default: a temp dir)."
    )
    device: Literal["cpu", "cuda"] | None = opt(
        None, "RERANK_DEVICE", "cpu or cuda (default: detected from the installed vLLM build)."
    )
    api_keys: Strs = opt(
        (),
        "RERANK_API_KEYS",
        "Accepted bearer key (repeatable; env: comma-separated). With none set (and no key file) auth is off.",
        flag="--api-key",
    )
    api_key_file: str | None = opt(
        None,
        "RERANK_API_KEY_FILE",
        "File with one accepted key per line; re-read when it changes (rotation without restart).",
    )
    protect_ops: bool = opt(False, "RERANK_PROTECT_OPS", "Require the key on /health and /metrics too.")
    max_body_bytes: int = opt(
        20_000_000, "RERANK_MAX_BODY_BYTES", "Largest request body accepted (413 beyond).", ge=1024
    )
    max_documents: int = opt(
        10_000, "RERANK_MAX_DOCUMENTS", "Most documents per request (400 beyond; at most 10000).", ge=1, le=10_000
    )
    max_inflight_pairs: int | None = opt(
        None,
        "RERANK_MAX_INFLIGHT_PAIRS",
        "(query, document) pairs in flight per service before 429 + Retry-After (split over workers; default: "
        "32 x max-num-seqs x engines per worker).",
        ge=1,
    )
    score_cache_size: int = opt(
        0,
        "RERANK_SCORE_CACHE_SIZE",
        "Entries of the (model, query, document, settings) score cache per worker; 0 = off.",
        ge=0,
    )
    pretokenize: Literal["auto", "off"] = opt(
        "auto",
        "RERANK_PRETOKENIZE",
        "auto or off. auto: for an LLM reranker served with the built-in Qwen3 template, the gateway renders and "
        "tokenises each (query, document) prompt itself and sends token ids to vLLM's /classify instead of texts "
        "to /score: same scores, and vLLM's single-threaded API server (the bottleneck on a GPU) no longer "
        "templates and tokenises every pair. Requests that need truncation, chunking or raw scores, and other "
        "models, always use /score. off: always /score.",
    )
    max_engine_crashes: int = opt(
        5,
        "RERANK_MAX_ENGINE_CRASHES",
        "Crashes tolerated within --crash-window; one more marks the engine failed (health 503).",
        ge=0,
    )
    crash_window: float = opt(300.0, "RERANK_CRASH_WINDOW", "Window for counting engine crashes, seconds.", gt=0)
    hang_timeout: float = opt(
        25.0,
        "RERANK_HANG_TIMEOUT",
        "Seconds an engine may make no progress (work pending and no token processed, or a tiny scoring probe "
        "unanswered) before it is marked not ready and restarted; its /health alone cannot tell (vLLM's API "
        "server answers it while its EngineCore is stuck). 0 = off.",
        ge=0,
    )
    restart_backoff_cap: float = opt(
        30.0,
        "RERANK_RESTART_BACKOFF_CAP",
        "Longest wait before restarting a crashed engine (backoff 1, 2, 4... seconds up to this).",
        gt=0,
    )
    engine_command: str | None = opt(
        None,
        "RERANK_ENGINE_COMMAND",
        "Replace the engine launcher (default: `vllm serve` or `python -m vllm.entrypoints.openai.api_server`), "
        "e.g. a wrapper script; it receives the usual vLLM arguments.",
    )
    # ---- start-up: engine log, config file (gateway/config_file.py), pre-flight checks (engine/preflight.py)
    engine_log: EngineLogLevel = opt(
        "warning",
        "RERANK_ENGINE_LOG",
        "Engine output re-logged at its own level: debug, info, warning or error and up; its start-up progress "
        "lines (weights, cache, API server) are shown at every level.",
    )
    config: str | None = opt(
        None,
        "RERANK_CONFIG",
        "YAML or TOML file of settings (keys: flag names without the dashes, e.g. max-num-seqs: 64, or the "
        "field names; vllm-args: a list passed to vLLM). A flag wins over its env var, the env var over the "
        "file, the file over the default.",
    )
    preflight: bool = opt(
        True,
        "RERANK_PREFLIGHT",
        "Check before any engine starts: pass-through flags against the installed vLLM's own parser, that the "
        "model exists (local path, Hugging Face cache or hub) and that a --model-size fits the device.",
    )
    # ---- browsers (CORS) and observability (gateway/cors.py, gateway/logs.py, gateway/tracing.py)
    cors_allow_origins: Strs = opt(
        (),
        "RERANK_CORS_ALLOW_ORIGINS",
        "Origin browsers may call the API from (repeatable; env: comma-separated; * = any). None: no CORS "
        "headers, and a preflight is not answered. vLLM's --allowed-origins is read as this.",
        flag="--cors-allow-origin",
    )
    cors_allow_methods: Strs = opt(
        ("*",),
        "RERANK_CORS_ALLOW_METHODS",
        "Methods a cross-origin request may use (repeatable or comma-separated; * = any). vLLM's "
        "--allowed-methods is read as this.",
        flag="--cors-allow-methods",
    )
    cors_allow_headers: Strs = opt(
        ("*",),
        "RERANK_CORS_ALLOW_HEADERS",
        "Request headers a cross-origin request may send (repeatable or comma-separated; * = any). vLLM's "
        "--allowed-headers is read as this.",
        flag="--cors-allow-headers",
    )
    cors_allow_credentials: bool = opt(
        False,
        "RERANK_CORS_ALLOW_CREDENTIALS",
        "Let browsers send cookies and Authorization on cross-origin requests (not with origin *). vLLM's "
        "--allow-credentials is read as this.",
    )
    log_format: Literal["text", "json"] = opt(
        "text", "RERANK_LOG_FORMAT", "text, or json: one JSON object per line (the request log line included)."
    )
    otlp_endpoint: str | None = opt(
        None,
        "RERANK_OTLP_ENDPOINT",
        "OpenTelemetry: send traces over OTLP/HTTP (protobuf) to this collector, e.g. http://collector:4318 "
        "(/v1/traces is added to a URL without a path). Unset: no tracing, and no cost.",
    )
    otel_service_name: str = opt("vllm-rerank", "RERANK_OTEL_SERVICE_NAME", "OpenTelemetry service.name of the traces.")
    # Flags this service does not know, passed to the engine as they are (command line only).
    vllm_args: tuple[str, ...] = ()
    # The models file's contents, read once where the settings are loaded (workers get them with the
    # settings, so every process serves the same models even if the file changes).
    model_specs: tuple[ModelSpec, ...] = ()

    # ------------------------------------------------------------------ checks
    @field_validator("api_keys", mode="before")
    @classmethod
    def _keys(cls, value: Any) -> Any:
        """Keys that would mean "no auth" by accident are refused: an empty or blank key, or a list
        of nothing but separators. (No keys at all, and no key file, is auth off, on purpose.)"""
        if isinstance(value, str):
            keys = tuple(a.strip() for a in value.split(","))
            if value.strip() and not any(keys):
                raise ValueError("holds no key, only separators or spaces; unset it to turn auth off")
            value = tuple(k for k in keys if k)
        if isinstance(value, (tuple, list)):
            if any(not isinstance(k, str) or not k.strip() for k in value):
                raise ValueError("an empty or blank key would accept any caller; unset it to turn auth off")
            return tuple(k.strip() for k in value)
        return value

    @field_validator("api_key_file")
    @classmethod
    def _readable_key_file(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            lines = Path(value).read_text()
        except OSError as exc:
            raise ValueError(f"cannot read {value!r} ({exc.strerror or exc})") from None
        del lines  # an empty file accepts nobody until a key is written to it (rotation)
        return value

    @field_validator(
        "engine_urls",
        "model_aliases",
        "model",
        "cors_allow_origins",
        "cors_allow_methods",
        "cors_allow_headers",
        mode="before",
    )
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(a.strip() for a in value.split(",") if a.strip())
        return value

    @field_validator("cors_allow_origins", "cors_allow_methods", "cors_allow_headers", mode="before")
    @classmethod
    def _comma_items(cls, value: Any) -> Any:
        """`--cors-allow-methods GET,POST` as `--cors-allow-methods GET --cors-allow-methods POST`."""
        if isinstance(value, (tuple, list)):
            return tuple(a.strip() for item in value for a in str(item).split(",") if a.strip())
        return value

    @field_validator("engine_devices", mode="before")
    @classmethod
    def _semicolon_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(a.strip() for a in value.split(";") if a.strip())
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value
