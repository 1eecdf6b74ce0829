"""`vllm-rerank run-batch` with the real engine (bundled all-MiniLM-L6-v2): rankings against
sentence-transformers, bad lines reported without stopping, and a resumed run that does not redo
finished lines, both after a torn output and after SIGINT.

Two engine starts: run-batch's own service in the first test, the shared `service` in the second.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest

from tests.support.service import ROOT, ServiceProcess
from tests.support.wait import wait_until

pytestmark = pytest.mark.engine

QUERIES = [
    ("How do cats hunt?", ["Stocks fell on Friday.", "Cats stalk and pounce on mice.", "Banana bread recipe."]),
    ("What is the capital of France?", ["Paris is the capital of France.", "Berlin is in Germany.", "Cats purr."]),
    ("Python programming", ["A snake in the zoo.", "Writing code in Python 3.", "Learn to program with Python."]),
    ("Healthy breakfast", ["Oatmeal with berries.", "A car engine.", "Eggs and spinach in the morning.", "Taxes."]),
]


def _command(*argv: str) -> list[str]:
    return [sys.executable, "-m", "vllm_rerank", "run-batch", *argv]


def _reference(st_model, query: str, docs: list[str]) -> list[float]:  # type: ignore[no-untyped-def]
    """(cos + 1) / 2 on the same weights, float32: the service's documented bi-encoder mapping."""
    emb = st_model.encode([query, *docs], normalize_embeddings=True, convert_to_numpy=True)
    return [float((c + 1) / 2) for c in emb[1:] @ emb[0]]


def _check_ranking(st_model, query: str, docs: list[str], results: list[dict], top_n: int | None) -> None:  # type: ignore[no-untyped-def, type-arg]
    ref = _reference(st_model, query, docs)
    order = sorted(range(len(docs)), key=lambda i: -ref[i])
    assert [r["index"] for r in results] == order[: top_n or len(docs)]
    assert [r["relevance_score"] for r in results] == pytest.approx([ref[i] for i in order[: len(results)]], abs=1e-4)


