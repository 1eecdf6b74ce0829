"""Engine output re-logged at its own level: vLLM's prefixes, tracebacks, warnings, progress and stages."""

from __future__ import annotations

import logging

import pytest

from engine.logs import EngineLogReader, shown
from engine.process import EngineProcess
from tests.support.script_engine import script_engine
from tests.support.wait import wait_until

# Lines as vLLM 0.32 writes them (from a real start of the bundled model), and what each is.
REAL = [
    ("(APIServer pid=8270) INFO 12-02 07:39:46 [api_utils.py:286] non-default args: {'uds': '/x'}", logging.INFO),
    ("(APIServer pid=8270) WARNING 12-02 07:39:46 [system_utils.py:255] Found ulimit of 20000", logging.WARNING),
    ("(VllmWorker-0 pid=8704) WARNING 12-02 07:40:19 [vllm.py:725] Model Runner V2 requires Triton", logging.WARNING),
    ("(EngineCore pid=8532) ERROR 12-02 07:40:21 [core.py:1] EngineCore failed to start.", logging.ERROR),
    (
        "INFO 12-02 07:40:21 [core.py:402] init engine (profile, create kv cache, warmup model) took 0.02 s",
        logging.INFO,
    ),
    ("DEBUG 12-02 07:40:21 [core.py:1] step", logging.DEBUG),
    ("(APIServer pid=1) INFO:     Started server process [1]", logging.INFO),
    ("/x/api_server.py:24: DeprecationWarning: `vllm.entrypoints.openai.api_server` is deprecated", logging.WARNING),
    ("Loading safetensors checkpoint shards: 100% Completed | 1/1 [00:00<00:00, 26.72it/s]", logging.INFO),
    ("Triton is installed, but doesn't include CPU backend. Disabling Triton.", logging.INFO),
    ("[W1202 07:40:19.644647439 utils.cpp:68] Warning: NUMA binding: Using MEMBIND policy", logging.WARNING),
]


@pytest.mark.parametrize(("text", "level"), REAL)
def test_each_line_keeps_the_level_it_was_written_at(text: str, level: int) -> None:
    assert EngineLogReader().read(text).level == level


def test_a_traceback_is_error_until_the_next_prefixed_line() -> None:
    reader = EngineLogReader()
    lines = [
        "(EngineCore pid=8) Traceback (most recent call last):",
        '  File "/x/core.py", line 1, in run',
        "    raise ValueError('boom')",
        "ValueError: boom",
        "(APIServer pid=7) INFO 12-02 07:40:21 [api_server.py:1] shutting down",
    ]
    levels = [reader.read(t).level for t in lines]
    assert levels == [logging.ERROR] * 4 + [logging.INFO]


def test_progress_lines_name_the_stage_reached() -> None:
    reader = EngineLogReader()
    assert reader.stage == "starting process"
    chatter = reader.read("(APIServer pid=1) INFO 12-02 07:40:23 [launcher.py:195] Route: /docs, Methods: GET")
    assert not chatter.progress and reader.stage == "starting process"
    assert reader.read("(Worker pid=2) INFO 12-02 07:40:19 [cpu_model_runner.py:68] Starting to load model /m").progress
    assert reader.stage == "loading weights"
    reader.read("(Worker pid=2) INFO 12-02 07:40:19 [default_loader.py:501] Loading weights took 0.11 seconds")
    assert reader.stage == "loaded weights"
    reader.read("(APIServer pid=1) INFO 12-02 07:40:23 [entry.py:140] Starting vLLM server on unix:/tmp/e.sock")
    assert reader.stage == "starting api server"
    reader.read("Loading safetensors checkpoint shards:  50% Completed")  # a later line of an earlier stage
    assert reader.stage == "starting api server"


def test_threshold_keeps_progress_and_drops_chatter() -> None:
    reader = EngineLogReader()
    route = reader.read("(APIServer pid=1) INFO 12-02 07:40:23 [launcher.py:195] Route: /docs, Methods: GET")
    loading = reader.read("(Worker pid=2) INFO 12-02 07:40:19 [default_loader.py:501] Loading weights took 0.1 s")
    warn = reader.read("(APIServer pid=1) WARNING 12-02 07:39:46 [x.py:1] careful")
    assert [shown(x, "warning") for x in (route, loading, warn)] == [False, True, True]
    assert [shown(x, "info") for x in (route, loading, warn)] == [True, True, True]
    assert [shown(x, "error") for x in (route, loading, warn)] == [False, True, False]


def test_engine_process_relogs_each_line_at_its_level(caplog: pytest.LogCaptureFixture) -> None:
    script = (
        "print('(APIServer pid=1) INFO 12-02 07:40:23 [launcher.py:195] Route: /docs')\n"
        "print('(Worker pid=2) INFO 12-02 07:40:19 [default_loader.py:501] Loading weights took 0.1 seconds')\n"
        "print('(APIServer pid=1) WARNING 12-02 07:39:46 [x.py:1] careful')\n"
        "print('Traceback (most recent call last):')\n"
        "print('ValueError: boom', flush=True)\n"
    )
    config = script_engine(script)
    proc = EngineProcess(config)
    with caplog.at_level(logging.DEBUG, logger="vllm_rerank.engine.log"):
        proc.start()
        wait_until(lambda: proc.poll() is not None, 30, 0.05)
        proc.flush_log()
    got = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "vllm_rerank.engine.log"]
    assert [level for level, _ in got] == [logging.INFO, logging.WARNING, logging.ERROR, logging.ERROR]
    assert "Loading weights took" in got[0][1] and got[0][1].startswith("[engine0]")
    assert not any("Route:" in m for _, m in got)  # below --engine-log warning, and not progress
    assert proc.lines == 5 and "Route: /docs" in proc.tail[0]  # the tail keeps every line
    assert proc.stage == "loaded weights"
