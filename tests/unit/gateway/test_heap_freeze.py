"""A worker freezes its start-up heap (gateway.app._freeze_heap): the first full garbage collection
would otherwise walk every object the imports and the tokenizer made, during the first requests.

Run in a child interpreter: gc.freeze() is process-wide, and this test process builds many apps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

CHILD = """
import gc, sys, time
from starlette.testclient import TestClient
from engine import EngineRegistry
from engine.transport import CallableTransport
from gateway.app import create_app
from gateway.settings import Settings
from tests.unit.engines import snapshot

freeze = sys.argv[1] == "on"
registry = EngineRegistry(static=[snapshot(model=sys.argv[2])])  # the bundled model: a real tokenizer
app = create_app(Settings(), registry=registry, engine_transport=CallableTransport(lambda *a: (200, b"{}")),
                 freeze_heap=freeze)
with TestClient(app) as client:
    at_start = gc.get_freeze_count()
    deadline = time.monotonic() + 120
    while freeze and gc.get_freeze_count() <= at_start and time.monotonic() < deadline:
        client.get("/health")  # lets the loop run the tokenizer's load and the second freeze
        time.sleep(0.05)
    print(at_start, gc.get_freeze_count())
"""


def _counts(mode: str, model: str) -> tuple[int, int]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, model], cwd=ROOT, capture_output=True, text=True, timeout=180
    )
    assert out.returncode == 0, out.stderr[-2000:]
    first, then = out.stdout.split()[-2:]
    return int(first), int(then)


def test_a_worker_freezes_its_start_up_heap_then_again_with_the_tokenizer(bundled_model_path: str) -> None:
    at_start, loaded = _counts("on", bundled_model_path)
    assert at_start > 50_000  # the imports and the app (85k here), out of the collector's walk
    assert loaded > at_start  # the tokenizer's load brought more (transformers), frozen too
    assert _counts("off", bundled_model_path) == (0, 0)  # tests' apps leave the process's collector alone
