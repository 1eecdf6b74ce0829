"""The engine snapshot: a frozen, typed value with a JSON round trip, read without score-changing defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from engine import FAMILIES, EngineArgs, EngineConfig, EngineRegistry, EngineSnapshot, EngineState, publish_state
from engine.config import LaunchMode
from engine.external import ExternalEngine
from engine.supervisor import EngineSupervisor
from tests.unit.engines import snapshot


def test_round_trip_through_json_is_exact() -> None:
    s = snapshot(family="llm-reranker", max_model_len=8192, prompt_format="qwen3-reranker", pid=12, restarts=2)
    again = EngineSnapshot.model_validate_json(s.model_dump_json())
    assert again == s
    assert again.score_kind == "logit" and again.window.max_model_len == 8192


def test_every_score_deciding_field_is_required() -> None:
    """A snapshot without its family, model or window must not validate: a default there would be a
    silent change of scores (the old reader took a missing family for a bi-encoder with cosine scores)."""
    full = json.loads(snapshot(family="cross-encoder").model_dump_json())
    for key in ("family", "state", "prompt_format", "args", "model", "served_model_name", "url"):
        partial = {k: v for k, v in full.items() if k != key}
        with pytest.raises(ValidationError):
            EngineSnapshot.model_validate(partial)


def test_unknown_family_state_or_field_is_refused() -> None:
    full = json.loads(snapshot(family="cross-encoder").model_dump_json())
    for bad in (
        {"family": {**full["family"], "score_kind": "cosine"}},  # a cross-encoder does not score cosines
        {"state": "sleeping"},
        {"extra": 1},
    ):
        with pytest.raises(ValidationError):
            EngineSnapshot.model_validate({**full, **bad})


def test_frozen() -> None:
    with pytest.raises(ValidationError):
        snapshot().state = EngineState.FAILED  # type: ignore[misc]


def test_registry_reads_what_the_supervisor_publishes(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    cfg = EngineConfig(
        model="/m",
        served_model_name="m",
        port=7001,
        family=FAMILIES["cross-encoder"],
        launch=LaunchMode(("vllm",), False),
        max_num_seqs=64,
        extra_args=("--max-num-seqs", "32"),
    )
    managed = EngineSupervisor(cfg).snapshot()
    external = ExternalEngine("http://127.0.0.1:9/", name="external0").snapshot()
    publish_state(path, [managed, external])
    engines = EngineRegistry(path).engines()
    assert engines == (managed, external)
    assert engines[0].args.max_num_seqs == 32  # what the engine runs with: the pass-through flag wins
    assert engines[1].state is EngineState.STARTING and not engines[1].managed


def test_registry_keeps_the_last_good_state_over_a_torn_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    publish_state(path, [snapshot()])
    registry = EngineRegistry(path)
    assert len(registry.engines()) == 1
    path.write_text('{"updated": 1, "engines": [{"name": ')
    registry.refresh(max_age_s=0)
    assert len(registry.engines()) == 1


def test_effective_args_read_pass_through_flags_in_both_spellings() -> None:
    base = EngineConfig(
        model="/m",
        served_model_name="m",
        port=1,
        family=FAMILIES["bi-encoder"],
        launch=LaunchMode(("vllm",), False),
        max_num_seqs=256,
        device="cuda",
        gpu_memory_utilization=0.5,
    )
    assert base.effective_args() == EngineArgs(max_num_seqs=256, gpu_memory_utilization=0.5)
    passed = base.with_(extra_args=("--max-num-seqs=8", "--gpu-memory-utilization", "0.7", "--dtype", "half"))
    assert passed.effective_args() == EngineArgs(max_num_seqs=8, gpu_memory_utilization=0.7, dtype="half")
    assert base.with_(device="cpu").effective_args().gpu_memory_utilization is None  # not passed on CPU
