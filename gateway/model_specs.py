"""The models a service serves: `ModelSpec` (one model and its own settings) and the `--models-file`.

A service serves one model (`--model ID_OR_PATH`, `--model-size`, or the bundled one) or several:
`--model NAME=ID_OR_PATH` given several times, or a models file (YAML or TOML) with per-model
settings. Every key may be written with dashes or underscores (`max-model-len`, `max_model_len`):

    # models.toml                            # models.yaml
    [[models]]                               models:
    name = "fast"                              - name: fast
    model = "cross-encoder/ms-marco-MiniLM-L6-v2"  model: cross-encoder/ms-marco-MiniLM-L6-v2
    aliases = ["small"]                          aliases: [small]
    replicas = 2                                 replicas: 2
    [[models]]                                 - name: accurate
    name = "accurate"                            model: Qwen/Qwen3-Reranker-0.6B
    model = "Qwen/Qwen3-Reranker-0.6B"           gpu-memory-utilization: 0.5
    gpu-memory-utilization = 0.5                 vllm-args: ["--dtype", "bfloat16"]
    vllm-args = ["--dtype", "bfloat16"]

A bad file is refused at start with one line naming the file, the line and the key.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway.server_flags import server_flag_problem

__all__ = ["FormatName", "ModelSpec", "ModelsFileError", "load_models_file", "parse_model_flag"]

FormatName = Literal[
    "bi-encoder", "cross-encoder", "qwen3-reranker", "qwen3-reranker-seq-cls", "bge-reranker-gemma", "mxbai-rerank-v2"
]
# A model name: what requests send as `model`; no "=" (the flag's separator) or "," (the env var's).
_NAME = re.compile(r"^[^=,\s][^=,]*$")


class ModelsFileError(ValueError):
    """A models file that cannot be used (the message names the file, line and key)."""


class ModelSpec(BaseModel):
    """One served model. Unset fields take the service-wide setting (e.g. `--max-num-seqs`)."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=lambda s: s.replace("_", "-"), populate_by_name=True
    )

    model: str = Field(min_length=1, description="Hub id or local path.")
    name: str | None = Field(None, description="The name requests use (default: the hub id, or the directory name).")
    aliases: tuple[str, ...] = Field((), description="Other names that select this model.")
    format: FormatName | None = Field(None, description="Override format detection.")
    replicas: int = Field(0, ge=0, description="Engines for this model (0: the service's default).")
    devices: tuple[str, ...] = Field((), description="CUDA_VISIBLE_DEVICES per replica.")
    gpu_memory_utilization: float | None = Field(
        None, gt=0.0, le=1.0, description="This model's share of GPU memory (split over its replicas on a GPU)."
    )
    max_model_len: int | None = Field(None, ge=1)
    max_num_seqs: int | None = Field(None, ge=1)
    instruction: str | None = Field(None, description="Default instruction for LLM rerankers.")
    vllm_args: tuple[str, ...] = Field((), description="Extra `vllm serve` flags for this model's engines.")

    @field_validator("vllm_args")
    @classmethod
    def _no_server_flags(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        problem = server_flag_problem(value, where="vllm-args")
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("name", "aliases")
    @classmethod
    def _names(cls, value: Any) -> Any:
        for name in (value,) if isinstance(value, str) else value or ():
            if not _NAME.match(name):
                raise ValueError(f"{name!r} is not a usable model name (no '=', ',' or leading space)")
        return value


def parse_model_flag(value: str) -> ModelSpec:
    """`--model ID_OR_PATH` or `--model NAME=ID_OR_PATH`.

    Raises: ValueError for an empty name or model."""
    name, sep, model = value.partition("=")
    if not sep:
        return ModelSpec(model=value)
    if not name.strip() or not model.strip():
        raise ValueError(f"{value!r}: expected NAME=ID_OR_PATH")
    return ModelSpec(name=name.strip(), model=model.strip())


def load_models_file(path: str) -> tuple[ModelSpec, ...]:
    """The models of a YAML (.yaml/.yml) or TOML (.toml) file: a top-level `models` list (a bare
    YAML list is accepted too).

    Raises: ModelsFileError, one line: `FILE:LINE: key: what is wrong`."""
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ModelsFileError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if file.suffix.lower() == ".toml":
        try:
            data: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ModelsFileError(f"{path}: not valid TOML: {exc}") from None
    elif file.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}" if mark is not None else ""
            raise ModelsFileError(f"{path}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    else:
        raise ModelsFileError(f"{path}: a models file ends in .toml, .yaml or .yml")
    entries = data.get("models") if isinstance(data, Mapping) else data
    if isinstance(data, Mapping) and set(data) - {"models"}:
        extra = min(set(data) - {"models"})
        raise ModelsFileError(f"{path}:{_line(text, (extra,))}: {extra}: unknown key (the file holds `models`)")
    if not isinstance(entries, list) or not entries:
        raise ModelsFileError(f"{path}: expected a non-empty `models` list")
    specs = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise ModelsFileError(f"{path}: models[{i}]: expected a table of settings, got {entry!r}")
        try:
            specs.append(ModelSpec.model_validate(entry))
        except ValidationError as exc:
            err = exc.errors()[0]
            key = str(err["loc"][0]) if err["loc"] else ""
            msg = str(err["msg"]).removeprefix("Value error, ")
            line = _line(text, (key,), entry=i) if key else _line(text, (), entry=i)
            raise ModelsFileError(f"{path}:{line}: models[{i}].{key}: {msg}") from None
    return tuple(specs)


def _line(text: str, keys: Sequence[str], *, entry: int | None = None) -> int:
    """The 1-based line of `keys[0]` inside the `entry`-th model (or at the top level): the file's
    own structure, found in its text (TOML `[[models]]` headers, YAML `- ` items)."""
    lines = text.splitlines()
    start = 0
    if entry is not None:
        starts = [i for i, raw in enumerate(lines) if _is_entry_start(raw)]
        if entry < len(starts):
            start = starts[entry]
    spellings = "|".join(re.escape(k) for k in dict.fromkeys((keys[0], keys[0].replace("-", "_")))) if keys else ""
    for i in range(start, len(lines)):
        if not keys:
            return i + 1
        if re.match(rf"^\s*(-\s+)?[\"']?({spellings})[\"']?\s*[:=]", lines[i]):
            return i + 1
        if i > start and entry is not None and _is_entry_start(lines[i]):
            break
    return start + 1


def _is_entry_start(raw: str) -> bool:
    return raw.strip() == "[[models]]" or bool(re.match(r"^\s*-\s", raw))
