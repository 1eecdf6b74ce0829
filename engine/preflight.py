"""Checks before any engine starts, so a wrong start fails in seconds with one line naming the cause.

`preflight(config, ...)` raises `EngineStartError(message, cause=...)` for the first problem:

- `bad_model`: a local path that does not exist (or a directory without config.json); a name that is
  neither a path nor a valid hub id; a hub id the hub does not have.
- `not_cached`: a hub id not in the Hugging Face cache while HF_HUB_OFFLINE forbids downloading it.
- `network`: a hub id not in the cache, and the hub cannot be reached (a bounded check).
- `too_large`: weights that cannot fit the device: GPU memory (nvidia-ml-py) x --gpu-memory-utilization
  x tensor parallel size, or the RAM on a CPU.
- `bad_flag`: a pass-through flag the installed vLLM's own parser rejects (engine.vllm_flags), with
  "did you mean".

The flag check runs only when there are pass-through flags (the service's own are known to vLLM),
in a child started first so it overlaps the other checks. Nothing is cached between runs.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config import EngineConfig
from engine.errors import EngineStartError
from engine.vllm_flags import check_in_child

__all__ = [
    "DeviceMemory",
    "check_fits",
    "check_model",
    "device_memory",
    "hf_cache_dir",
    "preflight",
    "weight_bytes",
]

_TRUE = {"1", "true", "yes", "on"}
_DTYPE_BYTES = {"float32": 4, "float": 4, "float16": 2, "half": 2, "bfloat16": 2, "fp8": 1, "int8": 1}
# Parameters of the --model-size presets (Qwen3-Reranker-*, as their model cards give them).
PRESET_PARAMS = {"Qwen/Qwen3-Reranker-0.6B": 0.6e9, "Qwen/Qwen3-Reranker-4B": 4.0e9, "Qwen/Qwen3-Reranker-8B": 8.2e9}
_GPU_SHARE = 0.92  # vLLM's default --gpu-memory-utilization


@dataclass(frozen=True)
class DeviceMemory:
    """Bytes one engine may use for its weights, and what they are (for the message)."""

    bytes: int
    what: str


def hf_cache_dir(environ: Mapping[str, str]) -> Path:
    """The Hugging Face hub cache, as huggingface_hub finds it: HF_HUB_CACHE, else HF_HOME/hub, else
    XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub."""
    if environ.get("HF_HUB_CACHE"):
        return Path(environ["HF_HUB_CACHE"]).expanduser()
    if environ.get("HF_HOME"):
        return Path(environ["HF_HOME"]).expanduser() / "hub"
    xdg = environ.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
    return Path(xdg).expanduser() / "huggingface" / "hub"


def _offline(environ: Mapping[str, str]) -> bool:
    return any(environ.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _looks_local(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or model.count("/") > 1 or model.endswith("/")


def _hub_reachable(model: str, *, revision: str | None, environ: Mapping[str, str], timeout: float) -> None:
    """Ask the hub about `model` within `timeout` seconds (a thread bounds DNS too).

    Raises: EngineStartError (bad_model: the hub has no such model; network: no answer)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    endpoint = environ.get("HF_ENDPOINT") or "https://huggingface.co"
    outcome: dict[str, BaseException | None] = {}

    def ask() -> None:
        try:
            HfApi(endpoint=endpoint, token=environ.get("HF_TOKEN") or None).model_info(
                model, revision=revision, timeout=timeout
            )
            outcome["error"] = None
        except BaseException as exc:  # handed to the caller's thread and sorted there
            outcome["error"] = exc

    thread = threading.Thread(target=ask, name="preflight-hub", daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    if "error" not in outcome:
        raise EngineStartError(
            f"{model!r} is not in the Hugging Face cache ({hf_cache_dir(environ)}) and {endpoint} did not answer "
            f"within {timeout:g} s: check the network (HF_ENDPOINT, proxies), or download it first",
            cause="network",
        )
    exc = outcome["error"]
    if exc is None:
        return
    if isinstance(exc, GatedRepoError):
        message = f"{model!r} is gated on {endpoint}: accept its terms and set HF_TOKEN"
        raise EngineStartError(message, cause="bad_model")
    if isinstance(exc, RevisionNotFoundError):
        raise EngineStartError(f"{model!r} has no revision {revision!r} on {endpoint}", cause="bad_model")
    if isinstance(exc, RepositoryNotFoundError):
        raise EngineStartError(
            f"no model {model!r} on {endpoint} (nor a local path): check the id, or set HF_TOKEN if it is private",
            cause="bad_model",
        )
    if type(exc).__name__ == "OfflineModeIsEnabled":  # huggingface_hub read HF_HUB_OFFLINE when it was imported
        raise EngineStartError(
            f"{model!r} is not in the Hugging Face cache ({hf_cache_dir(environ)}) and offline mode forbids "
            "downloading it",
            cause="not_cached",
        )
    raise EngineStartError(
        f"{model!r} is not in the Hugging Face cache ({hf_cache_dir(environ)}) and {endpoint} cannot be reached "
        f"({type(exc).__name__}: {str(exc)[:160]}): check the network, or set HF_HUB_OFFLINE=1 with the model cached",
        cause="network",
    )


def check_model(model: str, *, environ: Mapping[str, str], revision: str | None = None, timeout: float = 5.0) -> str:
    """Where `model` comes from: "local", "cache" or "hub" ("unchecked" without huggingface_hub).

    Raises: EngineStartError (bad_model, not_cached, network)."""
    path = Path(model).expanduser()
    if path.exists():
        if path.is_dir() and not (path / "config.json").is_file():
            raise EngineStartError(f"model directory {model} has no config.json", cause="bad_model")
        return "local"
    if _looks_local(model):
        raise EngineStartError(f"model path {model} does not exist", cause="bad_model")
    try:
        from huggingface_hub import try_to_load_from_cache
        from huggingface_hub.errors import HFValidationError
        from huggingface_hub.utils._validators import validate_repo_id
    except ImportError:  # pragma: no cover - every vLLM build depends on it; without it vLLM will say
        return "unchecked"

    try:
        validate_repo_id(model)
    except HFValidationError:
        raise EngineStartError(
            f"model {model!r} is neither an existing local path nor a Hugging Face id (ORG/NAME)", cause="bad_model"
        ) from None
    cache = hf_cache_dir(environ)
    if isinstance(try_to_load_from_cache(model, "config.json", cache_dir=cache, revision=revision), str):
        return "cache"
    if _offline(environ):
        raise EngineStartError(
            f"{model!r} is not in the Hugging Face cache ({cache}) and HF_HUB_OFFLINE=1 forbids downloading it: "
            "download it first (HF_HOME/HF_HUB_CACHE say where the cache is), or pass a local path",
            cause="not_cached",
        )
    _hub_reachable(model, revision=revision, environ=environ, timeout=timeout)
    return "hub"


def _local_dir(model: str, environ: Mapping[str, str], revision: str | None) -> Path | None:
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model, "config.json", cache_dir=hf_cache_dir(environ), revision=revision)
    except ImportError:  # pragma: no cover - vLLM depends on it
        return None
    except ValueError:  # not a repo id
        return None
    return Path(found).parent if isinstance(found, str) else None


