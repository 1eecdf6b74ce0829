"""Smoke test: bench/bench.py's stub mode runs end to end and prints its table (no speed checks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]


def test_bench_stub_mode_prints_a_table(tmp_path: Path) -> None:
    out = tmp_path / "results"
    cmd = [
        sys.executable,
        str(ROOT / "bench" / "bench.py"),
        "--engine",
        "stub",
        "--variants",
        "direct,gateway",
        "--docs",
        "5",
        "--concurrency",
        "2",
        "--sweep-docs",
        "5",
        "--reps",
        "1",
        "--duration",
        "1",
        "--warmup",
        "0.2",
        "--no-plots",
        "--out",
        str(out),
    ]
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| variant | docs/req | conc | pairs/s |" in proc.stdout
    for variant in ("direct", "gateway"):
        assert f"| {variant} | 5 | " in proc.stdout, proc.stdout
    assert (out / "results.md").read_text().count("| gateway |") >= 1
    data = json.loads((out / "results.json").read_text())
    assert {r["variant"] for r in data["records"]} == {"direct", "gateway"}
    assert all(r["errors"] == 0 and r["requests"] > 0 for r in data["records"]), data["records"]
    # everything the benchmark started is gone
    assert data["started_pids"]
    alive = [
        pid
        for pid in data["started_pids"]
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
    assert not alive, alive
