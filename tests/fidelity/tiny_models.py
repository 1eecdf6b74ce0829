"""Tiny random-weight checkpoints for fidelity tests, built locally (no download).

Both tokenizers are word-level over a small generated vocabulary, so that one vocabulary
word is one token and `encode(decode(ids)) == ids` (truncation and chunking by token ids,
by decoded text or by character offsets all give the same tokens):

* spaces and tabs separate pieces and are dropped;
* runs of newlines are kept as single tokens ("\\n", "\\n\\n", "\\n\\n\\n" are three different ids),
  as in the real Qwen tokenizer (198 vs 271), so a prompt that is one newline short tokenizes
  differently and scores differently;
* punctuation is split off into its own pieces.

Weights are float32 (the CPU engine serves float32), seeded, so every build is identical.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    PreTrainedTokenizerFast,
    Qwen3Config,
    Qwen3ForCausalLM,
)

__all__ = ["DEFAULT_INSTRUCTION", "QWEN3_SUFFIX", "QWEN3_SYSTEM_PREFIX", "build_bert", "build_qwen3", "make_words"]

QWEN3_SYSTEM_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
QWEN3_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"

# Text the prompt itself contains (vocabulary must cover it, or it becomes [UNK]).
_PROMPT_TEXT = QWEN3_SYSTEM_PREFIX + "<Instruct>: " + DEFAULT_INSTRUCTION + "\n<Query>: \n<Document>: " + QWEN3_SUFFIX


def make_words(n: int, seed: int = 1234) -> list[str]:
    """n distinct lowercase pseudo-words (deterministic)."""
    rng = random.Random(seed)
    cons, vows = "bcdfghjklmnprstvwz", "aeiou"
    sylls = [c + v for c in cons for v in vows]
    out: list[str] = []
    seen = {"yes", "no"}
    while len(out) < n:
        w = "".join(rng.choice(sylls) for _ in range(rng.randint(2, 3)))
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"[ \t]+"), behavior="removed"),
            pre_tokenizers.Split(Regex(r"\n+"), behavior="isolated"),
            pre_tokenizers.Punctuation(behavior="isolated"),
        ]
    )


def _vocab(specials: list[str], extra_texts: list[str], words: list[str]) -> dict[str, int]:
    pre = _pre_tokenizer()
    vocab: dict[str, int] = {}
    for t in specials:
        vocab.setdefault(t, len(vocab))
    pieces: list[str] = ["\n", "\n\n", "\n\n\n", "yes", "no"]
    for text in extra_texts:
        for chunk in text.replace("<|im_start|>", " ").replace("<|im_end|>", " ").split("<think>"):
            for part in chunk.split("</think>"):
                pieces += [p for p, _ in pre.pre_tokenize_str(part)]
    for p in pieces + words + list(".,:;!?\"'<>/-"):
        vocab.setdefault(p, len(vocab))
    return vocab


def build_qwen3(out: Path, words: list[str], *, seed: int = 0) -> Path:
    """A 2-layer Qwen3ForCausalLM (original-reranker layout: the engine converts it with hf-overrides)."""
    out.mkdir(parents=True, exist_ok=True)
    specials = ["<|endoftext|>", "[UNK]", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
    vocab = _vocab(specials, [_PROMPT_TEXT], words)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = _pre_tokenizer()
    tok.add_special_tokens(specials[:4])
    tok.add_tokens(specials[4:])
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        model_max_length=40960,
        clean_up_tokenization_spaces=False,
    )
    hf_tok.save_pretrained(out)
    cfg = Qwen3Config(
        vocab_size=max(1024, len(vocab)),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=4096,
        rope_theta=1000000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        hidden_act="silu",
        attention_bias=False,
        bos_token_id=vocab["<|endoftext|>"],
        eos_token_id=vocab["<|im_end|>"],
        pad_token_id=vocab["<|endoftext|>"],
        architectures=["Qwen3ForCausalLM"],
        torch_dtype="float32",
        initializer_range=0.07,  # wider than the default 0.02, so P(yes) spreads over (0, 1)
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(cfg).float().eval()
    model.save_pretrained(out, safe_serialization=True)
    return out


def build_bert(out: Path, words: list[str], *, seed: int = 0) -> Path:
    """A 2-layer BertForSequenceClassification with one label (a cross-encoder)."""
    out.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = _vocab(specials, [], words)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = _pre_tokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
        clean_up_tokenization_spaces=False,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )
    hf_tok.save_pretrained(out)
    cfg = BertConfig(
        vocab_size=max(1024, len(vocab)),
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=512,
        max_position_embeddings=512,
        type_vocab_size=2,
        num_labels=1,
        pad_token_id=vocab["[PAD]"],
        architectures=["BertForSequenceClassification"],
        torch_dtype="float32",
        initializer_range=0.3,  # wider than the default 0.02, so logits spread over about -4..4
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(cfg).float().eval()
    model.save_pretrained(out, safe_serialization=True)
    return out
