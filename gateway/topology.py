"""From settings and the machine to what runs: the engines, their devices and memory shares, and the
in-flight limit of each worker. A pure function of its inputs (`plan_topology`), so every
process that computes it (the supervisor, each gateway worker) agrees, and tests need no machine.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from engine import FAMILIES, EngineConfig, LaunchMode, ModelFamily
from engine.config import detect_launch_mode, human_int, passed_value
from engine.formats import FORMATS, FormatRefusal, ModelInfo, detect_format
from engine.mps import MpsError, mps_clients
from engine.sizing import gpu_total_bytes, kv_bytes_per_token, param_count
from gateway.model_specs import ModelSpec
from gateway.settings import Settings, SettingsError

__all__ = ["EngineSlot", "ModelPlan", "Topology", "engine_configs", "plan_topology"]

_DEFAULT_GPU_SHARE = 0.9
_SMALL_LLM_PARAMS = 1.5e9  # LLM rerankers up to this size get replicas on a GPU (Qwen3-Reranker-0.6B)
_SMALL_LLM_REPLICAS = 4  # at most, on one card: enough to keep an H100 busy (see _replicas)
# vLLM's --max-num-batched-tokens for LLM-reranker engines that share a card (replicas with KV budgets).
# Measured on an H100 with 16 cores, 6 engines of the Qwen3-Reranker-0.6B shape: vLLM's own default
# (8,192 there: ~47 pairs of ~172 tokens a step) gave 3,663 / 3,645 pairs/s at conc 64 / 128; 32,768
# gave 3,895 / 3,884 (+6%) with 37% less engine-core CPU per pair (docs/gpu-performance.md).
_SHARED_LLM_BATCHED_TOKENS = 32_768
_FAMILY_FORMAT = {"bi-encoder": "bi-encoder", "cross-encoder": "cross-encoder", "llm-reranker": "qwen3-reranker"}


@dataclass(frozen=True)
class EngineSlot:
    """One managed engine: its name, the model it serves, its GPU memory share (None: vLLM's default
    or the flag as given), and the CUDA_VISIBLE_DEVICES it gets (None: inherited)."""

    name: str
    model: str  # the ModelPlan's name
    gpu_memory_utilization: float | None
    visible_devices: str | None
    kv_cache_bytes: int | None = None  # an explicit KV-cache budget (engines sharing a card), else None
    mps: bool = False  # a client of the service's MPS daemon (Topology.mps_control)


@dataclass(frozen=True)
class ModelPlan:
    """One served model: its settings, its format, its engines and its own in-flight limit."""

    spec: ModelSpec  # named (Settings.models)
    info: ModelInfo
    engines: tuple[EngineSlot, ...]  # managed engines; empty with --engine-url
    inflight_pairs_per_worker: int
    max_num_batched_tokens: int | None = None  # the service's pick where the user set none (None: vLLM's)

    @property
    def name(self) -> str:
        return self.spec.name or ""

    @property
    def family(self) -> ModelFamily:
        return self.info.format.family


@dataclass(frozen=True)
class Topology:
    device: str
    models: tuple[ModelPlan, ...]  # the first serves requests that name no configured model
    external_urls: tuple[str, ...]
    workers: int  # gateway worker processes (--workers, or sized from the engines and host cores)
    mps_control: str | None = None  # nvidia-cuda-mps-control, where engines join a private MPS daemon (--mps)

    @property
    def engines(self) -> tuple[EngineSlot, ...]:
        """Every managed engine, model by model."""
        return tuple(slot for m in self.models for slot in m.engines)

    @property
    def engine_count(self) -> int:
        return len(self.engines) or len(self.external_urls)

    # The first model's, for the single-model fields of /health and the logs.
    @property
    def model(self) -> str:
        return self.models[0].spec.model

    @property
    def info(self) -> ModelInfo:
        return self.models[0].info

    @property
    def family(self) -> ModelFamily:
        return self.models[0].family

    @property
    def inflight_pairs_per_worker(self) -> int:
        return self.models[0].inflight_pairs_per_worker


def _model_info(settings: Settings, spec: ModelSpec) -> ModelInfo:
    """Raises: SettingsError for a model that cannot be served exactly (one line: model, why, what to do)."""
    model = spec.model
    if model == "external":  # learnt from the engines themselves
        return ModelInfo(FORMATS[_FAMILY_FORMAT[settings.model_family or "bi-encoder"]], None, None)
    override = spec.format or settings.model_format
    try:
        if override:
            return detect_format(model, override=override)
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


def _replicas(settings: Settings, spec: ModelSpec, info: ModelInfo, device: str, cpu_count: int) -> int:
    """The model's `replicas`, --engine-replicas, or (0 = auto) a count from the host cores for
    encoder models on a GPU, shared out between the models that run on auto.

    Measured on an H100 with 16 cores (docs/gpu-performance.md): a BERT-base cross-encoder
    costs ~2.1 ms of host CPU per pair across vLLM's API server, engine and gateway, and
    replicas scaled throughput until ~8 engines (6.4k pairs/s, 5.95x one engine)."""
    if spec.replicas:
        return spec.replicas
    if spec.devices:
        return len(spec.devices)
    if settings.engine_replicas:
        return settings.engine_replicas
    if settings.engine_devices:
        return len(settings.engine_devices)
    family = info.format.family
    if device == "cpu" or settings.tensor_parallel_size > 1:
        return 1
    if family.name == "llm-reranker":
        params = param_count(info.config, spec.model)
        if params is None or params > _SMALL_LLM_PARAMS:
            return 1  # GPU-bound already (4B: 83% busy with one engine): one engine batches best
        # Qwen3-0.6B shape on an H200 with 16 cores: one engine left the GPU 24-26% busy (its API
        # server is CPU-bound); 6 engines with explicit KV budgets reached 4,010 pairs/s, 94-96% busy.
        # On H100s (docs/gpu-performance.md) 4 engines kept the card as busy and gave as many pairs/s
        # as 6 (3,931 vs 3,802-3,868; 3,874 vs 3,745-3,785), with 12-17% less CPU per pair, 38 GB of
        # the card instead of 68 GB and a start a minute shorter: at most 4 on one card.
        return max(1, min(_SMALL_LLM_REPLICAS, round((cpu_count - 2) / 2.3) // len(settings.models)))
    return max(1, min(8, round((cpu_count - 2) / 1.8)) // len(settings.models))


def _workers(settings: Settings, device: str, engines: int, cpu_count: int) -> int:
    """--workers, or (0 = auto) one gateway worker per engine on a GPU, at least 2, at most half the
    host cores; 1 on CPU (the engine needs the cores). Measured on an H200 with 16 cores: 8 BERT
    engines gave 7,680-7,851 pairs/s with one worker, 8,210-8,962 with 8 (docs/gpu-performance.md)."""
    if settings.workers:
        return settings.workers
    if device == "cpu":
        return 1
    return max(1, min(max(2, engines), cpu_count // 2))


def _kv_budget(
    settings: Settings, spec: ModelSpec, info: ModelInfo, share: float | None, gpu_bytes: int | None
) -> int | None:
    """An explicit --kv-cache-memory-bytes for an LLM reranker's engine that shares its card: room for
    4 windows or 64k tokens, whichever is more, capped by what its memory share leaves after the
    weights (2x, for activations) and 3 GiB. None where nothing needs it, the user set one, or the
    model's shape or the card's size is unknown."""
    if info.format.family.name != "llm-reranker" or share is None or not gpu_bytes:
        return None
    if _passed(settings, spec, "--kv-cache-memory-bytes") is not None:
        return None
    per_token = kv_bytes_per_token(info.config)
    params = param_count(info.config, spec.model)
    if per_token is None or params is None:
        return None
    window = _window(settings, spec, info) or 8192
    want = per_token * max(4 * window, 65_536)
    room = int(share * gpu_bytes - 2 * 2 * params - 3 * 2**30)
    return max(per_token * window, min(want, room))


def _batched_tokens(settings: Settings, spec: ModelSpec, info: ModelInfo, slots: tuple[EngineSlot, ...]) -> int | None:
    """--max-num-batched-tokens for a model's engines where the user set none: larger steps for an LLM
    reranker's engines that share a card (they have KV budgets: the card's memory is planned, and the
    budget's allowance of 2x the weights plus 3 GiB holds the larger step's activations), at least one
    window (a prompt is never split over steps). None: --max-num-batched-tokens as given, or vLLM's default."""
    if settings.max_num_batched_tokens or _passed(settings, spec, "--max-num-batched-tokens") is not None:
        return None
    if any(slot.kv_cache_bytes for slot in slots):
        return max(_SHARED_LLM_BATCHED_TOKENS, _window(settings, spec, info) or 0)
    return None


