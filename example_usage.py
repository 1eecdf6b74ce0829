#!/usr/bin/env python3
"""Batch test of a running vllm-rerank service: a concurrency sweep with a throughput summary.

For each concurrency level, that many clients send rerank requests (Cohere v2, POST /v2/rerank)
back to back for --duration seconds; each request has --docs synthetic documents and a query
never sent before. Prints requests/s, (query, document) pairs/s and p50/p95/p99 latency per
level, then the best level. Works with any served model.

    python example_usage.py [--url http://localhost:8000] [--concurrency 1,2,4,8] [--docs 20] [--duration 10]

For side-by-side numbers against vLLM and LiteLLM, use bench/bench.py. Needs only the standard
library and httpx.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time

import httpx

WORDS = [
    "rerank",
    "query",
    "document",
    "search",
    "engine",
    "model",
    "vector",
    "score",
    "gravity",
    "capital",
    "city",
    "river",
    "mountain",
    "planet",
    "energy",
    "market",
    "price",
    "music",
    "history",
    "science",
    "language",
    "library",
    "teacher",
    "student",
    "network",
    "server",
    "data",
]


def make_docs(n: int, rng: random.Random) -> list[str]:
    return [" ".join(rng.choice(WORDS) for _ in range(12)) + f" #{i}" for i in range(n)]


async def level(
    client: httpx.AsyncClient, model: str, conc: int, docs: int, duration: float, seed: int
) -> dict[str, float]:
    rng = random.Random(seed)
    documents = make_docs(docs, rng)
    latencies: list[float] = []
    errors = 0
    first_error = ""
    end = time.perf_counter() + duration
    counter = 0

    async def worker() -> None:
        nonlocal errors, first_error, counter
        while time.perf_counter() < end:
            counter += 1
            body = {
                "model": model,
                "query": f"which document mentions {rng.choice(WORDS)}? ({seed}-{counter})",
                "documents": documents,
                "top_n": 5,
            }
            t = time.perf_counter()
            try:
                r = await client.post("/v2/rerank", json=body)
                ok = r.status_code == 200
                if not ok and not first_error:
                    first_error = f"HTTP {r.status_code}: {r.text[:200]}"
            except httpx.HTTPError as exc:
                ok = False
                if not first_error:
                    first_error = repr(exc)
            if ok:
                latencies.append(time.perf_counter() - t)
            else:
                errors += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conc)))
    wall = time.perf_counter() - start
    lat = sorted(latencies)

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * (len(lat) - 1) + 0.5))] * 1000 if lat else float("nan")

    if first_error:
        print(f"  first error at concurrency {conc}: {first_error}", file=sys.stderr)
    return {
        "concurrency": conc,
        "requests": len(lat),
        "errors": errors,
        "rps": len(lat) / wall,
        "pairs_s": len(lat) * docs / wall,
        "p50": pct(0.5),
        "p95": pct(0.95),
        "p99": pct(0.99),
        "mean": statistics.fmean(lat) * 1000 if lat else float("nan"),
    }


async def run(a: argparse.Namespace) -> int:
    base = a.url.rstrip("/")
    limits = httpx.Limits(max_connections=max(a.concurrency) + 4, max_keepalive_connections=max(a.concurrency) + 4)
    async with httpx.AsyncClient(base_url=base, timeout=a.timeout, limits=limits) as client:
        try:
            health = await client.get("/health")
        except httpx.HTTPError as exc:
            print(f"error: cannot reach {base}/health: {exc!r}. Is the service running?", file=sys.stderr)
            return 1
        if health.status_code != 200:
            print(f"error: {base}/health answered {health.status_code}; wait for the engine", file=sys.stderr)
            return 1
        info = health.json()
        model = a.model or info.get("model") or "default"
        print(f"service {base}: model {model}, gateway workers {info.get('workers')}, device {info.get('device')}")
        print(f"{a.docs} documents/request, {a.duration:g} s per level\n")
        await level(client, model, 1, a.docs, min(2.0, a.duration), seed=0)  # warm-up, not reported
        head = (
            f"{'conc':>5} {'requests':>9} {'errors':>6} {'req/s':>9} {'pairs/s':>10} "
            f"{'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9}"
        )
        print(head)
        print("-" * len(head))
        rows = []
        for i, c in enumerate(a.concurrency):
            r = await level(client, model, c, a.docs, a.duration, seed=i + 1)
            rows.append(r)
            print(
                f"{c:>5} {r['requests']:>9} {r['errors']:>6} {r['rps']:>9.2f} {r['pairs_s']:>10.1f} "
                f"{r['p50']:>9.1f} {r['p95']:>9.1f} {r['p99']:>9.1f}",
                flush=True,
            )
    best = max(rows, key=lambda r: r["pairs_s"])
    base_rps = rows[0]["pairs_s"] or float("nan")
    print(
        f"\nsummary: best throughput {best['pairs_s']:.1f} pairs/s ({best['rps']:.2f} req/s) at concurrency "
        f"{best['concurrency']}, {best['pairs_s'] / base_rps:.2f}× concurrency {rows[0]['concurrency']}; "
        f"p50 there {best['p50']:.1f} ms; errors {sum(r['errors'] for r in rows)}"
    )
    return 0 if all(r["requests"] for r in rows) else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://localhost:8000")
    p.add_argument("--model", default=None, help="model name to send (default: the one /health reports)")
    p.add_argument("--concurrency", default="1,2,4,8", help="comma list of concurrency levels")
    p.add_argument("--docs", type=int, default=20, help="documents per request")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per concurrency level")
    p.add_argument("--timeout", type=float, default=300.0)
    a = p.parse_args(argv)
    a.concurrency = [int(x) for x in a.concurrency.split(",") if x.strip()]
    return asyncio.run(run(a))


if __name__ == "__main__":
    sys.exit(main())