def weight_bytes(
    config: EngineConfig, *, environ: Mapping[str, str], revision: str | None = None
) -> tuple[int, str] | None:
    """(bytes the weights take in the engine's dtype, how that was found), or None when unknown.

    From the checkpoint on disk (its *.safetensors sizes and config.json's dtype) when it is local or
    cached, else from the parameter count of a --model-size preset."""
    target = (config.dtype or "auto").lower()
    folder = _local_dir(config.model, environ, revision)
    if folder is not None:
        size = sum(f.stat().st_size for f in folder.glob("*.safetensors")) or sum(
            f.stat().st_size for f in folder.glob("pytorch_model*.bin")
        )
        if not size:
            return None
        stored = "float32"
        try:
            cfg: Any = json.loads((folder / "config.json").read_text())
            stored = str(cfg.get("torch_dtype") or cfg.get("dtype") or "float32")
        except (OSError, ValueError, AttributeError):
            pass
        stored_bytes = _DTYPE_BYTES.get(stored, 4)
        factor = (_DTYPE_BYTES.get(target, stored_bytes) if target != "auto" else stored_bytes) / stored_bytes
        return int(size * factor), f"{size / 1e9:.1f} GB on disk ({stored})"
    params = PRESET_PARAMS.get(config.model)
    if params is None:
        return None
    per = _DTYPE_BYTES.get(target, 2 if config.device != "cpu" else 4)
    return int(params * per), f"{params / 1e9:g}B parameters"


