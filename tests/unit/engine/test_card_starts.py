"""engine.gpu_starts: the register of first starts by GPU: an out-of-memory retry starts only once no
other engine on its cards is in its first start, and one retry at a time."""

from __future__ import annotations

import threading

import pytest

from engine import FAMILIES, EngineConfig
from engine.config import human_int
from engine.gpu_starts import CardStarts, engine_cards, scaled_kv_budget
from tests.unit.engine.test_config import cfg as _base_cfg


def cfg(**kw: object) -> EngineConfig:
    return _base_cfg(**{"device": "cuda", "family": FAMILIES["llm-reranker"], **kw})


def test_a_retry_waits_for_the_other_first_starts_on_its_card() -> None:
    starts, stop = CardStarts(), threading.Event()
    card0, card1 = frozenset({"0"}), frozenset({"1"})
    starts.begin("a", card0)
    starts.begin("other-card", card1)
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(starts.begin_alone("b", card0, stop, 30.0)))
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive() and starts.others("x", card0) == ["a"]  # b waits for a, not for the other card
    starts.end("a")
    waiter.join(10)
    assert got == [True] and starts.others("x", card0) == ["b"]
    # a second retry on the same card waits for the first one's start to end
    second = threading.Thread(target=lambda: got.append(starts.begin_alone("c", card0, stop, 30.0)))
    second.start()
    second.join(0.3)
    assert second.is_alive()
    starts.end("b")
    second.join(10)
    assert got == [True, True]


def test_a_stopped_wait_counts_nothing_and_a_timeout_says_so() -> None:
    starts, stop = CardStarts(), threading.Event()
    starts.begin("a", frozenset({"0"}))
    stop.set()
    assert starts.begin_alone("b", frozenset({"0", "1"}), stop, 30.0) is False
    assert starts.others("x", frozenset({"0"})) == ["a"]  # b not counted
    assert starts.begin_alone("b", frozenset({"0"}), threading.Event(), 0.2) is False
    starts.end("a")
    starts.end("a")  # repeated end: harmless
    assert starts.begin_alone("b", frozenset({"0"}), threading.Event(), 0.2) is True


def test_engine_cards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert engine_cards(cfg(device="cpu")) is None
    assert engine_cards(cfg()) == frozenset({"0"})
    assert engine_cards(cfg(tensor_parallel_size=2)) == frozenset({"0", "1"})
    assert engine_cards(cfg(extra_env=(("CUDA_VISIBLE_DEVICES", "3,2"),))) == frozenset({"3"})
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,6")
    assert engine_cards(cfg(tensor_parallel_size=2)) == frozenset({"5", "6"})


def test_human_int_reads_what_vllm_reads() -> None:
    assert [human_int(v) for v in ("7", "8G", "2K", "25.6k", "1m", "auto", "-1", "1.5G", "x")] == [
        7,
        8 * 2**30,
        2048,
        25_600,
        1_000_000,
        None,
        None,
        None,
        None,
    ]


def test_effective_args_read_human_ints_and_short_flags_instead_of_failing() -> None:
    args = cfg(
        extra_args=("--kv-cache-memory-bytes", "8G", "-asc", "4", "--max-num-batched-tokens=16k")
    ).effective_args()
    assert (args.kv_cache_memory_bytes, args.api_server_count, args.max_num_batched_tokens) == (8 * 2**30, 4, 16_000)
    odd = cfg(extra_args=("--max-model-len", "auto", "--tensor-parallel-size", "two")).effective_args()
    assert (odd.max_model_len, odd.tensor_parallel_size) == (None, 1)


def test_the_retry_scales_a_human_kv_budget_too() -> None:
    assert scaled_kv_budget(("--kv-cache-memory-bytes", "8G"), 0.5) == ("--kv-cache-memory-bytes", str(4 * 2**30))
