#!/usr/bin/env python3
"""First request after ready vs the next ones (not a test): is the first user request as fast?

Waits for `/health` 200, sends one Cohere v2 rerank of --docs documents of --words words (the
first request the service sees), then --next more of the same shape with other texts, and prints
the first latency, the median of the next ones and their ratio. Before the engines were warmed up
ahead of READY (engine/warmup.py) and the workers loaded the tokenizer while the engines loaded
(gateway/app.py), the first 100-document request on a GPU took 13.6-15.6 s; on the 2-core CPU box
the first 64-document request took 5.2 s against a median of 0.78 s (ratio 6.7). With both: 0.76 s
against 0.74 s (1.02), and with --workers 2 0.74 s against 0.69 s (1.07).

Either against a running service:
    .venv/bin/python bench/first_request.py --url http://localhost:8000
or starting one itself (fresh, so the first request really is its first; flags after `--`):
    .venv/bin/python bench/first_request.py --start -- --max-num-seqs 64
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
TEXT = "cats stalk their prey silently and pounce with sharp claws while dogs bark at the mail"
WORDS = TEXT.split(" ")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _docs(n: int, words: int, seed: int) -> list[str]:
    return [" ".join(WORDS[(seed + i + j) % len(WORDS)] for j in range(words)) + f" #{seed}-{i}" for i in range(n)]


def _wait_ready(url: str, timeout: float, proc: subprocess.Popen[bytes] | None) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"the service exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"not ready after {timeout:.0f} s")


def _rerank(client: httpx.Client, url: str, docs: list[str], model: str = "m") -> float:
    started = time.perf_counter()
    r = client.post(f"{url}/v2/rerank", json={"model": model, "query": "How do cats hunt?", "documents": docs})
    elapsed = time.perf_counter() - started
    if r.status_code != 200:
        raise SystemExit(f"rerank answered {r.status_code}: {r.text[:300]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    service_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, service_args = argv[:cut], argv[cut + 1 :]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="a running service (default: start one with --start)")
    p.add_argument("--start", action="store_true", help="start a fresh service (flags after --)")
    p.add_argument("--docs", type=int, default=64)
    p.add_argument("--words", type=int, default=60)
    p.add_argument("--next", type=int, default=10, help="requests after the first")
    p.add_argument("--ready-timeout", type=float, default=600)
    p.add_argument("--model", default="m", help="the model the requests name (several models: which one)")
    args = p.parse_args(argv)
    if not args.url and not args.start:
        p.error("give --url or --start")
    proc: subprocess.Popen[bytes] | None = None
    url = args.url
    if args.start:
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, str(ROOT / "start_service.py"), "--host", "127.0.0.1", "--port", str(port)]
        log = tempfile.NamedTemporaryFile(prefix="first-request-", suffix=".log", delete=False)  # noqa: SIM115
        proc = subprocess.Popen([*cmd, *service_args], start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
        print(f"service log: {log.name}")
    try:
        took = _wait_ready(url, args.ready_timeout, proc)
        with httpx.Client(timeout=300) as client:
            first = _rerank(client, url, _docs(args.docs, args.words, 0), args.model)
            rest = [_rerank(client, url, _docs(args.docs, args.words, k + 1), args.model) for k in range(args.next)]
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)
    median = statistics.median(rest)
    print(f"ready after        {took:8.2f} s (from this script's first /health)")
    print(f"first request      {first * 1000:8.1f} ms ({args.docs} documents x {args.words} words)")
    slowest = max(range(len(rest)), key=rest.__getitem__) + 1  # 1 = the request after the first
    spread = f"min {min(rest) * 1000:.1f}, max {max(rest) * 1000:.1f} (request {slowest} after the first)"
    print(f"median of next {args.next:<3} {median * 1000:8.1f} ms ({spread})")
    print(f"first / median     {first / median:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
