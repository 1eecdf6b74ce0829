#!/usr/bin/env python3
"""Helpers for run_gpu.sh: wait for the service (printing its start progress), smoke-test the
dialects, list engine URLs/pids, summarise py-spy raw profiles and the Qwen3 MFU.

  svc.py wait --pid PID [--url U] [--timeout S] [--out engines.json]
  svc.py smoke [--url U] [--model NAME]
  svc.py window --engine E --words W [--model NAME]   (cross-encoder: window truncation == vLLM's own cut)
  svc.py first --words W [--model NAME] [--n 100]   (first request after ready vs median of next ten)
  svc.py pyspy FILE [--top 25]
  svc.py mfu --config MODEL/config.json --tokens-per-s X [--peak 800e12]
  svc.py smi FILE            (mean/max GPU utilisation of an nvidia-smi -l csv log)
  svc.py tokens --health H.json --out SNAP.json   (every engine's prompt-token and prefix-cache-hit counters)
  svc.py computed --before A.json --after B.json --config MODEL/config.json [--peak 989e12]
                             (tokens actually computed = prompt tokens - prefix-cache hits, per s, and the MFU)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request


def get(url: str, timeout: float = 3.0) -> tuple[int, dict | None]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read())
        except Exception:
            return e.code, None
    except Exception:
        return 0, None


_SPLIT = ("x-tokenization-time", "x-queue-time", "x-inference-time", "x-total-time")
LAST_SPLIT: list[str] = []  # the last answer's timing headers (_SPLIT order; "-" where absent)


def post(url: str, body: dict, timeout: float = 60.0) -> tuple[int, str]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            LAST_SPLIT[:] = [r.headers.get(h) or "-" for h in _SPLIT]
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except Exception as e:
        return 0, repr(e)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def cmd_wait(a: argparse.Namespace) -> int:
    t0 = time.time()
    last = None
    while time.time() - t0 < a.timeout:
        if a.pid and not alive(a.pid):
            print(f"[{time.time() - t0:6.1f}s] service process {a.pid} exited", flush=True)
            return 1
        code, body = get(a.url + "/health")
        if body is not None:
            engines = body.get("engines") or []
            view = (body.get("status"), tuple((e.get("name"), e.get("state"), e.get("restarts")) for e in engines))
            if view != last:
                last = view
                print(
                    f"[{time.time() - t0:6.1f}s] /health {code} status={body.get('status')} "
                    + " ".join(f"{n}={s}" + (f"(restarts {r})" if r else "") for n, s, r in view[1]),
                    flush=True,
                )
            if code == 200 and (not a.all or all(e.get("state") == "ready" for e in engines)):
                print(f"READY after {time.time() - t0:.1f} s", flush=True)
                if a.out:
                    with open(a.out, "w") as f:
                        json.dump(body, f, indent=1)
                print(
                    json.dumps(
                        {
                            k: body.get(k)
                            for k in ("model", "family", "device", "max_num_seqs", "gpu_memory_utilization", "workers")
                        }
                    ),
                    flush=True,
                )
                for e in engines:
                    print(
                        f"  engine {e.get('name')} url={e.get('url')} pid={e.get('pid')} "
                        f"gpu_mem_util={e.get('gpu_memory_utilization')}",
                        flush=True,
                    )
                return 0
        time.sleep(1.0)
    print(f"TIMEOUT after {a.timeout} s", flush=True)
    return 2


def cmd_smoke(a: argparse.Namespace) -> int:
    docs = [
        "Carson City is the capital city of the American state of Nevada.",
        "Washington, D.C. is the capital of the United States.",
        "Capital punishment has existed in the United States since before it was a country.",
    ]
    q = "What is the capital of the United States?"
    bad = 0
    for path, body in [
        ("/v1/rerank", {"model": a.model, "query": q, "documents": docs, "top_n": 2, "return_documents": True}),
        ("/v2/rerank", {"model": a.model, "query": q, "documents": docs, "top_n": 3}),
        ("/v1/rerank", {"model": a.model, "query": q, "documents": [{"text": d} for d in docs]}),  # Jina objects
        ("/rerank", {"model": a.model, "query": q, "documents": docs}),
    ]:
        code, text = post(a.url + path, body)
        print(f"POST {path} -> {code}: {text[:400]}", flush=True)
        if path != "/rerank" and code != 200:
            bad += 1
    return 1 if bad else 0


def cmd_window(a: argparse.Namespace) -> int:
    """Cross-encoder documents over the window: the service (engine-side `truncate_prompt_tokens`)
    must score exactly what vLLM's own per-document cut (`max_tokens_per_doc`) scores on the same
    engine. Word-level tokenizer: one token per word, [CLS] q [SEP] d [SEP] = 3 specials."""
    import random

    with open(a.words) as f:
        words = [w.strip() for w in f if w.strip()]
    rng = random.Random(3)
    q = " ".join(rng.choices(words, k=40))
    docs = [" ".join(rng.choices(words, k=n)) for n in (20, 480, 600, 1300)]
    code, text = post(a.url + "/v1/rerank", {"model": a.model, "query": q, "documents": docs})
    if code != 200:
        print(f"window: service answered {code}: {text[:300]}")
        return 1
    got = {r["index"]: r["relevance_score"] for r in json.loads(text)["results"]}
    code, text = post(
        a.engine + "/score", {"model": a.model, "text_1": q, "text_2": docs, "max_tokens_per_doc": a.max_len - 3 - 40}
    )
    if code != 200:
        print(f"window: engine answered {code}: {text[:300]}")
        return 1
    want = {d["index"]: d["score"] for d in json.loads(text)["data"]}
    diff = max(abs(got[i] - want[i]) for i in range(len(docs)))
    print(
        f"window truncation, service vs vLLM max_tokens_per_doc: {[round(got[i], 6) for i in range(4)]} vs "
        f"{[round(want[i], 6) for i in range(4)]}: max |diff| {diff:.2e} -> {'OK' if diff < 1e-3 else 'DIFFERENT'}"
    )
    return 0 if diff < 1e-3 else 1


def cmd_first(a: argparse.Namespace) -> int:
    """The first request after ready vs the median of the next ten (N docs of W words, one at a time)."""
    import random
    import statistics

    with open(a.words) as f:
        words = [w.strip() for w in f if w.strip()]
    rng = random.Random(11)
    times, splits = [], []
    for i in range(11):
        q = " ".join(rng.choices(words, k=12))
        docs = [" ".join(rng.choices(words, k=a.doc_words)) for _ in range(a.n)]
        t = time.perf_counter()
        code, text = post(a.url + "/v1/rerank", {"model": a.model, "query": q, "documents": docs}, timeout=120)
        times.append(time.perf_counter() - t)
        splits.append("/".join(LAST_SPLIT))
        if code != 200:
            print(f"first: request {i} answered {code}: {text[:300]}")
            return 1
    # where each request's time went, as the gateway reports it (ms): tokenization/queue/inference/total
    print(
        "first: ms (client) [gateway tokenization/queue/inference/total ms]:",
        ", ".join(f"{t * 1000:.0f} [{sp}]" for t, sp in zip(times, splits, strict=True)),
    )
    med = statistics.median(times[1:])
    verdict = "OK (<= 2x)" if times[0] <= 2 * med else "SLOW (> 2x)"
    print(
        f"first request after ready ({a.model}, N={a.n}x{a.doc_words} words): {times[0] * 1000:.1f} ms; "
        f"median of next ten {med * 1000:.1f} ms; ratio {times[0] / med:.2f} -> {verdict}"
    )
    return 0


def cmd_pyspy(a: argparse.Namespace) -> int:
    self_t: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    with open(a.file) as fh:
        for raw in fh:
            line = raw.rstrip("\n")
            if not line or " " not in line:
                continue
            stack, n = line.rsplit(" ", 1)
            try:
                k = int(n)
            except ValueError:
                continue
            frames = [f for f in stack.split(";") if f]
            if frames and frames[0].startswith(("process ", "thread ")):
                frames = [f for f in frames if not f.startswith(("process ", "thread "))]
            if not frames:
                continue
            total += k
            leaf = frames[-1]
            self_t[leaf] = self_t.get(leaf, 0) + k
            for f in set(frames):
                incl[f] = incl.get(f, 0) + k
    print(f"{a.file}: {total} samples")
    if not total:
        return 0
    print("  top self (leaf) frames:")
    for f, k in sorted(self_t.items(), key=lambda x: -x[1])[: a.top]:
        print(f"    {100 * k / total:5.1f}%  {f[:160]}")
    print("  top inclusive frames:")
    for f, k in sorted(incl.items(), key=lambda x: -x[1])[: a.top]:
        print(f"    {100 * k / total:5.1f}%  {f[:160]}")
    return 0


def cmd_mfu(a: argparse.Namespace) -> int:
    with open(a.config) as f:
        c = json.load(f)
    h, n_layers, inter = c["hidden_size"], c["num_hidden_layers"], c["intermediate_size"]
    heads, kv = c["num_attention_heads"], c.get("num_key_value_heads", c["num_attention_heads"])
    hd = c.get("head_dim") or h // heads
    attn = h * heads * hd + 2 * h * kv * hd + heads * hd * h
    mlp = 3 * h * inter
    params = n_layers * (attn + mlp + 2 * h) + h + 2 * h  # + final norm + the yes/no score rows
    flops = 2 * params * a.tokens_per_s
    print(
        json.dumps(
            {
                "non_embedding_params": params,
                "tokens_per_s": a.tokens_per_s,
                "tflops": round(flops / 1e12, 1),
                "mfu": round(flops / a.peak, 4),
            }
        )
    )
    return 0


_COUNTERS = ("vllm:prompt_tokens_total", "vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total")


def cmd_tokens(a: argparse.Namespace) -> int:
    """Sum vLLM's token counters over every engine of the service (their /metrics)."""
    with open(a.health) as f:
        engines = [e["url"] for e in json.load(f).get("engines") or [] if e.get("url", "").startswith("http")]
    sums = dict.fromkeys(_COUNTERS, 0.0)
    for url in engines:
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
            for line in r.read().decode().splitlines():
                name = line.split("{", 1)[0].split(" ", 1)[0]
                if name in sums:
                    sums[name] += float(line.rsplit(" ", 1)[1])
    snap = {"t": time.time(), "engines": len(engines), **sums}
    with open(a.out, "w") as f:
        json.dump(snap, f)
    print("token counters:", json.dumps(snap))
    return 0


