#!/usr/bin/env python3
"""vllm-rerank benchmark: the gateway side by side with direct vLLM and LiteLLM's proxy.

One command starts what it needs, measures, prints a table and writes results under
bench/results/<stamp>/ (results.md, results.json, throughput_vs_concurrency.png,
latency_vs_docs.png), then stops everything it started.

Variants (all in front of the SAME engine):
  direct         POST {engine}/score    (exactly the call the gateway makes: text_1/text_2)
  direct-rerank  POST {engine}/rerank   (vLLM's own rerank route; LiteLLM's hosted_vllm calls it)
  gateway        POST {gateway}/v2/rerank (Cohere v2), `--workers` from --workers' first value
  gateway-wN     the same with N workers (one per extra --workers value)
  gateway-cache  a gateway with --score-cache-size (only with --cache-size, if the service has it)
  litellm        POST {litellm proxy}/v1/rerank, model hosted_vllm/<engine model>, api_base = engine

Engines:
  --engine real  start_service.py launches the real vLLM engine (or --url attaches to a running
                 service and reads the engine's URL from its /health)
  --engine stub  bench/stub_engine.py answers instantly: measures the gateway alone

Each measurement cell (documents per request x concurrency) runs every variant back to back,
in an order that rotates each repetition (A B C, B C A, ...), so machine drift cancels; the
table shows the median over repetitions with [min-max]. Added latency is the per-repetition
difference of a variant's p50/p99 and its baseline's (gateway vs direct, litellm vs
direct-rerank when present), then the median of those. Proxy CPU/request is psutil CPU time
(user+system) of the gateway's (or LiteLLM's) processes over the measurement window divided
by requests completed in it.

Examples:
  .venv/bin/python bench/bench.py --engine stub --docs 1,100,1000 --sweep-docs 1000 --workers 1,2
  .venv/bin/python bench/bench.py --engine real --variants direct,gateway,litellm,direct-rerank
  .venv/bin/python bench/bench.py --url http://localhost:8000 --variants direct,gateway
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import platform
import random
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from loadgen import Target, run_closed_loop  # noqa: E402

__all__ = ["main"]

WORDS = (  # noqa: SIM905 - a readable word pool; the same list of words as a literal
    "the quick brown fox jumps over lazy dog river mountain capital city country history science gravity "
    "energy mass force planet star galaxy ocean water climate weather economy market price trade bank money "
    "music art painting museum library book author novel poem language word grammar school student teacher "
    "computer network server database query index search engine model training data learning neural layer "
    "health doctor hospital medicine disease virus cell protein gene evolution species forest tree flower "
    "garden food bread cheese wine coffee tea breakfast dinner recipe kitchen house room window door street "
    "car train plane airport travel hotel beach island desert snow winter summer spring autumn morning night "
    "government election law court judge police army war peace treaty king queen empire dynasty revolution "
    "china beijing france paris japan tokyo india delhi brazil egypt cairo river nile amazon pacific atlantic"
).split()

NO_PROXY_ENV = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


# --------------------------------------------------------------------------- processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loadavg() -> tuple[float, float, float]:
    return tuple(round(x, 2) for x in os.getloadavg())  # type: ignore[return-value]


class Proc:
    """A child process in its own session; stop() = SIGTERM, grace, SIGKILL of the group."""

    def __init__(
        self, name: str, argv: list[str], *, env: dict[str, str] | None = None, cwd: Path = ROOT, log_dir: Path
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - the child's log outlives __init__; closed in stop()
        self.proc = subprocess.Popen(
            argv,
            env={**os.environ, **NO_PROXY_ENV, "PYTHONUNBUFFERED": "1", **(env or {})},
            cwd=str(cwd),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def wait_http(self, url: str, timeout: float, ok: Callable[[httpx.Response], bool] | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                r = httpx.get(url, timeout=5)
                if (ok or (lambda r: r.status_code == 200))(r):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"{self.name} not ready at {url} after {timeout:.0f}s:\n{self.tail()}")

    def stop(self, grace: float = 30.0) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()


def tree(pid: int) -> list[psutil.Process]:
    try:
        p = psutil.Process(pid)
        return [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def listening_pid(port: int) -> int | None:
    try:
        for c in psutil.net_connections(kind="tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
                return c.pid
    except (psutil.AccessDenied, PermissionError):
        return None
    return None


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def service_help() -> str:
    try:
        return subprocess.run(
            [sys.executable, str(ROOT / "start_service.py"), "--help"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=str(ROOT),
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


# --------------------------------------------------------------------------- workload
def make_docs(n: int, words: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        d = " ".join(rng.choice(WORDS) for _ in range(words))
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out


def make_query(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(6))


@dataclass
class Variant:
    name: str
    url: str  # endpoint URL
    dialect: str  # score | rerank
    model: str
    headers: dict[str, str] = field(default_factory=dict)
    cpu_pids: Callable[[], list[psutil.Process]] | None = None  # processes whose CPU is "proxy CPU"
    baseline: str | None = None  # variant its added latency is measured against
    workers: int = 1

    def body_maker(self, docs: list[str], workload: str, tag: str) -> Callable[[int], bytes]:
        docs_json = orjson.dumps(docs)
        model_json = orjson.dumps(self.model)
        if self.dialect == "score":
            head = b'{"model":' + model_json + b',"text_1":'
            tail = b',"text_2":' + docs_json + b"}"
        else:
            head = b'{"model":' + model_json + b',"query":'
            tail = b',"documents":' + docs_json + b"}"
        rng = random.Random(len(docs))
        base = make_query(rng)
        if workload == "repeat":
            fixed = head + orjson.dumps(base) + tail
            return lambda i: fixed
        # unique: every request has a query never sent before, so no (query, document) pair repeats
        return lambda i: head + orjson.dumps(f"{base} {tag} {i}") + tail


# --------------------------------------------------------------------------- stack
class Stack:
    """Everything the benchmark started; stop() in reverse order."""

    def __init__(self, args: argparse.Namespace, out: Path) -> None:
        self.args = args
        self.out = out
        self.procs: list[Proc] = []
        self.started_pids: list[int] = []
        self.variants: dict[str, Variant] = {}
        self.engine_url = ""
        self.gateway_engine_url = ""  # the gateway's hop to the engine (engine_url unless --stub-hop uds)
        self.engine_model = ""
        self.engine_pids: set[int] = set()
        self.notes: list[str] = []
        self._help: str | None = None

    @property
    def help(self) -> str:
        if self._help is None:
            self._help = service_help()
        return self._help

    def start(self, name: str, argv: list[str], **kw: Any) -> Proc:
        p = Proc(name, argv, log_dir=self.out / "logs", **kw)
        self.procs.append(p)
        self.started_pids.append(p.pid)
        return p

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.stop()
        self.procs.clear()

    # -- engine
    def start_engine(self) -> None:
        a = self.args
        names = a.variants
        workers = a.workers
        if a.engine == "stub":
            port = free_port()
            argv = [sys.executable, str(HERE / "stub_engine.py"), "--port", str(port), "--procs", str(a.stub_procs)]
            if a.stub_hop == "uds":  # the gateway reaches it as its own engines: a Unix socket
                uds = f"/tmp/vllm-rerank-bench-stub-{port}.sock"  # short: a socket path fits 107 bytes
                argv += ["--uds", uds]
                self.gateway_engine_url = "http+unix://" + quote(uds, safe="")
            p = self.start("stub-engine", argv)
            self.engine_url = f"http://127.0.0.1:{port}"
            p.wait_http(f"{self.engine_url}/health", 30)
            self.engine_pids = {q.pid for q in tree(p.pid)}
            self.engine_model = "stub"
            gw_needed = [n for n in names if n.startswith("gateway")]
            if gw_needed:
                self.add_gateway("gateway", workers[0])
        elif a.url:
            h = httpx.get(f"{a.url.rstrip('/')}/health", timeout=10).json()
            self.engine_url = h["engines"][0]["url"]
            self.engine_pids = (
                {q.pid for q in tree(int(h["engines"][0]["pid"]))} if h["engines"][0].get("pid") else set()
            )
            gw_port = int(a.url.rstrip("/").rsplit(":", 1)[1])
            gw_pid = listening_pid(gw_port)
            cpu = self._cpu_fn(gw_pid, exclude_engine=True) if gw_pid else None
            if cpu is None:
                self.notes.append("gateway CPU not measured (its process was not found from the port)")
            self.variants["gateway"] = Variant(
                "gateway",
                f"{a.url.rstrip('/')}{a.gateway_path}",
                "rerank",
                "bench",
                cpu_pids=cpu,
                baseline="direct",
                workers=int(h.get("workers") or 1),
            )
        else:
            port = free_port()
            argv = [
                sys.executable,
                str(ROOT / "start_service.py"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(workers[0]),
                # the direct variants call the engine itself: loopback TCP, not the default Unix socket
                "--engine-port",
                str(free_port()),
                *a.service_arg,
            ]
            p = self.start("service", argv)
            url = f"http://127.0.0.1:{port}"
            print(f"starting the service (real engine): {' '.join(map(shlex.quote, argv[1:]))}", flush=True)
            # every engine ready, not just the first (the service says ready with one of several replicas)
            p.wait_http(
                f"{url}/health",
                a.ready_timeout,
                ok=lambda r: r.status_code == 200 and all(e["state"] == "ready" for e in r.json()["engines"]),
            )
            h = httpx.get(f"{url}/health", timeout=10).json()
            self.engine_url = h["engines"][0]["url"]
            self.engine_pids = {q.pid for e in h["engines"] for q in tree(int(e["pid"]))}
            self.warm(f"{url}{a.gateway_path}", n=2)
            self.settle("gateway", self._cpu_fn(p.pid, exclude_engine=True))
            self.variants["gateway"] = Variant(
                "gateway",
                f"{url}{a.gateway_path}",
                "rerank",
                "bench",
                cpu_pids=self._cpu_fn(p.pid, exclude_engine=True),
                baseline="direct",
                workers=workers[0],
            )
        if not self.engine_model:
            self.engine_model = httpx.get(f"{self.engine_url}/v1/models", timeout=10).json()["data"][0]["id"]
        self.variants["direct"] = Variant("direct", f"{self.engine_url}/score", "score", self.engine_model)
        self.variants["direct-rerank"] = Variant(
            "direct-rerank", f"{self.engine_url}/rerank", "rerank", self.engine_model
        )
        for w in workers[1:]:
            if any(n.startswith("gateway") for n in names):
                self.add_gateway(f"gateway-w{w}", w)
        if a.cache_size:
            if "--score-cache-size" in self.help:
                self.add_gateway("gateway-cache", workers[0], extra=["--score-cache-size", str(a.cache_size)])
            else:
                self.notes.append("gateway-cache skipped: start_service.py has no --score-cache-size yet")

    def warm(self, url: str, *, timeout: float = 300.0, n: int = 20, headers: dict[str, str] | None = None) -> None:
        """Send rerank requests until one succeeds (lazy loads: tokenizer, imports), then `n` more."""
        body = {"model": "bench", "query": "warm up", "documents": make_docs(8, 6, seed=7)}
        deadline = time.monotonic() + timeout
        last = ""
        with httpx.Client(timeout=timeout, headers=headers) as c:
            while time.monotonic() < deadline:
                try:
                    r = c.post(url, json=body)
                    if r.status_code == 200:
                        break
                    last = f"HTTP {r.status_code}: {r.text[:300]}"
                    if 400 <= r.status_code < 500 and r.status_code != 429:
                        raise RuntimeError(f"{url} refused the warm-up request: {last}")
                except httpx.HTTPError as exc:
                    last = repr(exc)
                time.sleep(0.5)
            else:
                raise TimeoutError(f"{url} never answered a rerank request: {last}")
            for i in range(n):
                c.post(url, json={**body, "query": f"warm up {i}"})

    def settle(self, name: str, procs: Callable[[], list[psutil.Process]], *, timeout: float = 180.0) -> None:
        """Wait until a started gateway uses (almost) no CPU while idle: its tokenizer preload imports
        transformers in a thread for seconds (tens of seconds on a loaded machine), holding the GIL
        against the requests being measured (bench/profile_gateway.py saw 63 % of a gateway's
        samples there during a measurement)."""
        deadline = time.monotonic() + timeout
        before = cpu_seconds(procs())
        while time.monotonic() < deadline:
            time.sleep(1.0)
            now = cpu_seconds(procs())
            if now - before < 0.05:  # under 5 % of a core for a second
                return
            before = now
        self.notes.append(f"{name}: still busy while idle after {timeout:g} s; measured anyway")

    def _cpu_fn(self, pid: int, *, exclude_engine: bool) -> Callable[[], list[psutil.Process]]:
        def fn() -> list[psutil.Process]:
            return [p for p in tree(pid) if not (exclude_engine and p.pid in self.engine_pids)]

        return fn

    def add_gateway(self, name: str, workers: int, extra: list[str] | None = None) -> None:
        port = free_port()
        flags = [
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            *self.args.service_arg,
            *(extra or []),
        ]
        engine = self.gateway_engine_url or self.engine_url
        argv = [sys.executable, str(ROOT / "start_service.py"), "--engine-url", engine, *flags]
        p = self.start(name, argv)
        url = f"http://127.0.0.1:{port}"
        p.wait_http(f"{url}/health", 120)
        self.warm(f"{url}{self.args.gateway_path}")
        self.settle(name, self._cpu_fn(p.pid, exclude_engine=True))
        shown = f" {' '.join(extra)}" if extra else ""
        self.notes.append(f"{name}: start_service.py --engine-url, workers={workers}{shown}")
        self.variants[name] = Variant(
            name,
            f"{url}{self.args.gateway_path}",
            "rerank",
            "bench",
            cpu_pids=self._cpu_fn(p.pid, exclude_engine=True),
            baseline="direct",
            workers=workers,
        )

    def start_litellm(self) -> bool:
        exe = self.args.litellm_bin or next(
            (
                str(c)
                for c in (ROOT / ".venv-litellm/bin/litellm", Path(sys.executable).parent / "litellm")
                if Path(c).exists()
            ),
            shutil.which("litellm"),
        )
        if not exe:
            self.notes.append(
                "litellm skipped: no `litellm` executable (pip install 'litellm[proxy]', or --litellm-bin)"
            )
            return False
        port = free_port()
        cfg = self.out / "litellm_config.yaml"
        cfg.write_text(
            "model_list:\n"
            "  - model_name: bench\n"
            "    litellm_params:\n"
            f"      model: hosted_vllm/{self.engine_model}\n"
            f"      api_base: {self.engine_url}\n"
            "litellm_settings:\n"
            "  drop_params: true\n"
            "  set_verbose: false\n"
            "  telemetry: false\n"
        )
        env = {
            "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_LOG": "ERROR",
            "LITELLM_TELEMETRY": "False",
            "DISABLE_SCHEMA_UPDATE": "true",
        }
        p = self.start(
            "litellm",
            [exe, "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"],
            env=env,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            p.wait_http(f"{url}/health/liveliness", self.args.litellm_timeout)
            self.warm(f"{url}/v1/rerank", n=2 if self.args.engine == "real" else 20)
        except (RuntimeError, TimeoutError) as exc:
            self.notes.append(f"litellm skipped: did not start ({str(exc).splitlines()[0]}); log {p.log_path}")
            p.stop()
            return False
        base = "direct-rerank" if "direct-rerank" in self.args.variants else "direct"
        self.variants["litellm"] = Variant(
            "litellm",
            f"{url}/v1/rerank",
            "rerank",
            "bench",
            cpu_pids=self._cpu_fn(p.pid, exclude_engine=False),
            baseline=base,
        )
        self.notes.append(f"litellm: {exe} (hosted_vllm/{self.engine_model}, api_base={self.engine_url})")
        return True


# --------------------------------------------------------------------------- measuring
@dataclass
class Record:
    variant: str
    docs: int
    concurrency: int
    rep: int
    requests: int
    window_s: float
    rps: float
    rps_count: float
    pairs_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    first_error: str | None
    cpu_ms_per_req: float | None
    load1: float
    started: float


async def measure(v: Variant, docs: list[str], conc: int, rep: int, a: argparse.Namespace) -> Record:
    target = Target(
        url=v.url,
        make_body=v.body_maker(docs, a.workload, f"r{rep}c{conc}{v.name}"),
        headers=v.headers,
        docs_per_request=len(docs),
    )
    procs = v.cpu_pids() if v.cpu_pids else []
    cpu: dict[str, float] = {}

    def on_window(edge: str) -> None:
        cpu[edge] = cpu_seconds(procs)

    started = time.time()
    res = await run_closed_loop(
        target,
        concurrency=conc,
        duration_s=a.duration,
        warmup_s=a.warmup,
        timeout_s=a.request_timeout,
        on_window=on_window if procs else None,
    )
    cpu_per = None
    if procs and "start" in cpu and "end" in cpu and res.requests:
        cpu_per = (cpu["end"] - cpu["start"]) / res.requests * 1000
    return Record(
        v.name,
        len(docs),
        conc,
        rep,
        res.requests,
        res.window_s,
        res.rps,
        res.rps_count,
        res.pairs_per_s,
        res.pct(0.5) * 1000,
        res.pct(0.99) * 1000,
        res.errors,
        res.first_error,
        cpu_per,
        os.getloadavg()[0],
        started,
    )


def plan_cells(a: argparse.Namespace) -> list[tuple[int, int]]:
    cells: list[tuple[int, int]] = [(a.sweep_docs, c) for c in a.concurrency]
    for d in a.docs:
        if (d, 1) not in cells:
            cells.append((d, 1))
    return cells


async def run_all(stack: Stack, a: argparse.Namespace) -> list[Record]:
    names = [n for n in a.variants if n in stack.variants]
    names += [
        n
        for n in stack.variants
        if n.startswith("gateway") and n not in names and any(x.startswith("gateway") for x in a.variants)
    ]
    cells = plan_cells(a)
    corpus = {d: make_docs(d, a.doc_words, seed=1000 + d) for d in {c[0] for c in cells}}
    records: list[Record] = []
    total = a.reps * len(cells) * len(names)
    k = 0
    for rep in range(a.reps):
        for ci, (d, c) in enumerate(cells):
            shift = (rep + ci) % len(names)
            order = names[shift:] + names[:shift]
            for name in order:
                k += 1
                r = await measure(stack.variants[name], corpus[d], c, rep, a)
                records.append(r)
                err = f" errors={r.errors} ({r.first_error})" if r.errors else ""
                cpu = f" cpu={r.cpu_ms_per_req:.2f}ms/req" if r.cpu_ms_per_req is not None else ""
                print(
                    f"[{k}/{total}] rep={rep} docs={d} conc={c} {name:14s} req/s={r.rps:8.1f} "
                    f"pairs/s={r.pairs_per_s:10.0f} (counted {r.rps_count * r.docs:10.0f}) "
                    f"p50={r.p50_ms:8.2f}ms p99={r.p99_ms:8.2f}ms{cpu} "
                    f"load1={r.load1:.2f}{err}",
                    flush=True,
                )
    return records


# --------------------------------------------------------------------------- reporting
def med(xs: list[float]) -> float:
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    return statistics.median(xs) if xs else float("nan")


def spread(xs: list[float], fmt: str) -> str:
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    if not xs:
        return "n/a"
    if len(xs) == 1:
        return format(xs[0], fmt)
    return f"{format(statistics.median(xs), fmt)} [{format(min(xs), fmt)}–{format(max(xs), fmt)}]"


def group(records: list[Record]) -> dict[tuple[str, int, int], list[Record]]:
    g: dict[tuple[str, int, int], list[Record]] = {}
    for r in records:
        g.setdefault((r.variant, r.docs, r.concurrency), []).append(r)
    return g


def added(records: list[Record], variant: str, baseline: str, docs: int, conc: int, attr: str) -> list[float]:
    by_rep: dict[int, dict[str, Record]] = {}
    for r in records:
        if r.docs == docs and r.concurrency == conc and r.variant in (variant, baseline):
            by_rep.setdefault(r.rep, {})[r.variant] = r
    return [
        getattr(x[variant], attr) - getattr(x[baseline], attr)
        for x in by_rep.values()
        if variant in x and baseline in x and x[variant].requests and x[baseline].requests
    ]


def ratios(records: list[Record], variant: str, baseline: str, docs: int, conc: int) -> list[float]:
    by_rep: dict[int, dict[str, Record]] = {}
    for r in records:
        if r.docs == docs and r.concurrency == conc and r.variant in (variant, baseline):
            by_rep.setdefault(r.rep, {})[r.variant] = r
    return [
        x[variant].pairs_per_s / x[baseline].pairs_per_s
        for x in by_rep.values()
        if variant in x and baseline in x and x[baseline].pairs_per_s > 0
    ]


def table(records: list[Record], stack: Stack, a: argparse.Namespace) -> str:
    g = group(records)
    rows = [
        (
            "| variant | docs/req | conc | pairs/s | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms "
            "| proxy CPU ms/req | errors |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    order = {n: i for i, n in enumerate(stack.variants)}
    for (name, d, c), rs in sorted(g.items(), key=lambda kv: (kv[0][1], kv[0][2], order.get(kv[0][0], 99))):
        v = stack.variants[name]
        base = v.baseline if v.baseline and v.baseline in {r.variant for r in records} else None
        ap50 = spread(added(records, name, base, d, c, "p50_ms"), ".2f") if base else "—"
        ap99 = spread(added(records, name, base, d, c, "p99_ms"), ".2f") if base else "—"
        cpu = spread([r.cpu_ms_per_req for r in rs if r.cpu_ms_per_req is not None], ".3f") if v.cpu_pids else "—"
        rows.append(
            f"| {name} | {d} | {c} | {spread([r.pairs_per_s for r in rs], '.0f')} | "
            f"{spread([r.rps for r in rs], '.1f')} | {spread([r.p50_ms for r in rs], '.2f')} | "
            f"{spread([r.p99_ms for r in rs], '.2f')} | {ap50} | {ap99} | {cpu} | {sum(r.errors for r in rs)} |"
        )
    return "\n".join(rows)


def targets(records: list[Record], stack: Stack, a: argparse.Namespace) -> list[str]:
    out: list[str] = []
    have = {r.variant for r in records}
    cmax = max(a.concurrency)
    d = a.sweep_docs
    if {"gateway", "direct"} <= have:
        rs = ratios(records, "gateway", "direct", d, cmax)
        if rs:
            m = med(rs)
            if a.engine == "stub":
                verdict = "(stub engine: the ≥ 98% target is for the real engine; this only shows gateway capacity)"
            else:
                verdict = ("PASS" if m >= 0.98 else "MISS") if d == 100 else "(target is for 100 docs)"
            out.append(
                f"throughput gateway/direct at {d} docs, concurrency {cmax}: {spread([x * 100 for x in rs], '.1f')}% "
                f"(target ≥ 98%) {verdict}"
            )
        ad = added(records, "gateway", "direct", 100, 1, "p50_ms")
        if ad:
            m = med(ad)
            a99 = added(records, "gateway", "direct", 100, 1, "p99_ms")
            out.append(
                f"added latency gateway vs direct, 100 docs, concurrency 1: p50 {spread(ad, '.2f')} ms "
                f"(target ≤ 1 ms) {'PASS' if m <= 1.0 else 'MISS'}; p99 {spread(a99, '.2f')} ms"
            )
    if a.engine == "stub":
        for name in [n for n in stack.variants if n.startswith("gateway") and n in have]:
            v = stack.variants[name]
            rs = group(records).get((name, d, cmax), [])
            if rs:
                per_worker = med([r.pairs_per_s for r in rs]) / v.workers
                cpu = med([r.cpu_ms_per_req for r in rs if r.cpu_ms_per_req])
                cap = d / cpu * 1000 if cpu and not math.isnan(cpu) else float("nan")
                verdict = ("PASS" if per_worker >= 100_000 else "MISS") if d >= 1000 else "(target is for 1000 docs)"
                out.append(
                    f"{name} (workers={v.workers}) on the stub, {d} docs, concurrency {cmax}: "
                    f"{per_worker:,.0f} docs/s per worker measured (target ≥ 100,000) {verdict}; "
                    f"CPU-bound capacity {cap:,.0f} docs per gateway-CPU-second"
                )
    if {"litellm", "gateway"} <= have:
        lb = stack.variants["litellm"].baseline or "direct"
        for dd in sorted({r.docs for r in records if r.concurrency == 1}):
            gl = added(records, "gateway", "direct", dd, 1, "p50_ms")
            ll = added(records, "litellm", lb, dd, 1, "p50_ms")
            if gl and ll:
                mg, ml = med(gl), med(ll)
                ratio = ml / mg if mg > 0 else float("inf")
                verdict = "PASS" if ratio >= 3 or (mg <= 0 < ml) else "MISS"
                out.append(
                    f"added p50 at {dd} docs, concurrency 1: litellm {ml:.2f} ms (vs {lb}) / gateway {mg:.2f} ms "
                    f"(vs direct) = {ratio:.1f}× (target ≥ 3×) {verdict}"
                )
    if "gateway-cache" in have and "direct" in have:
        rs = ratios(records, "gateway-cache", "direct", d, cmax)
        if rs:
            out.append(
                f"{a.workload} workload, gateway-cache/direct pairs/s at {d} docs, concurrency {cmax}: "
                f"{spread(rs, '.2f')}× (target > 1× for repeated pairs)"
            )
    return out


def plots(records: list[Record], stack: Stack, a: argparse.Namespace, out: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        stack.notes.append("plots skipped: matplotlib is not installed (pip install matplotlib)")
        return []
    g = group(records)
    names = list(dict.fromkeys(r.variant for r in records))
    files = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for n in names:
        pts = sorted((c, [r.pairs_per_s for r in rs]) for (v, d, c), rs in g.items() if v == n and d == a.sweep_docs)
        if len(pts) < 1:
            continue
        xs = [p[0] for p in pts]
        ys = [med(p[1]) for p in pts]
        lo = [y - min(p[1]) for y, p in zip(ys, pts, strict=True)]
        hi = [max(p[1]) - y for y, p in zip(ys, pts, strict=True)]
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=n)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrency (closed loop)")
    ax.set_ylabel("pairs/s (median, min–max bars)")
    ax.set_title(f"Throughput vs concurrency, {a.sweep_docs} docs/request, {a.engine} engine")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    f1 = out / "throughput_vs_concurrency.png"
    fig.savefig(f1, dpi=110)
    plt.close(fig)
    files.append(f1)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for n in names:
        pts = sorted((d, rs) for (v, d, c), rs in g.items() if v == n and c == 1)
        if not pts:
            continue
        xs = [p[0] for p in pts]
        line = ax.plot(xs, [med([r.p50_ms for r in p[1]]) for p in pts], marker="o", label=f"{n} p50")[0]
        ax.plot(
            xs,
            [med([r.p99_ms for r in p[1]]) for p in pts],
            marker="x",
            linestyle="--",
            color=line.get_color(),
            label=f"{n} p99",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("documents per request")
    ax.set_ylabel("latency ms (median over repetitions)")
    ax.set_title(f"Latency vs documents per request, concurrency 1, {a.engine} engine")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    f2 = out / "latency_vs_docs.png"
    fig.savefig(f2, dpi=110)
    plt.close(fig)
    files.append(f2)
    return files


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {psutil.virtual_memory().total / 2**30:.0f} GiB RAM, "
        f"Python {platform.python_version()}"
    )


# --------------------------------------------------------------------------- main
def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", choices=("real", "stub"), default="real")
    p.add_argument("--url", help="attach to a running service (real engine) instead of starting one")
    p.add_argument(
        "--variants",
        default="direct,gateway,litellm,direct-rerank",
        help="comma list of: direct, direct-rerank, gateway, litellm (gateway-wN and gateway-cache "
        "are added by --workers / --cache-size)",
    )
    p.add_argument("--workers", type=ints, default=[1], help="gateway worker counts, e.g. 1,2 (one gateway each)")
    p.add_argument(
        "--docs", type=ints, default=[1, 10, 100], help="documents per request, latency sweep at concurrency 1"
    )
    p.add_argument("--concurrency", type=ints, default=[1, 4, 16], help="concurrencies of the throughput sweep")
    p.add_argument("--sweep-docs", type=int, default=100, help="documents per request of the throughput sweep")
    p.add_argument("--reps", type=int, default=3, help="repetitions (each runs every variant, interleaved)")
    p.add_argument("--duration", type=float, default=5.0, help="seconds measured per variant and cell")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before each measurement window")
    p.add_argument("--doc-words", type=int, default=12, help="words per synthetic document")
    p.add_argument(
        "--workload",
        choices=("unique", "repeat"),
        default="unique",
        help="unique: no (query, document) pair repeats; repeat: the same request over and over",
    )
    p.add_argument(
        "--gateway-path", default="/v2/rerank", help="gateway route to hit (Cohere v2; /v1/rerank works too)"
    )
    p.add_argument("--cache-size", type=int, default=0, help="also run a gateway with --score-cache-size N")
    p.add_argument(
        "--service-arg",
        action="append",
        default=[],
        help="extra start_service.py flag for every gateway (repeatable; use --service-arg=--flag=value)",
    )
    p.add_argument("--stub-procs", type=int, default=1, help="stub engine processes")
    p.add_argument(
        "--stub-hop",
        choices=("tcp", "uds"),
        default="tcp",
        help="how the gateway reaches the stub: loopback TCP (as an --engine-url), or a Unix socket (as the "
        "service's own engines, its default); `direct` always uses TCP",
    )
    p.add_argument("--litellm-bin", help="litellm executable (default: .venv-litellm/bin/litellm, venv, PATH)")
    p.add_argument("--litellm-timeout", type=float, default=180.0)
    p.add_argument("--ready-timeout", type=float, default=600.0)
    p.add_argument("--request-timeout", type=float, default=300.0)
    p.add_argument("--out", type=Path, help="output folder (default bench/results/<stamp>-<engine>)")
    p.add_argument("--no-plots", action="store_true")
    a = p.parse_args(argv)
    a.variants = [v.strip() for v in a.variants.split(",") if v.strip()]
    if a.url and a.engine == "stub":
        p.error("--url attaches to a real service; drop --engine stub")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = (a.out or HERE / "results" / f"{stamp}-{a.engine}").resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    for k, v in NO_PROXY_ENV.items():
        os.environ[k] = v
    try:
        import uvloop  # type: ignore[import-not-found]

        uvloop.install()
    except ImportError:
        pass

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    stack = Stack(a, out)
    load_before = loadavg()
    t_start = time.time()
    records: list[Record] = []
    try:
        stack.start_engine()
        if "litellm" in a.variants:
            stack.start_litellm()
        missing = [n for n in a.variants if n not in stack.variants]
        if missing:
            print(f"variants not available: {', '.join(missing)}", flush=True)
        for n in stack.notes:
            print(f"note: {n}", flush=True)
        print(f"engine {stack.engine_url} model={stack.engine_model}; load average before: {load_before}", flush=True)
        records = asyncio.run(run_all(stack, a))
    except KeyboardInterrupt:
        print("interrupted: reporting what was measured", file=sys.stderr)
    finally:
        stack.stop()
    load_after = loadavg()
    if not records:
        print("no measurements", file=sys.stderr)
        return 1
    tbl = table(records, stack, a)
    tgt = targets(records, stack, a)
    files = [] if a.no_plots else plots(records, stack, a, out)
    cmd = " ".join(
        shlex.quote(x) for x in [".venv/bin/python", "bench/bench.py", *(sys.argv[1:] if argv is None else argv)]
    )
    md = [
        f"# vllm-rerank benchmark, {a.engine} engine ({dt.datetime.now().isoformat(timespec='seconds')})",
        "",
        f"- command: `{cmd}`",
        f"- machine: {machine()}",
        (
            f"- load average (1, 5, 15 min): before {load_before}, after {load_after}; "
            f"wall time {time.time() - t_start:.0f} s"
        ),
        (
            f"- engine: {stack.engine_url} (model {stack.engine_model}); workload {a.workload}; "
            f"{a.doc_words} words/document; {a.reps} repetitions × {a.duration:g} s (+{a.warmup:g} s warm-up), "
            "variants interleaved"
        ),
        *[f"- {n}" for n in stack.notes],
        "",
        (
            "Values: median over repetitions [min–max]. Throughput is closed-loop Little's law "
            "(concurrency / mean latency; counted completions per window are in results.json). "
            "Added latency: per-repetition difference to the baseline "
            "(gateway → direct /score; litellm → direct-rerank if measured), then median."
        ),
        "",
        tbl,
        "",
        "## Targets (issue 6)",
        "",
        *[f"- {t}" for t in tgt],
        "",
        *[f"![{f.stem}]({f.name})" for f in files],
    ]
    (out / "results.md").write_text("\n".join(md) + "\n")
    (out / "results.json").write_text(
        json.dumps(
            {
                "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
                "engine_url": stack.engine_url,
                "engine_model": stack.engine_model,
                "load_before": load_before,
                "load_after": load_after,
                "notes": stack.notes,
                "started_pids": stack.started_pids,
                "records": [asdict(r) for r in records],
            },
            indent=1,
        )
    )
    print()
    print(tbl)
    print()
    for t in tgt:
        print(f"target: {t}")
    print(f"\nload average before {load_before}, after {load_after}")
    print(f"results: {out / 'results.md'}" + "".join(f"\nplot: {f}" for f in files), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
