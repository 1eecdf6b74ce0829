"""Command line → `Settings`: the parser is generated from the settings fields (gateway.settings).

A flag wins over its env var, the env var over the config file (`--config`, gateway.config_file),
the file over the default. Flags this parser does not know,
and everything after `--`, are passed verbatim to `vllm serve`. This is the only module that
reads os.environ for settings.
"""

from __future__ import annotations

import argparse
import json
import os
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple

from gateway.config_file import ConfigFileError, read_config_file
from gateway.server_flags import VLLM_GATEWAY_FLAGS, VLLM_REFUSED_FLAGS, flag_name, refusal
from gateway.settings import Settings, SettingsError, env_names, flag_of, load_settings

__all__ = ["OPTIONS", "Option", "build_parser", "gateway_flags", "parse_settings"]


class Option(NamedTuple):
    flag: str
    env: str
    kind: Any  # bool, list (repeatable), int, float or str
    help: str
    field: str
    choices: tuple[str, ...] | None


def _kind(annotation: Any) -> tuple[Any, tuple[str, ...] | None]:
    """(argparse kind, choices) of a field's annotation, with `X | None` unwrapped."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _kind(typing.get_args(annotation)[0])
    if origin is Literal:
        return str, tuple(str(a) for a in typing.get_args(annotation))
    if origin is tuple:
        return list, None
    if annotation in (bool, int, float, str):
        return annotation, None
    raise TypeError(f"no command-line form for {annotation!r}")


def _options() -> list[Option]:
    out = []
    for name, field in Settings.model_fields.items():
        envs = env_names(field)
        if not envs:
            continue  # not an option (vllm_args: the pass-through)
        kind, choices = _kind(field.annotation)
        out.append(Option(flag_of(name), envs[0], kind, field.description or "", name, choices))
    return out


OPTIONS: list[Option] = _options()


def build_parser(prog: str = "start_service.py") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="vllm-rerank: a drop-in rerank API (Cohere, Jina, Voyage, TEI, vLLM dialects) in front of a "
        "supervised vLLM engine. Every flag can also be set by the env var named in brackets; a flag wins over "
        "its env var, the env var over the default. Unknown flags are passed to `vllm serve` as they are.",
        allow_abbrev=False,
    )
    for opt in OPTIONS:
        default = Settings.model_fields[opt.field].default
        shown = f"{opt.help} [env {opt.env}; default {default!r}]".replace("%", "%%")  # argparse formats help
        if opt.kind is bool:
            parser.add_argument(
                opt.flag, dest=opt.field, action=argparse.BooleanOptionalAction, default=None, help=shown
            )
        elif opt.kind is list:
            parser.add_argument(opt.flag, dest=opt.field, action="append", default=None, help=shown)
        else:
            lower = opt.choices is not None and all(c == c.lower() for c in opt.choices)
            kind = str.lower if lower else opt.kind  # --log-level INFO works as it always did
            parser.add_argument(opt.flag, dest=opt.field, type=kind, choices=opt.choices, default=None, help=shown)
    return parser


def _list_value(text: str) -> tuple[str, ...]:
    """vLLM reads these as JSON lists (`'["*"]'`); a plain `a,b` is taken too."""
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    items = value if isinstance(value, list) else [value]
    return tuple(str(x).strip() for item in items for x in str(item).split(",") if str(x).strip())


def gateway_flags(args: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """(settings values, the rest) of pass-through arguments: vLLM's HTTP-server flags are the gateway's
    (VLLM_GATEWAY_FLAGS) and never reach the engine.

    Raises: SettingsError for a flag that only makes sense on the gateway and has no meaning there
    (VLLM_REFUSED_FLAGS), or one without its value."""
    values: dict[str, Any] = {}
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        _, eq, inline = arg.partition("=")
        flag = flag_name(arg)
        i += 1
        if flag in VLLM_REFUSED_FLAGS:
            raise SettingsError(refusal(flag))
        if flag not in VLLM_GATEWAY_FLAGS:
            rest.append(arg)
            continue
        field = VLLM_GATEWAY_FLAGS[flag][0]
        if field == "cors_allow_credentials":
            values[field] = True
            continue
        if not eq:
            if i >= len(args):
                raise SettingsError(f"{flag} needs a value (a JSON list, e.g. '[\"*\"]')")
            inline, i = args[i], i + 1
        values[field] = (*values.get(field, ()), *_list_value(inline))
    return values, rest


def parse_settings(
    argv: Sequence[str], environ: Mapping[str, str] | None = None, *, prog: str = "start_service.py"
) -> Settings:
    """Build Settings from argv and the environment (`prog`: the command --help names).

    Raises:
        SettingsError: a bad value (the message names the flag and env var).
        SystemExit: for --help, or argparse errors on known flags.
    """
    argv = list(argv)
    passthrough: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1 :]
    ns, unknown = build_parser(prog).parse_known_args(argv)
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        value = getattr(ns, opt.field)
        if value is not None:
            values[opt.field] = tuple(value) if opt.kind is list else value
    environ = os.environ if environ is None else environ
    config = values.get("config") or environ.get("RERANK_CONFIG") or None
    file_values: dict[str, Any] = {}
    if config:
        try:
            file_values = read_config_file(config)
        except ConfigFileError as exc:
            raise SettingsError(str(exc)) from None
    # The file's vLLM flags first: for a flag given twice, vLLM keeps the command line's (the last).
    mapped, engine_args = gateway_flags((*file_values.pop("vllm_args", ()), *unknown, *passthrough))
    for field, value in mapped.items():  # the gateway's own flag wins over vLLM's spelling of it
        values.setdefault(field, value)
    values["vllm_args"] = tuple(engine_args)
    return load_settings(values, environ, file_values=file_values)