def cmd_computed(a: argparse.Namespace) -> int:
    """Tokens the engines actually computed between two snapshots (prompt tokens minus prefix-cache
    hits: a hit's KV is reused, not recomputed), per second, and the MFU at 2 x params FLOPs per token."""
    with open(a.before) as f:
        b = json.load(f)
    with open(a.after) as f:
        e = json.load(f)
    secs = e["t"] - b["t"]
    prompt = e["vllm:prompt_tokens_total"] - b["vllm:prompt_tokens_total"]
    hits = e["vllm:prefix_cache_hits_total"] - b["vllm:prefix_cache_hits_total"]
    computed = (prompt - hits) / secs
    print(
        f"over {secs:.1f} s: prompt tokens {prompt:.0f}, prefix-cache hits {hits:.0f}"
        f" ({100 * hits / max(prompt, 1):.1f}%), computed {computed:,.0f} tokens/s"
    )
    a.tokens_per_s = computed
    return cmd_mfu(a)


def cmd_smi(a: argparse.Namespace) -> int:
    util, mem = [], []
    with open(a.file) as f:
        for line in f:
            parts = [p.strip() for p in line.split(",")]
            try:
                util.append(float(parts[1].split()[0]))
                mem.append(float(parts[2].split()[0]))
            except (IndexError, ValueError):
                continue
    if util:
        print(
            f"GPU util over {len(util)} samples: mean {sum(util) / len(util):.0f}% max {max(util):.0f}%; "
            f"memory used max {max(mem):.0f} MiB"
        )
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("wait")
    w.add_argument("--pid", type=int, default=0)
    w.add_argument("--url", default="http://127.0.0.1:8000")
    w.add_argument("--timeout", type=float, default=300)
    w.add_argument("--all", action="store_true", help="wait until every engine is ready")
    w.add_argument("--out", default=None)
    s = sub.add_parser("smoke")
    s.add_argument("--url", default="http://127.0.0.1:8000")
    s.add_argument("--model", default=None)
    wn = sub.add_parser("window")
    wn.add_argument("--url", default="http://127.0.0.1:8000")
    wn.add_argument("--engine", required=True)
    wn.add_argument("--model", default=None)
    wn.add_argument("--words", required=True)
    wn.add_argument("--max-len", type=int, default=512)
    fr = sub.add_parser("first")
    fr.add_argument("--url", default="http://127.0.0.1:8000")
    fr.add_argument("--model", default=None)
    fr.add_argument("--words", required=True)
    fr.add_argument("--n", type=int, default=100)
    fr.add_argument("--doc-words", type=int, default=100)
    p = sub.add_parser("pyspy")
    p.add_argument("file")
    p.add_argument("--top", type=int, default=25)
    m = sub.add_parser("mfu")
    m.add_argument("--config", required=True)
    m.add_argument("--tokens-per-s", type=float, required=True)
    m.add_argument("--peak", type=float, default=800e12)
    g = sub.add_parser("smi")
    g.add_argument("file")
    t = sub.add_parser("tokens")
    t.add_argument("--health", required=True)
    t.add_argument("--out", required=True)
    c = sub.add_parser("computed")
    c.add_argument("--before", required=True)
    c.add_argument("--after", required=True)
    c.add_argument("--config", required=True)
    c.add_argument("--peak", type=float, default=989e12, help="dense bf16 FLOP/s of the card (H100/H200 SXM)")
    a = ap.parse_args()
    return {
        "wait": cmd_wait,
        "smoke": cmd_smoke,
        "window": cmd_window,
        "first": cmd_first,
        "pyspy": cmd_pyspy,
        "mfu": cmd_mfu,
        "smi": cmd_smi,
        "tokens": cmd_tokens,
        "computed": cmd_computed,
    }[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
