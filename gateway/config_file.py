"""Settings from a file (`--config FILE`, env RERANK_CONFIG): YAML or TOML, one key per setting.

A key is a flag without its dashes (`max-num-seqs`, `model-alias`) or the field name
(`max_num_seqs`); `vllm-args` is a list passed to vLLM before the command line's own. The file is a
settings source below the environment: flag > env > file > default. `read_config_file` checks
every key and value on its own, so an error names the file, the line and the key; what is left
(values that only clash together) is checked with the rest of the settings.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

__all__ = ["ConfigFileError", "FileSource", "read_config_file"]

_VLLM_ARGS = "vllm_args"
_NOT_IN_FILE = {"config"}  # a config file naming another one would be a loop


class ConfigFileError(ValueError):
    """The config file cannot be read, or a key or value in it is wrong (the message names file, line, key)."""


class FileSource(PydanticBaseSettingsSource):
    """pydantic-settings source over the values read from the config file (by field name)."""

    def __init__(self, settings_cls: type[BaseSettings], values: Mapping[str, Any]) -> None:
        super().__init__(settings_cls)
        self._values = dict(values)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        # Keyed as the environment source keys them (a field's first alias, its env var), so a value from
        # both merges into one key and the environment's wins, rather than pydantic seeing two inputs.
        out: dict[str, Any] = {}
        for name, value in self._values.items():
            field = self.settings_cls.model_fields.get(name)
            if field is None:
                continue
            choices = getattr(field.validation_alias, "choices", None)
            out[str(choices[0]) if choices else name] = value
        return out


def _parse_toml(path: Path, text: str) -> tuple[dict[str, Any], dict[str, int]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"{path}: not valid TOML: {exc}") from None
    lines: dict[str, int] = {}  # tomllib keeps no positions: the first line that assigns the key
    for i, line in enumerate(text.splitlines(), 1):
        m = re.match(r"\s*[\"']?([\w.-]+)[\"']?\s*=", line)
        if m:
            lines.setdefault(m.group(1), i)
    return data, lines


def _parse_yaml(path: Path, text: str) -> tuple[dict[str, Any], dict[str, int]]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        raise ConfigFileError(f"{path}: expected a mapping of settings (key: value) at the top level")
    lines: dict[str, int] = {}
    for key, _ in node.value:  # PyYAML keeps the last of two equal keys without a word: refuse them
        line = key.start_mark.line + 1
        if str(key.value) in lines:
            first = lines[str(key.value)]
            raise ConfigFileError(f"{path} line {line}: {key.value!r} is set a second time (first on line {first})")
        lines[str(key.value)] = line
    return data, lines


def _names(fields: Mapping[str, FieldInfo], flag_of: Any) -> dict[str, str]:
    """Every accepted spelling of a key → its field name."""
    names: dict[str, str] = {}
    for name in fields:
        if name in _NOT_IN_FILE:
            continue
        names[name] = name
        names[name.replace("_", "-")] = name
        if name != _VLLM_ARGS:
            names[flag_of(name).lstrip("-")] = name
    return names


def read_config_file(path: str) -> dict[str, Any]:
    """The settings in `path`, by field name, each value checked on its own.

    Raises: ConfigFileError naming the file, the line and the key."""
    from gateway.settings import Settings, SettingsError, flag_of, load_settings

    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        why = exc.strerror or exc
        raise ConfigFileError(f"cannot read config file {path!r} ({why}) (--config/RERANK_CONFIG)") from None
    # (top-level mapping, line of each key): TOML by its suffix, anything else as YAML (JSON is YAML too)
    data, lines = (_parse_toml if file.suffix.lower() == ".toml" else _parse_yaml)(file, text)
    names = _names(Settings.model_fields, flag_of)
    out: dict[str, Any] = {}
    for key, value in data.items():
        where = f"{path}" + (f" line {lines[str(key)]}" if str(key) in lines else "")
        name = names.get(str(key).lstrip("-"))
        if name is None:
            close = difflib.get_close_matches(str(key), list(names), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigFileError(f"{where}: unknown key {key!r}{hint}")
        if name in out:
            raise ConfigFileError(f"{where}: {key!r} sets {flag_of(name)} a second time")
        if name == _VLLM_ARGS:
            if not isinstance(value, list) or not all(isinstance(a, (str, int, float)) for a in value):
                raise ConfigFileError(f"{where}: {key!r} must be a list of strings, e.g. [--seed, '0']")
            out[name] = tuple(str(a) for a in value)
            continue
        given = tuple(value) if isinstance(value, list) else value
        try:
            load_settings({name: given}, {})  # this one value, with its field's own checks
        except SettingsError as exc:
            raise ConfigFileError(f"{where}: {key}: {exc}") from None
        out[name] = given
    return out
