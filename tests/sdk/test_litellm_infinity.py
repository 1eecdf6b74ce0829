"""LiteLLM's infinity provider, in the newest release (the main test venv's) and in the one tested
before (1.109.1, in its own venv, .venv-litellm-1109, created once and reused), against
`/infinity/rerank`: both read `document` as a plain string, which only that path answers
(compat.detect: on `/rerank` they cannot be told from `hosted_vllm`, which needs an object)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.sdk.conftest import API_KEY, DOCS, QUERY, TOP_N, Ranked, same_ranking
from tests.support.isolated_venv import isolated_python
from tests.support.service import ROOT, ServiceProcess

pytestmark = pytest.mark.sdk
OLD = "1.109.1"
VENV = ROOT / ".venv-litellm-1109"
SCRIPT = Path(__file__).with_name("isolated") / "litellm_infinity.py"


def test_newest_litellm_infinity_provider(base_url: str, expected: Callable[..., Ranked]) -> None:
    litellm = pytest.importorskip("litellm")
    res = litellm.rerank(  # return_documents defaults to True in LiteLLM
        model="infinity/any-model",
        query=QUERY,
        documents=DOCS,
        top_n=TOP_N,
        api_base=f"{base_url}/infinity",
        api_key=API_KEY,
        num_retries=0,
    )
    same_ranking([(r["index"], r["relevance_score"]) for r in res.results], expected())
    assert [r["document"]["text"] for r in res.results] == [DOCS[r["index"]] for r in res.results]


def test_litellm_tested_before_infinity_provider(service: ServiceProcess, expected: Callable[..., Ranked]) -> None:
    py = isolated_python(VENV, f"litellm=={OLD}")
    version = subprocess.run([str(py), "-m", "pip", "show", "litellm"], capture_output=True, text=True).stdout
    assert f"Version: {OLD}" in version, version
    proc = subprocess.run(
        [str(py), str(SCRIPT), f"{service.url}/infinity", QUERY, json.dumps(DOCS)],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "NO_PROXY": "127.0.0.1,localhost", "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout.strip().splitlines()[-1])["results"]
    same_ranking([(int(i), s) for i, s, _ in rows], expected())
    assert [text for _, _, text in rows] == [DOCS[int(i)] for i, _, _ in rows]
