"""The newest cohere SDK (7.x) in its own environment, since its pins conflict with the main
test venv's (langchain-cohere needs cohere<6, llama-index-postprocessor-cohere-rerank <7).
The environment is created once (.venv-cohere-latest) and reused; the test command runs it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.sdk.conftest import DOCS, QUERY
from tests.support.isolated_venv import isolated_python
from tests.support.service import ROOT, ServiceProcess

pytestmark = pytest.mark.sdk
VENV = ROOT / ".venv-cohere-latest"
SCRIPT = Path(__file__).with_name("isolated") / "cohere_latest.py"


def test_latest_cohere_sdk_in_its_own_environment(service: ServiceProcess) -> None:
    py = isolated_python(VENV, "cohere>=7")
    proc = subprocess.run(
        [str(py), str(SCRIPT), service.url, QUERY, json.dumps(DOCS)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout)
    version = subprocess.run([str(py), "-m", "pip", "show", "cohere"], capture_output=True, text=True).stdout
    assert "Version: 7." in version, version

    def direct(path: str, top_n: int | None) -> list[list[float]]:
        body = {"model": "m", "query": QUERY, "documents": DOCS, "top_n": top_n}
        results = httpx.post(f"{service.url}{path}", json=body, timeout=60).json()["results"]
        return [[r["index"], r["relevance_score"]] for r in results]

    def same(a: list[list[float]], b: list[list[float]]) -> None:
        assert [int(x[0]) for x in a] == [int(x[0]) for x in b]
        assert [x[1] for x in a] == pytest.approx([x[1] for x in b], abs=1e-9)

    same([x[:2] for x in got["v1"]], direct("/v1/rerank", 3))
    assert [x[2] for x in got["v1"]] == [DOCS[int(x[0])] for x in got["v1"]]
    same(got["v2"], direct("/v2/rerank", None))
    same(got["async_v2"], direct("/v2/rerank", 2))
    assert "query" in got["error_message"]
