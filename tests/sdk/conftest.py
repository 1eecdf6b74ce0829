"""Real client libraries, unmodified, pointed at the shared real service.

Each test asserts on the client's own result objects: the order and scores equal our direct
HTTP answer to the same request. Inputs are tiny (the CPU engine does ~1-2k tokens/s).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support.service import ServiceProcess

# Keep clients off the network and quiet: LiteLLM's remote cost map, Haystack's telemetry.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

API_KEY = "test-key"  # the service runs without auth; clients insist on some key
QUERY = "What is the capital of France?"
DOCS = [
    "Berlin is the capital of Germany.",
    "Paris is the capital and largest city of France.",
    "The Eiffel Tower is in Paris.",
    "Bananas are yellow.",
]
TOP_N = 3

Ranked = list[tuple[int, float]]


@pytest.fixture(scope="session")
def base_url(service: ServiceProcess) -> str:
    return service.url


@pytest.fixture(scope="session")
def direct(base_url: str) -> Callable[[str, dict[str, Any]], Any]:
    """POST a body to one of our paths; the parsed JSON answer (asserting 200)."""

    def post(path: str, body: dict[str, Any]) -> Any:
        r = httpx.post(f"{base_url}{path}", json=body, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()

    return post


@pytest.fixture(scope="session")
def expected(direct: Callable[[str, dict[str, Any]], Any]) -> Callable[..., Ranked]:
    """[(index, relevance_score)] best first, from our Cohere-family answer to the same request."""

    def ranked(
        *,
        top_n: int | None = TOP_N,
        query: str = QUERY,
        documents: list[Any] | None = None,
        path: str = "/v1/rerank",
        **extra: Any,
    ) -> Ranked:
        body = {"query": query, "documents": documents or DOCS, "top_n": top_n, **extra}
        return [(r["index"], r["relevance_score"]) for r in direct(path, body)["results"]]

    return ranked


def same_ranking(got: Ranked, want: Ranked) -> None:
    assert [i for i, _ in got] == [i for i, _ in want]
    assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-6)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sdk: a real client library against the shared real service")
