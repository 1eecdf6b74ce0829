"""openai SDK: list models (GET /v1/models, OpenAI list shape)."""

from __future__ import annotations

import httpx
import pytest

from tests.sdk.conftest import API_KEY

openai = pytest.importorskip("openai")
pytestmark = pytest.mark.sdk


def test_models_list(base_url) -> None:  # type: ignore[no-untyped-def]
    client = openai.OpenAI(api_key=API_KEY, base_url=f"{base_url}/v1", max_retries=0)
    ids = [m.id for m in client.models.list()]
    served = httpx.get(f"{base_url}/health", timeout=10).json()["model"]
    assert served in ids
    assert all(m.object == "model" for m in client.models.list())
