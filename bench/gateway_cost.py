#!/usr/bin/env python3
"""The gateway's own cost per request in CPU time, measured in one process so that other load on
the machine barely moves it (a load-robust companion to `bench.py --engine stub`).

One uvloop event loop runs everything: the stub engine (bench/stub_engine.py's protocol), the
real gateway app (`create_app`, served by the gateway's own uvicorn protocol, the same code a
worker runs) in front of it, and the lean load generator's keep-alive connections. Requests are
sent one at a time; for each request the process CPU time (`time.process_time`, user + system)
is taken, so time spent waiting for a CPU while other processes run is not counted. `direct`
(client → stub `/score`) and `gateway` (client → gateway `/v2/rerank` → stub) are interleaved,
and the gateway's added cost is the difference of their medians: everything the gateway does,
its socket syscalls and the extra loopback hop included. On an idle machine that is close to the
added p50 latency (nothing waits on anything else at concurrency 1).

    .venv/bin/python bench/gateway_cost.py --docs 1,100,1000 --requests 400 --reps 5
    .venv/bin/python bench/gateway_cost.py --docs 100 --profile cprofile.out   # cProfile the gateway path

With `--profile` the gateway requests run under cProfile (the whole process: client and stub
frames included, so look at the gateway's functions); read it with
`python -c "import pstats; pstats.Stats('cprofile.out').sort_stats('tottime').print_stats(40)"`.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import os
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# The stub's model name is no hub id: fail the gateway's tokenizer preload at once instead of
# retrying the network from a thread (whose CPU time would be counted).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

import orjson  # noqa: E402
import stub_engine  # noqa: E402
from loadgen import HttpConn, build_request  # noqa: E402

import bench  # noqa: E402


def _free_socket() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1024)
    s.setblocking(False)
    return s


async def _start_stub() -> tuple[str, asyncio.AbstractServer]:
    handler = stub_engine._Handler("stub", 0.0)
    sock = _free_socket()
    server = await asyncio.get_running_loop().create_server(lambda: stub_engine._HttpProtocol(handler), sock=sock)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server


async def _start_gateway(engine_url: str, service_args: list[str]) -> tuple[str, tuple[Any, asyncio.Future[None]]]:
    from engine import EngineRegistry
    from engine.external import ExternalEngine
    from gateway.app import create_app
    from gateway.protocol import GatewayHttpProtocol
    from gateway.server import GatewayConfig, GatewayServer, limits_from
    from gateway.settings import Settings

    ext = ExternalEngine(engine_url, name="engine0")
    ext.start()
    deadline = time.monotonic() + 30
    while not ext.snapshot().ready:
        if time.monotonic() > deadline:
            raise TimeoutError("the stub engine never became ready")
        await asyncio.sleep(0.05)
    snapshot = ext.snapshot()
    ext.stop()
    # The gateway preloads the model's tokenizer in a thread (importing transformers: seconds of CPU,
    # counted by process_time): do it now, so the failure for the stub's name is cached before measuring.
    from engine.tokenizer import load_tokenizer

    load_tokenizer(snapshot.model, snapshot.family)
    settings = Settings.model_validate(_settings_fields(engine_url, service_args))
    app = create_app(settings, registry=EngineRegistry(static=[snapshot]))
    sock = _free_socket()
    config = GatewayConfig(
        app,
        limits=limits_from(settings),
        log_level="warning",
        access_log=False,
        http=GatewayHttpProtocol,
        lifespan="on",
    )
    server = GatewayServer(config=config)
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started:  # uvicorn's Server has a flag, no event to wait on
        if serving.done():
            serving.result()
            raise RuntimeError("the gateway stopped before it started")
        await asyncio.sleep(0.01)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", (server, serving)


def _settings_fields(engine_url: str, service_args: list[str]) -> dict[str, object]:
    fields: dict[str, object] = {"engine_urls": [engine_url], "log_level": "warning"}
    for arg in service_args:  # --flag=value
        name, _, value = arg.lstrip("-").partition("=")
        fields[name.replace("-", "_")] = value
    return fields


class _Client:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.url = url
        self.conn = HttpConn(parts.hostname or "127.0.0.1", parts.port or 80)

    async def post(self, raw: bytes) -> None:
        status, body = await self.conn.request(raw)
        if status != 200:
            raise RuntimeError(f"{self.url} answered {status}: {body[:300]!r}")


async def _measure(client: _Client, bodies: list[bytes], prof: cProfile.Profile | None) -> list[float]:
    cpu = time.process_time
    out = []
    for body in bodies:
        if prof is not None:
            prof.enable()
        t0 = cpu()
        await client.post(body)
        out.append(cpu() - t0)
        if prof is not None:
            prof.disable()
    return out


def _requests(client: _Client, kind: str, docs: list[str], n: int, tag: str) -> list[bytes]:
    """Whole HTTP requests, each with a query never sent before."""
    out = []
    for i in range(n):
        q = f"what is the meaning of {tag} request {i}"
        if kind == "direct":
            body = orjson.dumps({"model": "stub", "text_1": q, "text_2": docs})
        else:
            body = orjson.dumps({"model": "bench", "query": q, "documents": docs})
        out.append(build_request(client.url, body, {}))
    return out


async def run(a: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING)
    engine_url, _stub = await _start_stub()
    gw_url, (server, serving) = await _start_gateway(engine_url, a.service_arg)
    clients = {"direct": _Client(f"{engine_url}/score"), "gateway": _Client(f"{gw_url}/v2/rerank")}
    if a.only:
        clients = {a.only: clients[a.only]}
    for c in clients.values():
        await c.conn.connect()
    prof = cProfile.Profile(time.thread_time) if a.profile else None
    print(f"load average before {bench.loadavg()}; {a.requests} requests x {a.reps} repetitions per cell", flush=True)
    rows = []
    for n in a.docs:
        docs = bench.make_docs(n, a.doc_words, seed=1000 + n)
        for kind, c in clients.items():  # warm-up (first-request work, caches)
            await _measure(c, _requests(c, kind, docs, 50, "warm"), None)
        med: dict[str, list[float]] = {kind: [] for kind in clients}
        for rep in range(a.reps):
            for kind in list(clients)[:: 1 if rep % 2 == 0 else -1]:
                bodies = _requests(clients[kind], kind, docs, a.requests, f"r{rep}{kind}")
                xs = await _measure(clients[kind], bodies, prof if kind == "gateway" else None)
                med[kind].append(statistics.median(xs) * 1e3)
        if a.only:
            print(f"{a.only} {n} docs: {a.reps} x {a.requests} requests, CPU ms/req {med[a.only]}", flush=True)
            continue
        added = [g - d for g, d in zip(med["gateway"], med["direct"], strict=True)]
        gw_ms = statistics.median(med["gateway"])
        added_ms = statistics.median(added)
        rows.append(
            f"| {n} | {statistics.median(med['direct']):.3f} | {gw_ms:.3f} | **{added_ms:.3f}** "
            f"[{min(added):.3f}–{max(added):.3f}] | {n / added_ms * 1e3:,.0f} |"
        )
        print(rows[-1], flush=True)
    if rows:
        print(
            "\n| docs/req | direct CPU ms/req | gateway path CPU ms/req | gateway added CPU ms/req, median [min–max] "
            "of the repetitions' medians | docs per gateway CPU-second |"
        )
        print("|---:|---:|---:|---:|---:|")
        print("\n".join(rows))
    print(f"\nload average after {bench.loadavg()}")
    if prof is not None:
        prof.dump_stats(a.profile)
        print(f"cProfile (thread CPU time) of the gateway requests: {a.profile}")
    server.should_exit = True
    await serving
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=bench.ints, default=[1, 100, 1000])
    p.add_argument("--requests", type=int, default=300, help="requests per variant per repetition")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--doc-words", type=int, default=12)
    p.add_argument("--profile", help="write a cProfile of the gateway requests to this file")
    p.add_argument(
        "--only",
        choices=("direct", "gateway"),
        help="send only this variant's requests (instruction counts: run under valgrind with two --requests "
        "values and divide the difference)",
    )
    p.add_argument("--service-arg", action="append", default=[], help="a gateway setting, --service-arg=--flag=value")
    a = p.parse_args(argv)
    import uvloop

    uvloop.install()
    return asyncio.run(run(a))


if __name__ == "__main__":
    sys.exit(main())
