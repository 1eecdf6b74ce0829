"""Start-up messages: the pre-flight's one line and exit code, one "ready at" line, no early "running"."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from engine import EngineState
from gateway.cli import parse_settings
from gateway.server import GatewayConfig, limits_from
from gateway.settings import Settings
from gateway.startup import ListeningFilter, announce_ready, preflight_exit_code, ready_line
from gateway.topology import engine_configs, plan_topology
from tests.unit.engines import snapshot


def test_ready_line_names_url_model_and_engines() -> None:
    s = Settings(host="127.0.0.1", port=8123)
    assert ready_line(s, model="all-MiniLM-L6-v2", engines=1) == (
        "ready at http://127.0.0.1:8123 (model all-MiniLM-L6-v2, 1 engine)"
    )
    assert (
        ready_line(Settings(host="::1", port=80), model="m", engines=3)
        == "ready at http://[::1]:80 (model m, 3 engines)"
    )


class Handle:
    def __init__(self, ok: bool = True) -> None:
        self.ok = ok
        self.state = EngineState.STARTING
        self.released = threading.Event()

    def wait_first_start(self, timeout: float | None = None) -> bool:
        self.released.wait(timeout)
        return self.ok

    def snapshot(self):  # type: ignore[no-untyped-def]
        return snapshot(state=self.state.value)


def test_ready_line_comes_once_every_engine_is_ready(caplog: pytest.LogCaptureFixture) -> None:
    handles = [Handle(), Handle()]
    stopping = threading.Event()
    t = threading.Thread(
        target=announce_ready,
        args=(handles, Settings(port=9000)),
        kwargs={"model": "m", "stopping": stopping, "started": 0.0},
    )
    with caplog.at_level(logging.INFO, logger="vllm_rerank.startup"):
        t.start()
        handles[0].state = EngineState.READY
        handles[0].released.set()
        assert not [r for r in caplog.records if "ready at" in r.getMessage()]
        handles[1].state = EngineState.READY
        handles[1].released.set()
        t.join(10)
    lines = [r.getMessage() for r in caplog.records if "ready at" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("ready at http://0.0.0.0:9000 (model m, 2 engines) after ")


def test_no_ready_line_when_an_engine_failed(caplog: pytest.LogCaptureFixture) -> None:
    failed = Handle(ok=False)
    failed.released.set()
    with caplog.at_level(logging.INFO, logger="vllm_rerank.startup"):
        announce_ready([failed], Settings(), model="m", stopping=threading.Event(), started=0.0)
    assert not [r for r in caplog.records if "ready at" in r.getMessage()]


def test_uvicorn_running_line_is_reworded_in_main_process_and_workers() -> None:
    config = GatewayConfig("gateway.app:create_app_from_env", limits=limits_from(Settings()), factory=True)
    config.configure_logging()  # what uvicorn runs in the main process and again in each worker
    logger = logging.getLogger("uvicorn.error")
    assert sum(isinstance(f, ListeningFilter) for f in logger.filters) == 1
    record = logger.makeRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        "Uvicorn running on %s://%s:%d (Press CTRL+C to quit)",
        ("http", "0.0.0.0", 8000),
        None,
        extra={"color_message": "Uvicorn running on ..."},
    )
    assert ListeningFilter().filter(record)
    text = record.getMessage()
    assert "Uvicorn running" not in text and "running" not in text
    assert text.startswith("gateway listening on http://0.0.0.0:8000 (not ready yet")
    assert not hasattr(record, "color_message")


def test_preflight_failure_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = parse_settings(["--model", str(tmp_path / "missing"), "--model-family", "cross-encoder"], {})
    configs = engine_configs(s, plan_topology(s), [9])
    assert preflight_exit_code(s, configs, environ={"HF_HUB_OFFLINE": "1"}) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: cannot start (bad_model): model path {tmp_path / 'missing'} does not exist"
    assert preflight_exit_code(s.replace(preflight=False), configs, environ={}) == 0  # --no-preflight