def _passed(settings: Settings, spec: ModelSpec, flag: str) -> str | None:
    """`flag`'s value in a model's vLLM pass-through args (the model's own come after the service's, and
    the last one wins, as in vLLM)."""
    return passed_value((*settings.vllm_args, *spec.vllm_args), flag)


def _window(settings: Settings, spec: ModelSpec, info: ModelInfo) -> int | None:
    """A model's engines' window: a pass-through --max-model-len (it comes last on the engine's command
    line, so it wins), else the model's, the service's, the model config's. None: not known."""
    passed = _passed(settings, spec, "--max-model-len")
    return (
        (human_int(passed) if passed else None)
        or spec.max_model_len
        or settings.max_model_len
        or info.default_max_len
        or info.window
    )


def _plan_gpu_shares(
    settings: Settings, models: list[tuple[ModelSpec, list[str | None]]], device: str
) -> list[list[float | None]]:
    """Each engine's --gpu-memory-utilization, planned together for the engines that share a GPU.

    `models`: each model with the CUDA_VISIBLE_DEVICES of each of its engines (None: the default GPU).
    On one card the shares never add up past the service's budget (--gpu-memory-utilization, else
    0.9): a model with its own `gpu_memory_utilization` gets that much (split over its engines on the
    card), the others split what is left evenly, model by model. A single engine on a card keeps
    the flag as given (None: vLLM's default).

    Raises: SettingsError when the given shares of one card add up past the budget."""
    if device == "cpu":
        return [[None] * len(visible) for _, visible in models]
    budget = settings.gpu_memory_utilization or _DEFAULT_GPU_SHARE
    cards: dict[str | None, list[tuple[int, int]]] = {}  # card -> (model index, engine index)
    for m, (_, visible) in enumerate(models):
        for e, card in enumerate(visible):
            cards.setdefault(card, []).append((m, e))
    shares: list[list[float | None]] = [[None] * len(visible) for _, visible in models]
    for card, engines in cards.items():
        if len(engines) == 1 and len(models) == 1:
            m, e = engines[0]
            shares[m][e] = models[m][0].gpu_memory_utilization or settings.gpu_memory_utilization
            continue
        on_card: dict[int, int] = {}
        for m, _ in engines:
            on_card[m] = on_card.get(m, 0) + 1
        given = {m: models[m][0].gpu_memory_utilization for m in on_card if models[m][0].gpu_memory_utilization}
        total = sum(v for v in given.values() if v)
        if total > budget + 1e-9:
            where = f"GPU {card}" if card is not None else "the GPU"
            raise SettingsError(
                f"gpu_memory_utilization of the models on {where} add up to {total:.2f}, more than the "
                f"budget {budget:.2f} (--gpu-memory-utilization/GPU_MEMORY_UTILIZATION)"
            )
        rest = [m for m in on_card if m not in given]
        each = (budget - total) / len(rest) if rest else 0.0
        if rest and each < 0.02:
            raise SettingsError(
                f"no GPU memory is left for {', '.join(repr(models[m][0].name) for m in rest)}: the other models' "
                f"gpu_memory_utilization take {total:.2f} of {budget:.2f}"
            )
        for m, e in engines:
            model_share = given.get(m) or each
            shares[m][e] = math.floor(model_share / on_card[m] * 1000) / 1000
    return shares


