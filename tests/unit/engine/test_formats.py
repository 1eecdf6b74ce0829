"""Format detection: from config.json (a local path, an HF-cache snapshot, a cached hub id), else by name;
refusals name the model, the reason and the way out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine import FORMATS, FormatRefusal, detect_format
from engine.formats import hub_id_of


def _dir(root: Path, name: str, cfg: dict[str, Any]) -> str:
    d = root / name
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps(cfg))
    return str(d)


def _hf_cache(root: Path, repo: str, cfg: dict[str, Any]) -> str:
    org, name = repo.split("/")
    base = root / "hub" / f"models--{org}--{name}"
    snap = base / "snapshots" / ("ab" * 20)
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps(cfg))
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text("ab" * 20)
    return str(snap)


BERT_CE = {"architectures": ["BertForSequenceClassification"], "model_type": "bert", "max_position_embeddings": 512}


@pytest.mark.parametrize(
    ("name", "cfg", "fmt"),
    [
        ("minilm", {"architectures": ["BertModel"], "model_type": "bert"}, "bi-encoder"),
        (
            "ms-marco",
            {**BERT_CE, "sbert_ce_default_activation_function": "torch.nn.modules.linear.Identity"},
            "cross-encoder",
        ),
        (
            "m3",
            {"architectures": ["XLMRobertaForSequenceClassification"], "model_type": "xlm-roberta"},
            "cross-encoder",
        ),
        ("mb", {"architectures": ["ModernBertForSequenceClassification"], "model_type": "modernbert"}, "cross-encoder"),
        ("Qwen3-Reranker-0.6B", {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3"}, "qwen3-reranker"),
        (
            "Qwen3-Reranker-0.6B-seq-cls",
            {"architectures": ["Qwen3ForSequenceClassification"], "model_type": "qwen3"},
            "qwen3-reranker-seq-cls",
        ),
        ("bge-reranker-v2-gemma", {"architectures": ["GemmaForCausalLM"], "model_type": "gemma"}, "bge-reranker-gemma"),
        ("mxbai-rerank-base-v2", {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2"}, "mxbai-rerank-v2"),
    ],
)
def test_detected_from_config(tmp_path: Path, name: str, cfg: dict[str, Any], fmt: str) -> None:
    assert detect_format(_dir(tmp_path, name, cfg)).format is FORMATS[fmt]


def test_hf_cache_snapshot_path_is_judged_by_its_hub_id(tmp_path: Path) -> None:
    snap = _hf_cache(
        tmp_path,
        "mixedbread-ai/mxbai-rerank-large-v2",
        {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "max_position_embeddings": 32768},
    )
    info = detect_format(snap)
    assert info.format.name == "mxbai-rerank-v2" and info.hub_id == "mixedbread-ai/mxbai-rerank-large-v2"
    assert info.logit_offset == 6.0 and info.default_max_len == 8704
    assert hub_id_of(snap) == "mixedbread-ai/mxbai-rerank-large-v2"


def test_cached_hub_id_reads_the_cached_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _hf_cache(
        tmp_path,
        "BAAI/bge-reranker-v2-gemma",
        {"architectures": ["GemmaForCausalLM"], "model_type": "gemma", "max_position_embeddings": 8192},
    )
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    info = detect_format("BAAI/bge-reranker-v2-gemma")
    assert info.format.name == "bge-reranker-gemma" and info.window == 8192 and info.default_max_len == 1024


@pytest.mark.parametrize(
    ("hub_id", "fmt"),
    [
        ("Qwen/Qwen3-Reranker-4B", "qwen3-reranker"),
        ("tomaarsen/Qwen3-Reranker-4B-seq-cls", "qwen3-reranker-seq-cls"),
        ("cross-encoder/ms-marco-MiniLM-L6-v2", "cross-encoder"),
        ("BAAI/bge-reranker-v2-m3", "cross-encoder"),
        ("BAAI/bge-reranker-v2-gemma", "bge-reranker-gemma"),
        ("mixedbread-ai/mxbai-rerank-base-v2", "mxbai-rerank-v2"),
        ("sentence-transformers/all-MiniLM-L6-v2", "bi-encoder"),
    ],
)
def test_uncached_hub_ids_are_judged_by_name(hub_id: str, fmt: str) -> None:
    assert detect_format(hub_id).format.name == fmt


def test_the_window_caps_the_default_length(tmp_path: Path) -> None:
    small = _dir(
        tmp_path,
        "Qwen3-Reranker-small",
        {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "max_position_embeddings": 2048},
    )
    assert detect_format(small).default_max_len == 2048
    assert detect_format(_dir(tmp_path, "ce", BERT_CE)).default_max_len is None  # vLLM derives it


@pytest.mark.parametrize(
    ("name", "cfg", "needle"),
    [
        ("jina-reranker-v3", {"architectures": ["JinaForRanking"], "model_type": "qwen3"}, "listwise"),
        (
            "bge-reranker-v2-minicpm-layerwise",
            {"architectures": ["LayerWiseMiniCPMForCausalLM"], "model_type": "minicpm"},
            "layerwise",
        ),
        ("colbertv2.0", {"architectures": ["HF_ColBERT"], "model_type": "bert"}, "late-interaction"),
        ("some-chat-model", {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}, "causal LM"),
        ("emotions", {**BERT_CE, "id2label": {"0": "a", "1": "b", "2": "c"}}, "3 labels"),
    ],
)
def test_refused_in_one_line_naming_model_reason_and_way_out(
    tmp_path: Path, name: str, cfg: dict[str, Any], needle: str
) -> None:
    path = _dir(tmp_path, name, cfg)
    with pytest.raises(FormatRefusal) as info:
        detect_format(path)
    message = str(info.value)
    assert "\n" not in message and path in message and needle in message and "--model-format" in message


def test_override_wins_and_unknown_override_is_refused(tmp_path: Path) -> None:
    chat = _dir(tmp_path, "my-qwen3", {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3"})
    with pytest.raises(FormatRefusal):
        detect_format(chat)  # a Qwen3 causal LM that does not say it is a reranker
    assert detect_format(chat, override="qwen3-reranker").format.name == "qwen3-reranker"
    with pytest.raises(FormatRefusal, match="unknown"):
        detect_format(chat, override="nope")


def test_settings_list_every_format() -> None:
    import typing

    from gateway.model_specs import FormatName

    assert set(typing.get_args(FormatName)) == set(FORMATS)
