#!/usr/bin/env python3
"""Closed-loop, interleaved A/B load generator for rerank endpoints (vLLM direct vs the service).

Each variant is NAME=KIND@URL, KIND one of
  rerank  POST {model, query, documents} -> {"results": [...]}      (vLLM /rerank, our /v1/rerank)
  score   POST {model, text_1, text_2}   -> {"data": [...]}         (vLLM /score)
  ids     POST {model, input: [[token ids] per document]} -> {"data": [...]}   (vLLM /classify)
          the pre-tokenised-input lever: the client (untimed: bodies are built before a round)
          tokenises every (query, document) prompt with --tokenizer, rendered as --ids-prompt
          "pair" (cross-encoder [CLS] q [SEP] d [SEP]; token type ids cannot be sent, so for BERT
          this measures cost only) or "qwen3" (engine/templates/qwen3_reranker.jinja: the same
          prompt the engine renders for /score, so scores must match; checked before the run)
e.g.  direct=rerank@http://127.0.0.1:41234/rerank  service=rerank@http://127.0.0.1:8000/v1/rerank

For every (documents per request N, words per document L, concurrency C) config, every variant
runs `--rounds` times, interleaved (A B C, then C B A, ...), each round sending R requests
(R = max(C, ceil(pairs_per_round / N))) from C closed-loop workers, or for `--duration-s`
seconds when given. A variant's numbers pool its rounds: pairs/s = pairs / wall, p50/p99 over
all its latencies. With --proc-cpu it also reads /proc before and after every round and
reports CPU milliseconds per 1000 pairs per process group (gateway, engine API server, engine
core, client), which is where the per-pair CPU goes.

Every request has a fresh random query (8-12 words) and N random documents of L words (±10%)
from the model's vocabulary (words.txt): no two requests share a (query, document) prefix, so
prefix caching only sees the within-request shared prefix, as in production.

Prints a markdown table and writes JSON (--json). Exit code 0 even when some requests failed:
the table's error column says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass, field

import aiohttp


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


class Corpus:
    def __init__(self, words: list[str], seed: int = 0) -> None:
        self.words = words
        self.rng = random.Random(seed)
        self.pools: dict[int, list[str]] = {}

    def docs(self, length: int, n: int) -> list[str]:
        pool = self.pools.get(length)
        if pool is None:
            pool = [
                " ".join(self.rng.choices(self.words, k=max(1, int(length * self.rng.uniform(0.9, 1.1)))))
                for _ in range(4000)
            ]
            self.pools[length] = pool
        return self.rng.sample(pool, n) if n <= len(pool) else self.rng.choices(pool, k=n)

    def query(self) -> str:
        return " ".join(self.rng.choices(self.words, k=self.rng.randint(8, 12)))


@dataclass
class Variant:
    name: str
    kind: str
    url: str
    ids: Pretok | None = None

    def body(self, model: str | None, query: str, docs: list[str]) -> bytes:
        if self.kind == "ids":
            assert self.ids is not None
            b: dict = {"input": self.ids.encode(query, docs)}
        elif self.kind == "score":
            b = {"text_1": query, "text_2": docs}
        else:
            b = {"query": query, "documents": docs}
        if model:
            b["model"] = model
        return json.dumps(b).encode()

    def count(self, out: dict) -> int:
        return len(out.get("results" if self.kind == "rerank" else "data", []) or [])

    @staticmethod
    def tokens(out: dict) -> int | None:
        usage = out.get("usage") or {}
        v = usage.get("prompt_tokens") or usage.get("total_tokens")
        if v is None:
            v = ((out.get("meta") or {}).get("tokens") or {}).get("input_tokens")
        return v


class Pretok:
    """Client-side prompt tokenisation for the `ids` variant kind (see the module docstring)."""

    def __init__(self, tokenizer_dir: str, prompt: str, max_len: int) -> None:
        from transformers import AutoTokenizer  # only this variant needs it

        self.tok = AutoTokenizer.from_pretrained(tokenizer_dir)
        self.prompt, self.max_len = prompt, max_len
        if prompt == "qwen3":
            import jinja2

            path = os.path.join(os.path.dirname(__file__), "..", "..", "engine", "templates", "qwen3_reranker.jinja")
            env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
            with open(path) as f:
                self.template = env.from_string(f.read())

    def encode(self, query: str, docs: list[str]) -> list[list[int]]:
        if self.prompt == "pair":
            enc = self.tok([query] * len(docs), docs, truncation="only_second", max_length=self.max_len)
            return enc["input_ids"]
        texts = [
            self.template.render(messages=[{"role": "query", "content": query}, {"role": "document", "content": d}])
            for d in docs
        ]
        return self.tok(texts, add_special_tokens=False)["input_ids"]


async def check_ids(session: aiohttp.ClientSession, v: Variant, model: str | None, corpus: Corpus) -> None:
    """The same 4 pairs through /score (text) and through the `ids` variant: print the largest difference."""
    q, docs = corpus.query(), corpus.docs(100, 4)
    score_url = v.url.rsplit("/", 1)[0] + "/score"
    body = {"text_1": q, "text_2": docs, **({"model": model} if model else {})}
    async with session.post(score_url, json=body) as r:
        ref = [d["score"] for d in sorted((await r.json())["data"], key=lambda d: d["index"])]
    async with session.post(v.url, data=v.body(model, q, docs), headers={"content-type": "application/json"}) as r:
        out = await r.json()
    got = [d["probs"][-1] if len(d["probs"]) == 1 else d["probs"] for d in out["data"]]
    diff = max(abs(a - b) for a, b in zip(ref, got, strict=False)) if all(isinstance(g, float) for g in got) else None
    print(
        f"ids check {v.name}: /score {[round(x, 5) for x in ref]} vs /classify(ids) {got}: max |diff| {diff}",
        flush=True,
    )


@dataclass
class Acc:
    lat: list[float] = field(default_factory=list)
    wall: float = 0.0
    pairs: int = 0
    tokens: int = 0
    tok_reqs: int = 0
    requests: int = 0
    errors: int = 0
    first_error: str | None = None
    cpu_ms: dict[str, float] = field(default_factory=dict)


# ----------------------------------------------------------------------------- /proc CPU accounting
CLK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _classify(pid: int, comm: str, cmd: str) -> str:
    if pid == os.getpid():
        return "client"
    if "EngineCore" in comm or "EngineCore" in cmd:
        return "engine_core"
    if "APIServer" in comm or "APIServer" in cmd or "vllm.entrypoints" in cmd or "vllm serve" in cmd:
        return "engine_api"
    if "start_service" in cmd:
        return "gateway_main"
    if "resource_tracker" in cmd:
        return "other"
    if "multiprocessing" in cmd or "spawn_main" in cmd:
        return "gateway_worker"  # uvicorn --workers children (spawned), or vllm helpers
    if "VLLM" in comm or "VLLM::" in cmd:
        return "engine_other:" + comm
    if comm.startswith(("python", "pt_")):
        return "other_python:" + comm
    return "other"


def proc_cpu() -> dict[int, tuple[str, float]]:
    out: dict[int, tuple[str, float]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        r = st.rfind(")")
        comm = st[st.find("(") + 1 : r]
        fields = st[r + 2 :].split()
        ticks = int(fields[11]) + int(fields[12])  # utime + stime
        out[int(d)] = (_classify(int(d), comm, cmd), ticks / CLK)
    return out


def cpu_delta(a: dict[int, tuple[str, float]], b: dict[int, tuple[str, float]]) -> dict[str, float]:
    res: dict[str, float] = {}
    for pid, (grp, t) in b.items():
        d = t - (a[pid][1] if pid in a else 0.0)
        if d > 0.001:
            res[grp] = res.get(grp, 0.0) + d
    return res


# ----------------------------------------------------------------------------- load
async def run_round(
    session: aiohttp.ClientSession,
    v: Variant,
    a: argparse.Namespace,
    corpus: Corpus,
    n_docs: int,
    words: int,
    conc: int,
    n_req: int | None,
    acc: Acc,
) -> None:
    duration = a.duration_s
    pre: list[bytes] = []
    if n_req is not None:
        pre = [v.body(a.model, corpus.query(), corpus.docs(words, n_docs)) for _ in range(n_req)]
    next_i = 0
    stop_at = None

    async def worker() -> None:
        nonlocal next_i
        while True:
            if n_req is not None:
                i = next_i
                if i >= n_req:
                    return
                next_i += 1
                data = pre[i]
            else:
                if time.perf_counter() >= stop_at:
                    return
                data = v.body(a.model, corpus.query(), corpus.docs(words, n_docs))
            acc.requests += 1
            t0 = time.perf_counter()
            try:
                async with session.post(
                    v.url,
                    data=data,
                    headers={"content-type": "application/json"},
                    timeout=aiohttp.ClientTimeout(total=a.timeout_s),
                ) as r:
                    payload = await r.read()
                    if r.status != 200:
                        acc.errors += 1
                        acc.first_error = acc.first_error or f"{r.status}: {payload[:200]!r}"
                        continue
                    out = json.loads(payload)
            except Exception as e:
                acc.errors += 1
                acc.first_error = acc.first_error or f"{type(e).__name__}: {e}"[:200]
                continue
            acc.lat.append(time.perf_counter() - t0)
            got = v.count(out)
            if got != n_docs:
                acc.errors += 1
                acc.first_error = acc.first_error or f"got {got} results for {n_docs} docs"
                continue
            acc.pairs += n_docs
            tok = v.tokens(out)
            if tok:
                acc.tokens += int(tok)
                acc.tok_reqs += 1

    c0 = proc_cpu() if a.proc_cpu else None
    t0 = time.perf_counter()
    if n_req is None:
        stop_at = t0 + duration
    await asyncio.gather(*(worker() for _ in range(conc)))
    acc.wall += time.perf_counter() - t0
    if c0 is not None:
        for g, s in cpu_delta(c0, proc_cpu()).items():
            acc.cpu_ms[g] = acc.cpu_ms.get(g, 0.0) + s * 1000


def summarize(v: Variant, cfg: dict, acc: Acc) -> dict:
    ok = len(acc.lat)
    r = {
        **cfg,
        "variant": v.name,
        "url": v.url,
        "requests": acc.requests,
        "ok": ok,
        "errors": acc.errors,
        "first_error": acc.first_error,
        "wall_s": round(acc.wall, 3),
        "pairs_per_s": round(acc.pairs / acc.wall, 1) if acc.wall else None,
        "req_per_s": round(ok / acc.wall, 2) if acc.wall else None,
        "p50_ms": round(pct(acc.lat, 0.5) * 1000, 1),
        "p99_ms": round(pct(acc.lat, 0.99) * 1000, 1),
        "mean_ms": round(statistics.mean(acc.lat) * 1000, 1) if acc.lat else None,
        "tokens_per_pair": round(acc.tokens / (acc.tok_reqs * cfg["N"]), 1) if acc.tok_reqs else None,
        "tokens_per_s": round(acc.tokens / acc.wall) if acc.tokens and acc.wall else None,
    }
    if acc.cpu_ms and acc.pairs:
        r["cpu_ms_per_1k_pairs"] = {g: round(ms * 1000 / acc.pairs, 1) for g, ms in sorted(acc.cpu_ms.items())}
        r["cpu_cores_busy"] = {g: round(ms / 1000 / acc.wall, 2) for g, ms in sorted(acc.cpu_ms.items())}
    return r


async def main_async(a: argparse.Namespace) -> list[dict]:
    with open(a.words) as f:  # noqa: ASYNC230 - one read of the word list at start-up, before any request
        words = [w.strip() for w in f if w.strip()]
    corpus = Corpus(words, seed=a.seed)
    variants = []
    for spec in a.variant:
        name, rest = spec.split("=", 1)
        kind, url = rest.split("@", 1)
        assert kind in ("rerank", "score", "ids"), spec
        pre = Pretok(a.tokenizer, a.ids_prompt, a.ids_max_len) if kind == "ids" else None
        variants.append(Variant(name, kind, url, pre))
    configs = [(n, L, c) for n in a.sizes for L in a.doc_words for c in a.conc]
    if a.order == "priority":  # the configs that matter most first, so a time budget cuts the least useful
        rank = {100: 0, 16: 1, 1000: 2}
        configs.sort(key=lambda x: (rank.get(x[0], 3), {8: 0, 32: 1, 1: 2}.get(x[2], 3)))
    results: list[dict] = []
    t_start = time.perf_counter()
    conn = aiohttp.TCPConnector(limit=0, force_close=False, keepalive_timeout=3.0)
    async with aiohttp.ClientSession(connector=conn) as s:
        for v in variants:
            if v.kind == "ids":
                await check_ids(s, v, a.model, corpus)
        for v in variants:  # warm-up: every variant, every N
            for n in sorted(set(a.sizes)):
                acc = Acc()
                await run_round(s, v, a, corpus, n, a.doc_words[0], 1, 2, acc)
                print(
                    f"warmup {v.name} N={n}: p50 {pct(acc.lat, 0.5) * 1000:.0f} ms, errors={acc.errors} "
                    f"{acc.first_error or ''}",
                    flush=True,
                )
        for n, L, c in configs:
            cfg = {"N": n, "doc_words": L, "conc": c}
            if c * n > a.max_pairs_in_flight:
                results.append({**cfg, "skipped": f"conc*N > {a.max_pairs_in_flight}"})
                continue
            n_req = None if a.duration_s else max(c, math.ceil(a.pairs_per_round / n))
            rounds = a.rounds if c * n * 4 <= a.big_round_pairs else 1  # huge configs: one round each
            # expected seconds of this config at the pairs/s seen so far (or the duration), so it ends in budget
            done_pairs = sum(r.get("pairs_per_s", 0) * r.get("wall_s", 0) for r in results if "wall_s" in r)
            done_wall = sum(r.get("wall_s", 0) for r in results if "wall_s" in r)
            rate = done_pairs / done_wall if done_wall else None
            expect = (
                a.duration_s * rounds * len(variants)
                if a.duration_s
                else (n_req * n * rounds * len(variants) / rate if rate else 0)
            )
            if time.perf_counter() - t_start + expect > a.budget_s:
                results.append({**cfg, "skipped": "time budget"})
                print(f"skip {cfg}: time budget", flush=True)
                continue
            accs = {v.name: Acc() for v in variants}
            for rd in range(rounds):
                order = variants if rd % 2 == 0 else variants[::-1]
                for v in order:
                    await run_round(s, v, a, corpus, n, L, c, n_req, accs[v.name])
            rows = [summarize(v, {**cfg, "rounds": rounds}, accs[v.name]) for v in variants]
            base = rows[0]
            for r in rows:
                if base["pairs_per_s"] and r["pairs_per_s"] is not None:
                    r["vs_first"] = round(r["pairs_per_s"] / base["pairs_per_s"], 3)
                    r["p50_delta_ms"] = round(r["p50_ms"] - base["p50_ms"], 1)
                print(json.dumps(r), flush=True)
            results.extend(rows)
    return results


def table(results: list[dict]) -> str:
    lines = [
        (
            "| N docs | words/doc | conc | variant | pairs/s | vs first | p50 ms | p99 ms | Δp50 ms | tok/pair | "
            "requests | errors |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(results, key=lambda r: (r["N"], r["doc_words"], r["conc"])):
        if "skipped" in r:
            lines.append(f"| {r['N']} | {r['doc_words']} | {r['conc']} | skipped ({r['skipped']}) | | | | | | | | |")
            continue
        lines.append(
            f"| {r['N']} | {r['doc_words']} | {r['conc']} | {r['variant']} | {r['pairs_per_s']} | "
            f"{r.get('vs_first', '')} | {r['p50_ms']} | {r['p99_ms']} | {r.get('p50_delta_ms', '')} | "
            f"{r['tokens_per_pair']} | {r['requests']} | {r['errors']} |"
        )
    cpu_rows = [r for r in results if r.get("cpu_ms_per_1k_pairs")]
    if cpu_rows:
        groups = sorted({g for r in cpu_rows for g in r["cpu_ms_per_1k_pairs"]})
        lines += [
            "",
            "CPU ms per 1000 pairs, by process group (/proc utime+stime; cores busy in brackets):",
            "",
            "| N | conc | variant | " + " | ".join(groups) + " |",
            "|---|---|---|" + "---|" * len(groups),
        ]
        for r in sorted(cpu_rows, key=lambda r: (r["N"], r["conc"])):
            cells = [f"{r['cpu_ms_per_1k_pairs'].get(g, 0)} ({r['cpu_cores_busy'].get(g, 0)})" for g in groups]
            lines.append(f"| {r['N']} | {r['conc']} | {r['variant']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", action="append", required=True, help="NAME=KIND@URL (first one is the baseline)")
    ap.add_argument("--model", default=None)
    ap.add_argument("--tokenizer", default=None, help="model dir whose tokenizer the `ids` kind uses")
    ap.add_argument("--ids-prompt", choices=("pair", "qwen3"), default="pair")
    ap.add_argument("--ids-max-len", type=int, default=512, help="`ids` kind, pair prompt: truncation length")
    ap.add_argument("--words", required=True, help="words.txt of the model (build_models.py writes it)")
    ap.add_argument("--sizes", default="16,100,1000")
    ap.add_argument("--doc-words", default="100")
    ap.add_argument("--conc", default="1,8,32")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds per variant and config")
    ap.add_argument("--pairs-per-round", type=int, default=2000)
    ap.add_argument(
        "--big-round-pairs", type=int, default=40000, help="configs with conc*N*4 above this run one round per variant"
    )
    ap.add_argument("--duration-s", type=float, default=None, help="time-based rounds instead of R requests")
    ap.add_argument("--max-pairs-in-flight", type=int, default=32000)
    ap.add_argument("--budget-s", type=float, default=300)
    ap.add_argument("--order", choices=("priority", "grid"), default="priority")
    ap.add_argument("--timeout-s", type=float, default=300)
    ap.add_argument("--proc-cpu", action="store_true", help="CPU per process group per round, from /proc")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--label", default="")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    a.sizes = [int(x) for x in a.sizes.split(",")]
    a.doc_words = [int(x) for x in a.doc_words.split(",")]
    a.conc = [int(x) for x in a.conc.split(",")]
    results = asyncio.run(main_async(a))
    for r in results:
        r["label"] = a.label
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    print(f"\n### {a.label}\n")
    print(table(results))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