def plan_topology(
    settings: Settings,
    *,
    cpu_count: int | None = None,
    device: str | None = None,
    gpu_bytes: int | None = None,
    which: Callable[[str], str | None] = shutil.which,
    environ: Mapping[str, str] | None = None,
) -> Topology:
    """Raises: SettingsError when a model cannot be served (no model and no bundled one, a format refused,
    GPU shares past the card, --mps on without MPS). `gpu_bytes`: the card's memory (default: NVML's);
    `which`, `environ`: for engine.mps.mps_clients (default: PATH, the process environment)."""
    device = device or settings.resolved_device
    cpu_count = cpu_count or os.cpu_count() or 2
    specs = settings.models
    infos = [_model_info(settings, spec) for spec in specs]
    visible: list[list[str | None]] = []
    for spec, info in zip(specs, infos, strict=True):
        if settings.engine_urls:
            visible.append([])
            continue
        n = _replicas(settings, spec, info, device, cpu_count)
        devices = spec.devices or settings.engine_devices
        visible.append([devices[i % len(devices)] if devices else None for i in range(n)])
    shares = _plan_gpu_shares(settings, list(zip(specs, visible, strict=True)), device)
    try:
        mps_control, mps = mps_clients(
            settings.mps, device, settings.tensor_parallel_size, visible, which=which, environ=environ
        )
    except MpsError as exc:
        raise SettingsError(f"--mps on: {exc}; --mps off runs the engines without MPS") from None
    several = len(specs) > 1
    sharing = sum(len(v) for v in visible) > 1 and device != "cpu"
    if sharing and gpu_bytes is None:
        gpu_bytes = gpu_total_bytes()
    workers = _workers(settings, device, sum(len(v) for v in visible) or len(settings.engine_urls), cpu_count)
    plans = []
    for spec, info, cards, model_shares, joins in zip(specs, infos, visible, shares, mps, strict=True):
        prefix = f"{_slug(spec.name or '')}-" if several else ""
        slots = tuple(
            EngineSlot(
                f"{prefix}engine{i}",
                spec.name or "",
                share,
                card,
                _kv_budget(settings, spec, info, share, gpu_bytes) if sharing else None,
                join,
            )
            for i, (card, share, join) in enumerate(zip(cards, model_shares, joins, strict=True))
        )
        engines = max(1, len(slots) or len(settings.engine_urls))
        if settings.max_inflight_pairs:  # an explicit limit is the service's: split over the workers
            inflight = max(1, math.ceil(settings.max_inflight_pairs / workers))
        else:  # per worker: 32 engine batches (max_num_seqs) per engine, enough to keep them saturated
            inflight = 32 * (spec.max_num_seqs or settings.max_num_seqs) * engines
        plans.append(ModelPlan(spec, info, slots, inflight, _batched_tokens(settings, spec, info, slots)))
    return Topology(
        device=device, models=tuple(plans), external_urls=settings.engine_urls, workers=workers, mps_control=mps_control
    )


