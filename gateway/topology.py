"""From settings and the machine to what runs: the engines, their devices and memory shares, and the
in-flight limit of each worker. A pure function of its inputs (`plan_topology`), so every
process that computes it (the supervisor, each gateway worker) agrees, and tests need no machine.
"""

from __future__ import annotations

import math
import os
import shlex
from dataclasses import dataclass

from engine import FAMILIES, EngineConfig, LaunchMode, ModelFamily
from engine.config import detect_launch_mode
from engine.formats import FORMATS, FormatRefusal, ModelInfo, detect_format
from gateway.settings import Settings, SettingsError

__all__ = ["EngineSlot", "Topology", "engine_configs", "plan_topology"]

_DEFAULT_GPU_SHARE = 0.9
_FAMILY_FORMAT = {"bi-encoder": "bi-encoder", "cross-encoder": "cross-encoder", "llm-reranker": "qwen3-reranker"}


@dataclass(frozen=True)
class EngineSlot:
    """One managed engine: its name, its GPU memory share (None: vLLM's default or the flag as given),
    and the CUDA_VISIBLE_DEVICES it gets (None: inherited)."""

    name: str
    gpu_memory_utilization: float | None
    visible_devices: str | None


@dataclass(frozen=True)
class Topology:
    device: str
    model: str
    info: ModelInfo
    engines: tuple[EngineSlot, ...]  # managed engines; empty with --engine-url
    external_urls: tuple[str, ...]
    inflight_pairs_per_worker: int

    @property
    def engine_count(self) -> int:
        return len(self.engines) or len(self.external_urls)

    @property
    def family(self) -> ModelFamily:
        return self.info.format.family


def _model_info(settings: Settings, model: str) -> ModelInfo:
    """Raises: SettingsError for a model that cannot be served exactly (one line: model, why, what to do)."""
    if model == "external":  # learnt from the engines themselves
        return ModelInfo(FORMATS[_FAMILY_FORMAT[settings.model_family or "bi-encoder"]], None, None)
    try:
        if settings.model_format:
            return detect_format(model, override=settings.model_format)
        if settings.model_family:
            try:
                info = detect_format(model)
            except FormatRefusal:
                info = None
            if info is None or info.format.family != FAMILIES[settings.model_family]:
                return detect_format(model, override=_FAMILY_FORMAT[settings.model_family])
            return info
        return detect_format(model)
    except FormatRefusal as exc:
        raise SettingsError(str(exc)) from None


def _replicas(settings: Settings, device: str, family: ModelFamily, cpu_count: int) -> int:
    """--engine-replicas, or (0 = auto) a count from the host cores for encoder models on a GPU.

    Measured on an H100 with 16 cores (docs/gpu-performance.md): a BERT-base cross-encoder
    costs ~2.1 ms of host CPU per pair across vLLM's API server, engine and gateway, and
    replicas scaled throughput until ~8 engines (6.4k pairs/s, 5.95x one engine)."""
    if settings.engine_replicas:
        return settings.engine_replicas
    if settings.engine_devices:
        return len(settings.engine_devices)
    if device == "cpu" or settings.tensor_parallel_size > 1:
        return 1
    if family.name == "llm-reranker":
        return 1  # GPU-bound already: one engine batches best
    return max(1, min(8, round((cpu_count - 2) / 1.8)))


def plan_topology(settings: Settings, *, cpu_count: int | None = None, device: str | None = None) -> Topology:
    """Raises: SettingsError when no model is given and the bundled one is not installed."""
    device = device or settings.resolved_device
    model = settings.resolved_model
    info = _model_info(settings, model)
    family = info.format.family
    slots: list[EngineSlot] = []
    if not settings.engine_urls:
        n = _replicas(settings, device, family, cpu_count or os.cpu_count() or 2)
        for i in range(n):
            share = settings.gpu_memory_utilization
            visible = None
            if settings.engine_devices:
                visible = settings.engine_devices[i % len(settings.engine_devices)]
            elif n > 1 and device != "cpu":  # replicas sharing one GPU split its memory
                share = round((settings.gpu_memory_utilization or _DEFAULT_GPU_SHARE) / n, 3)
            slots.append(EngineSlot(f"engine{i}", share, visible))
    engines = max(1, len(slots) or len(settings.engine_urls))
    if settings.max_inflight_pairs:  # an explicit limit is the service's: split over the workers
        inflight = max(1, math.ceil(settings.max_inflight_pairs / settings.workers))
    else:  # per worker: 32 engine batches (max_num_seqs) per engine, enough to keep them saturated
        inflight = 32 * settings.max_num_seqs * engines
    return Topology(
        device=device,
        model=model,
        info=info,
        engines=tuple(slots),
        external_urls=settings.engine_urls,
        inflight_pairs_per_worker=inflight,
    )


def engine_configs(
    settings: Settings, topology: Topology, ports: list[int], *, sockets: list[str] | None = None
) -> list[EngineConfig]:
    """One EngineConfig per managed engine: on the given Unix sockets, else the given loopback ports."""
    cpu = topology.device == "cpu"
    fmt = topology.info.format
    max_model_len = settings.max_model_len or topology.info.default_max_len
    launch = (
        LaunchMode(tuple(shlex.split(settings.engine_command)), False)
        if settings.engine_command
        else detect_launch_mode()
    )
    base = EngineConfig(
        model=topology.model,
        served_model_name=settings.resolved_served_name,
        port=0,
        family=fmt.family,
        format=fmt,
        logit_offset=topology.info.logit_offset,
        device=topology.device,
        launch=launch,
        max_num_seqs=settings.max_num_seqs,
        max_num_batched_tokens=settings.max_num_batched_tokens,
        gpu_memory_utilization=settings.gpu_memory_utilization,
        tensor_parallel_size=settings.tensor_parallel_size,
        max_model_len=max_model_len,
        dtype=settings.dtype or ("float32" if cpu else None),
        enforce_eager=settings.enforce_eager if settings.enforce_eager is not None else cpu,
        hf_overrides=dict(fmt.hf_overrides) if fmt.hf_overrides else None,
        chat_template=fmt.template_path,
        extra_args=settings.vllm_args,
    )
    configs = []
    endpoints: list[tuple[int, str | None]] = (
        [(0, path) for path in sockets] if sockets else [(port, None) for port in ports]
    )
    for slot, (port, uds) in zip(topology.engines, endpoints, strict=True):
        env = (("CUDA_VISIBLE_DEVICES", slot.visible_devices),) if slot.visible_devices is not None else ()
        configs.append(
            base.with_(
                port=port, uds=uds, name=slot.name, gpu_memory_utilization=slot.gpu_memory_utilization, extra_env=env
            )
        )
    return configs