def test_run_batch_with_its_own_engine_ranks_reports_bad_lines_and_resumes(tmp_path: Path, st_model) -> None:  # type: ignore[no-untyped-def]
    good = [
        {"id": f"q{i}", "query": q, "documents": d, **({"top_n": 2} if i == 1 else {})}
        for i, (q, d) in enumerate(QUERIES)
    ]
    lines = [
        orjson.dumps(good[0]),
        orjson.dumps(good[1]),
        orjson.dumps({"query": QUERIES[2][0], "documents": [{"text": t} for t in QUERIES[2][1]]}),  # no id
        b"{this is not json",
        orjson.dumps({"id": 5, "query": "q"}),  # no documents
        orjson.dumps({"id": "blank", "query": "   ", "documents": ["a"]}),  # the service's 400
        orjson.dumps(good[3]),
        orjson.dumps(good[0]),
    ]
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    # An earlier run finished lines 1-2 and was killed while writing line 3. Sentinel scores no model
    # gives prove those two lines are kept, not redone.
    done = [
        orjson.dumps({"id": "q0", "results": [{"index": 2, "relevance_score": 42.0}]}) + b"\n",
        orjson.dumps({"id": "q1", "results": [{"index": 1, "relevance_score": 43.0}]}) + b"\n",
    ]
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"".join(done) + b'{"results": [{"index": 0, "rel')
    errors = tmp_path / "errors.jsonl"

    run = subprocess.run(
        _command("-i", str(src), "-o", str(out), "--errors", str(errors), "--window", "3"),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert run.returncode == 0, run.stderr
    assert "resuming after line 2 of 8" in run.stderr and "torn" in run.stderr
    assert "service ready after" in run.stderr and "stopping the service" in run.stderr
    got = out.read_bytes().splitlines(keepends=True)
    assert len(got) == len(lines)
    assert got[:2] == done
    rows = [orjson.loads(x) for x in got]

    _check_ranking(st_model, *QUERIES[2], rows[2]["results"], None)
    assert "id" not in rows[2]
    assert rows[6]["id"] == "q3"
    _check_ranking(st_model, *QUERIES[3], rows[6]["results"], None)
    assert rows[7]["id"] == "q0"
    _check_ranking(st_model, *QUERIES[0], rows[7]["results"], None)

    assert rows[3] == {"error": {"line": 4, "message": rows[3]["error"]["message"]}}
    assert rows[3]["error"]["message"].startswith("not JSON")
    assert rows[4]["id"] == 5 and rows[4]["error"]["line"] == 5 and "documents" in rows[4]["error"]["message"]
    assert rows[5]["id"] == "blank" and "rejected by the service (400)" in rows[5]["error"]["message"]
    assert "query" in rows[5]["error"]["message"]
    reported = [orjson.loads(x) for x in errors.read_bytes().splitlines()]
    assert [(e["line"], e.get("id")) for e in reported] == [(4, None), (5, 5), (6, "blank")]
    for n in (4, 5, 6):
        assert re.search(rf"^line {n}: ", run.stderr, re.MULTILINE), run.stderr
    assert re.search(r"run-batch: 6 lines, \d+ pairs in", run.stderr), run.stderr

    again = subprocess.run(
        _command("-i", str(src), "-o", str(out)),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert again.returncode == 0 and "is complete (8 lines)" in again.stderr
    assert out.read_bytes().splitlines(keepends=True) == got


def _served(service: ServiceProcess) -> float:
    """Rerank requests the service has answered 200 (its Prometheus counter, summed over labels)."""
    text = httpx.get(f"{service.url}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("vllm_rerank_requests_total{") and 'status="200"' in line and "/v2/rerank" in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_interrupted_run_goes_on_without_redoing_lines(tmp_path: Path, service: ServiceProcess, st_model) -> None:  # type: ignore[no-untyped-def]
    n = 600
    src = tmp_path / "in.jsonl"
    src.write_bytes(
        b"".join(
            orjson.dumps({"id": i, "query": f"{QUERIES[i % 4][0]} #{i}", "documents": QUERIES[i % 4][1]}) + b"\n"
            for i in range(n)
        )
    )
    out = tmp_path / "out.jsonl"
    cmd = _command("-i", str(src), "-o", str(out), "--service-url", service.url, "--window", "4")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    before = _served(service)
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    try:
        wait_until(lambda: out.exists() and out.read_bytes().count(b"\n") >= 20, 300, 0.02)
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 130, err
    assert "interrupted" in err
    kept = out.read_bytes()
    assert kept.endswith(b"\n")
    k = kept.count(b"\n")
    assert 20 <= k < n
    assert [orjson.loads(x)["id"] for x in kept.splitlines()] == list(range(k))

    mid = _served(service)
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr
    assert f"resuming after line {k} of {n}" in second.stderr
    assert "pair/s" in second.stderr  # the progress bar's rate (and ETA) on stderr
    pairs = sum(len(QUERIES[i % 4][1]) for i in range(k, n))
    assert f"run-batch: {n - k} lines, {pairs} pairs in" in second.stderr
    # The finished lines were not sent again. Slack of the window (4): a request the first run had in
    # flight when it was interrupted may be counted by the service after `mid` was read; redoing the
    # k >= 20 finished lines would be 5x that.
    assert n - k <= _served(service) - mid <= n - k + 4
    assert mid - before >= k
    got = out.read_bytes()
    assert got.startswith(kept)
    rows = [orjson.loads(x) for x in got.splitlines()]
    assert [r["id"] for r in rows] == list(range(n))
    for i in (0, k - 1, k, n - 1):
        _check_ranking(st_model, f"{QUERIES[i % 4][0]} #{i}", QUERIES[i % 4][1], rows[i]["results"], None)