def _slug(name: str) -> str:
    """A model name as part of an engine name (metric labels, file names)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[-48:] or "model"


def engine_configs(
    settings: Settings,
    topology: Topology,
    ports: list[int],
    *,
    sockets: list[str] | None = None,
    mps_env: Mapping[str, str] | None = None,
) -> list[EngineConfig]:
    """One EngineConfig per managed engine (`topology.engines` order): on the given Unix sockets,
    else the given loopback ports; `mps_env` (a running MPS daemon's) for the engines that join it."""
    endpoints: list[tuple[int, str | None]] = (
        [(0, path) for path in sockets] if sockets else [(port, None) for port in ports]
    )
    bases = {plan.name: _model_config(settings, topology, plan) for plan in topology.models}
    configs = []
    for slot, (port, uds) in zip(topology.engines, endpoints, strict=True):
        env: tuple[tuple[str, str], ...] = (
            (("CUDA_VISIBLE_DEVICES", slot.visible_devices),) if slot.visible_devices is not None else ()
        )
        if slot.mps and mps_env:
            env += tuple(sorted(mps_env.items()))
        base = bases[slot.model]
        kv = ("--kv-cache-memory-bytes", str(slot.kv_cache_bytes)) if slot.kv_cache_bytes else ()
        configs.append(
            base.with_(
                port=port,
                uds=uds,
                name=slot.name,
                gpu_memory_utilization=slot.gpu_memory_utilization,
                extra_env=env,
                extra_args=(*base.extra_args, *kv),
            )
        )
    return configs


def _model_config(settings: Settings, topology: Topology, plan: ModelPlan) -> EngineConfig:
    """What every engine of one model runs with (the service-wide settings where the model is silent)."""
    cpu = topology.device == "cpu"
    spec, fmt = plan.spec, plan.info.format
    launch = (
        LaunchMode(tuple(shlex.split(settings.engine_command)), False)
        if settings.engine_command
        else detect_launch_mode()
    )
    return EngineConfig(
        model=spec.model,
        served_model_name=plan.name,
        port=0,
        family=fmt.family,
        format=fmt,
        logit_offset=plan.info.logit_offset,
        device=topology.device,
        launch=launch,
        max_num_seqs=spec.max_num_seqs or settings.max_num_seqs,
        max_num_batched_tokens=settings.max_num_batched_tokens or plan.max_num_batched_tokens,
        gpu_memory_utilization=spec.gpu_memory_utilization or settings.gpu_memory_utilization,
        tensor_parallel_size=settings.tensor_parallel_size,
        max_model_len=spec.max_model_len or settings.max_model_len or plan.info.default_max_len,
        dtype=settings.dtype or ("float32" if cpu else None),
        enforce_eager=settings.enforce_eager if settings.enforce_eager is not None else cpu,
        hf_overrides=dict(fmt.hf_overrides) if fmt.hf_overrides else None,
        chat_template=fmt.template_path,
        extra_args=(*settings.vllm_args, *spec.vllm_args),
        log_threshold=settings.engine_log,
    )
