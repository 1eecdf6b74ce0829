"""Command line → `Settings`: the parser is generated from the settings fields (gateway.settings).

A flag wins over its env var, the env var over the config file (`--config`, gateway.config_file),
the file over the default. Flags this parser does not know,
and everything after `--`, are passed verbatim to `vllm serve`. This is the only module that
reads os.environ for settings.
"""

from __future__ import annotations

import argparse
import os
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple

from gateway.config_file import ConfigFileError, read_config_file
from gateway.settings import Settings, SettingsError, env_names, flag_of, load_settings

__all__ = ["OPTIONS", "Option", "build_parser", "parse_settings"]


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
        shown = f"{opt.help} [env {opt.env}; default {default!r}]"
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
    values["vllm_args"] = (*file_values.pop("vllm_args", ()), *unknown, *passthrough)
    return load_settings(values, environ, file_values=file_values)
