#!/usr/bin/env python3
"""Profile one gateway worker on the stub engine with py-spy: where does a request's CPU go?

Starts bench/stub_engine.py and a 1-worker gateway in front of it, drives it with the lean
load generator (closed loop) while `py-spy record` samples the gateway process, then prints
the CPU per request (psutil) and the top functions by self and by inclusive time, as a share
of samples and as microseconds per request. Files: bench/results/profile-<stamp>/ (raw
collapsed stacks, speedscope JSON for https://www.speedscope.app).

    .venv/bin/python bench/profile_gateway.py --docs 1000 --concurrency 4 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from loadgen import Target, run_closed_loop  # noqa: E402

import bench  # noqa: E402

_IDLE = (
    "Condition.wait (threading.py",
    "Event.wait (threading.py",
    "Queue.get (queue.py",
    "select (selectors.py",
    "_wait_for_tstate_lock",
    "Thread.join (threading.py",
)


def summarise(raw: Path, requests: int, cpu_s: float, top: int) -> str:
    self_t: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        count = int(n)
        frames = stack.split(";")
        # drop idle samples: threads parked in a lock, queue or selector wait
        leaf = frames[-1]
        if any(w in leaf for w in _IDLE):
            continue
        total += count
        self_t[_short(frames[-1])] += count
        for f in {_short(f) for f in frames}:
            incl[f] += count
    if not total:
        return "no samples"
    us_per_sample = cpu_s / total * 1e6 if total else 0.0
    lines = [
        (
            f"{total} busy samples; gateway CPU {cpu_s:.2f} s over {requests} requests = "
            f"{cpu_s / max(1, requests) * 1e3:.3f} ms/request"
        ),
        "",
        "### self time (where the CPU actually is)",
        "",
        "| share | µs/request | function |",
        "|---:|---:|---|",
    ]
    for f, c in self_t.most_common(top):
        lines.append(f"| {c / total * 100:.1f}% | {c * us_per_sample / max(1, requests):.1f} | `{f}` |")
    lines += [
        "",
        "### inclusive time (a function and everything it calls)",
        "",
        "| share | µs/request | function |",
        "|---:|---:|---|",
    ]
    for f, c in incl.most_common(top * 2):
        lines.append(f"| {c / total * 100:.1f}% | {c * us_per_sample / max(1, requests):.1f} | `{f}` |")
    return "\n".join(lines)


def _short(frame: str) -> str:
    # py-spy raw frame: "function (path/to/file.py:123)"
    name, _, loc = frame.partition(" (")
    loc = loc.rstrip(")")
    path, _, _ = loc.rpartition(":")
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


async def drive(url: str, docs: list[str], conc: int, duration: float, procs: list) -> tuple[int, float]:
    v = bench.Variant("gateway", url, "rerank", "bench")
    target = Target(url=url, make_body=v.body_maker(docs, "unique", "p"), docs_per_request=len(docs))
    cpu: dict[str, float] = {}
    res = await run_closed_loop(
        target,
        concurrency=conc,
        duration_s=duration,
        warmup_s=0.5,
        on_window=lambda e: cpu.__setitem__(e, bench.cpu_seconds(procs)),
    )
    if res.errors:
        print(f"{res.errors} errors, first: {res.first_error}", file=sys.stderr)
    print(
        f"{res.requests} requests in {res.window_s:.1f} s: {res.rps:.1f} req/s, {res.pairs_per_s:,.0f} docs/s, "
        f"p50 {res.pct(0.5) * 1000:.2f} ms",
        flush=True,
    )
    return res.requests, cpu.get("end", 0.0) - cpu.get("start", 0.0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--service-arg", action="append", default=[])
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("py-spy not found: .venv/bin/pip install py-spy", file=sys.stderr)
        return 1
    out = (a.out or HERE / "results" / f"profile-{dt.datetime.now():%Y%m%d-%H%M%S}-{a.docs}docs").resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    ns = bench.parse_args(
        ["--engine", "stub", "--variants", "gateway", "--workers", "1", *[f"--service-arg={x}" for x in a.service_arg]]
    )
    stack = bench.Stack(ns, out)
    try:
        import uvloop  # type: ignore[import-not-found]

        uvloop.install()
    except ImportError:
        pass
    try:
        stack.start_engine()  # starts the stub and the gateway, then warms the gateway up
        v = stack.variants["gateway"]
        procs = v.cpu_pids() if v.cpu_pids else []
        # the uvicorn worker that serves requests: with 1 worker it is the launched process itself
        pid = max(procs, key=lambda q: q.memory_info().rss).pid
        raw = out / "profile.txt"
        spy_proc = subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(a.rate),
                "--format",
                "raw",
                "--output",
                str(raw),
                "--duration",
                str(int(a.duration + 1)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(0.5)
        docs = bench.make_docs(a.docs, 12, seed=1000 + a.docs)
        n, cpu_s = asyncio.run(drive(v.url, docs, a.concurrency, a.duration, procs))
        spy_proc.wait(60)
        if spy_proc.returncode != 0 or not raw.exists():
            print(f"py-spy failed: {spy_proc.stderr.read().decode() if spy_proc.stderr else ''}", file=sys.stderr)
            return 1
    finally:
        stack.stop()
    report = (
        f"# Gateway profile on the stub engine: {a.docs} docs/request, concurrency {a.concurrency}, "
        f"{a.duration:g} s\n\nload average {bench.loadavg()}\n\n" + summarise(raw, n, cpu_s, a.top)
    )
    (out / "profile.md").write_text(report + "\n")
    print(report)
    print(f"\nraw stacks: {raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