def device_memory(config: EngineConfig, *, environ: Mapping[str, str]) -> DeviceMemory | None:
    """What one engine may hold: on a GPU, the device's memory (nvidia-ml-py) x --gpu-memory-utilization
    x --tensor-parallel-size; on a CPU, the RAM (or the cgroup limit). None when it cannot be read."""
    if config.device == "cpu":
        try:
            total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
            return None
        try:
            limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
            if limit.isdigit():
                total = min(total, int(limit))
        except OSError:
            pass
        return DeviceMemory(total, f"this machine's {total / 1e9:.1f} GB of RAM")
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        try:
            devices = dict(config.extra_env).get("CUDA_VISIBLE_DEVICES") or environ.get("CUDA_VISIBLE_DEVICES", "0")
            visible = devices.split(",")[0].strip() or "0"
            index = int(visible) if visible.isdigit() else 0
            total = int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(index)).total)
        finally:
            pynvml.nvmlShutdown()
    except (pynvml.NVMLError, ValueError):
        return None
    share = config.gpu_memory_utilization or _GPU_SHARE
    tp = max(1, config.tensor_parallel_size)
    usable = int(total * share * tp)
    what = f"{tp} x {total / 1e9:.0f} GB of GPU memory x {share:g} (--gpu-memory-utilization)"
    return DeviceMemory(usable, what)


def check_fits(config: EngineConfig, *, weights: tuple[int, str] | None, memory: DeviceMemory | None) -> None:
    """Raises: EngineStartError (too_large) when the weights alone exceed what the engine may use."""
    if weights is None or memory is None or weights[0] <= memory.bytes:
        return
    dtype = config.dtype or ("float32" if config.device == "cpu" else "its own dtype")
    raise EngineStartError(
        f"{config.model} needs ~{weights[0] / 1e9:.1f} GB for its weights alone ({weights[1]}, as {dtype}), "
        f"more than {memory.what}: pick a smaller --model-size or model, a smaller --dtype, or more devices",
        cause="too_large",
    )


def preflight(
    config: EngineConfig,
    *,
    environ: Mapping[str, str],
    check_flags: bool = True,
    network_timeout: float = 5.0,
    flag_timeout: float = 120.0,
    memory: Callable[[EngineConfig], DeviceMemory | None] | None = None,
) -> None:
    """Every check of the module docstring for the engines of `config` (replicas share its model and
    flags). `check_flags=False` for a launcher that is not vLLM (--engine-command).

    Raises: EngineStartError with the cause of the first problem."""
    flags: dict[str, tuple[bool, str | None]] = {}
    worker: threading.Thread | None = None
    if check_flags and config.extra_args:
        args = config.argv()[len(config.launch.prefix) :]

        def run() -> None:
            flags["result"] = check_in_child(args, environ=environ, timeout=flag_timeout)

        worker = threading.Thread(target=run, name="preflight-flags", daemon=True)
        worker.start()
    revision = config._passed("--revision")  # the pass-through --revision, if any
    if not re.match(r"^[a-z][\w+.-]*://", config.model):  # a URL-like model (s3://...) is vLLM's to resolve
        # Size first: a --model-size preset too large for this device needs no download to say so.
        mem = memory(config) if memory is not None else device_memory(config, environ=environ)
        check_fits(config, weights=weight_bytes(config, environ=environ, revision=revision), memory=mem)
        check_model(config.model, environ=environ, revision=revision, timeout=network_timeout)
    if worker is not None:
        worker.join(flag_timeout + 5.0)
        checked, problem = flags.get("result", (False, None))
        if checked and problem:
            raise EngineStartError(problem, cause="bad_flag")
