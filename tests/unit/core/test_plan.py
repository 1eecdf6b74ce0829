"""The planner: a pure function from query + model window + tokenizer to a scoring plan.

A one-token-per-character tokenizer makes every budget countable by eye."""

from __future__ import annotations

from typing import Any

import pytest

from compat.errors import CompatError
from compat.model import RerankQuery
from core.plan import ScoringPlan, fits_without_tokenizer, plan_request
from engine import FAMILIES, ModelWindow
from engine.tokenizer import ModelTokenizer

SPECIALS = {"bi-encoder": 2, "cross-encoder": 3}


class Chars:
    """Hugging Face tokenizer stand-in: one token per character; 2 specials alone, 3 for a pair."""

    def __call__(self, texts: Any, **kwargs: Any) -> dict[str, Any]:
        if isinstance(texts, str):
            out: dict[str, Any] = {"input_ids": [ord(c) for c in texts]}
            if kwargs.get("return_offsets_mapping"):
                out["offset_mapping"] = [(i, i + 1) for i in range(len(texts))]
            return out
        return {"input_ids": [[ord(c) for c in t] for t in texts]}

    def encode(self, text: str, **kwargs: Any) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(map(chr, ids))

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return 3 if pair else 2


def _tok(family: str) -> ModelTokenizer:
    return ModelTokenizer(Chars(), FAMILIES[family])


def _window(family: str, max_len: int | None) -> ModelWindow:
    return ModelWindow(family=FAMILIES[family], max_model_len=max_len, prompt_format=None)


def _q(query: str, *docs: str, **kw: Any) -> RerankQuery:
    return RerankQuery(query=query, texts=docs, originals=docs, **kw)


def test_short_inputs_fit_without_a_tokenizer_and_go_unchanged() -> None:
    q = _q("query", "doc one", "doc two")
    assert fits_without_tokenizer(q, _window("cross-encoder", 512))
    assert fits_without_tokenizer(q, _window("cross-encoder", None))
    assert not fits_without_tokenizer(_q("q", "x" * 600), _window("cross-encoder", 512))
    plan = plan_request(q, _window("cross-encoder", 512), _tok("cross-encoder"))
    assert plan == ScoringPlan("query", q.texts, (0, 1), None, ())


def test_no_window_known_passes_the_callers_limit_to_the_engine() -> None:
    q = _q("q", "abc", max_tokens_per_doc=7)
    assert plan_request(q, _window("cross-encoder", None), None).engine_max_tokens == 7


def test_long_query_is_cut_to_half_the_window_with_a_warning() -> None:
    # window 40, pair overhead 3: the query may take (40 - 3) // 2 = 18 tokens
    plan = plan_request(_q("x" * 30, "d"), _window("cross-encoder", 40), _tok("cross-encoder"))
    assert plan.query == "x" * 18
    assert plan.warnings == ("query truncated from 30 to 18 tokens (model limit 40)",)


def test_truncation_off_refuses_too_long_inputs_with_413() -> None:
    with pytest.raises(CompatError) as query_err:
        plan_request(_q("x" * 30, "d", truncate=False), _window("cross-encoder", 40), _tok("cross-encoder"))
    assert (query_err.value.status, query_err.value.param) == (413, "query")
    with pytest.raises(CompatError) as doc_err:
        plan_request(_q("q", "ok", "y" * 50, truncate=False), _window("cross-encoder", 40), _tok("cross-encoder"))
    assert (doc_err.value.status, doc_err.value.param) == (413, "documents[1]")


def test_cross_encoder_limited_by_its_window_is_cut_by_the_engine_in_one_pass() -> None:
    plan = plan_request(_q("q", "short", "y" * 50), _window("cross-encoder", 40), _tok("cross-encoder"))
    assert plan.engine_truncate == 40
    assert plan.texts == ("short", "y" * 50)  # sent whole: the engine's tokenizer cuts
    assert plan.engine_max_tokens is None


def test_encoder_with_a_callers_limit_is_cut_here_at_token_boundaries() -> None:
    plan = plan_request(
        _q("q", "short", "y" * 50, max_tokens_per_doc=10), _window("cross-encoder", 40), _tok("cross-encoder")
    )
    assert plan.texts == ("short", "y" * 10)
    assert plan.engine_truncate is None and plan.engine_max_tokens is None


def test_bi_encoder_budget_ignores_the_query() -> None:
    # embedded separately: the document may use the whole window minus its 2 specials
    plan = plan_request(_q("q" * 30, "y" * 50), _window("bi-encoder", 40), _tok("bi-encoder"))
    assert plan.texts == ("y" * 38,)


def test_llm_reranker_leaves_the_cut_to_the_engine_tokenizer() -> None:
    plan = plan_request(_q("q", "y" * 5000), _window("llm-reranker", 1000), _tok("llm-reranker"))
    assert plan.texts == ("y" * 5000,)
    assert plan.engine_max_tokens is not None and 0 < plan.engine_max_tokens < 1000


def test_chunks_split_long_documents_and_keep_their_owner() -> None:
    plan = plan_request(
        _q("q", "a" * 5, "b" * 25, max_tokens_per_doc=10, max_chunks_per_doc=2),
        _window("cross-encoder", 40),
        _tok("cross-encoder"),
    )
    assert plan.texts == ("a" * 5, "b" * 10, "b" * 10)  # at most 2 chunks of the 25
    assert plan.owners == (0, 1, 1)
    assert plan.engine_max_tokens == 10


def test_text_no_model_could_read_is_cut_before_any_tokenizer_sees_it() -> None:
    from core.plan import MAX_CHARS_PER_TOKEN, precut

    huge = "x" * 20_000_000
    q = _q("query", "short", huge)
    cut = precut(q, 512)
    assert cut.texts[0] == "short" and len(cut.texts[1]) == 512 * MAX_CHARS_PER_TOKEN
    assert precut(_q("q", "short"), 512) is not None and precut(_q("q", "short"), 512).texts == ("short",)
    assert precut(q, None) is q  # window unknown: nothing to bound by
    chunked = precut(_q("q", huge, max_chunks_per_doc=3), 512)
    assert len(chunked.texts[0]) == 3 * 512 * MAX_CHARS_PER_TOKEN  # room for every chunk asked for


def test_admission_counts_long_texts_as_more_than_one_pair() -> None:
    from core.plan import ADMISSION_CHARS, admission_units

    assert admission_units("q", ["a", "b", "c"]) == 3
    assert admission_units("q", ["a", "x" * (10 * ADMISSION_CHARS)]) == 1 + 11
