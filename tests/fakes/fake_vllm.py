#!/usr/bin/env python3
"""A fake vLLM server for FAULT INJECTION ONLY (a real subprocess speaking vLLM's HTTP).

Never use it to prove features work: its scores are constants. It accepts vLLM's command line
(--model, --host, --port, --served-model-name, anything else ignored) plus fault flags:

  --fail-start          print vLLM's port-in-use error and exit 1
  --never-ready         never open the port
  --start-delay S       open the port after S seconds
  --start-gate FILE     open the port only once FILE exists (the test decides when the engine is
                        ready: no race with a delay)
  --crash-after N       exit (os._exit) while handling /score request number N+1
  --hang                /score never answers
  --status CODE         /score answers CODE with vLLM's error body
  --reset               /score closes the connection without answering
  --slow S              /score answers after S seconds
  --score-gate FILE     /score answers only once FILE exists (requests stay in flight until then)
  --ignore-sigterm      ignore SIGTERM (the supervisor must SIGKILL the group)
  --oom-above F         fail to start like a CUDA OOM when --gpu-memory-utilization > F
  --oom-first DIR       the first start of each engine (by port or socket) fails like vLLM's KV-cache
                        sizing when others allocate ("No available memory for the cache blocks"), after
                        --start-delay; later starts succeed
  --start-log FILE      append one JSON line per start: engine, attempt, start and end (time.time())

The supervisor's warm-up requests (header x-vllm-rerank-warmup) are answered at once and not counted:
the faults above apply to the requests a test sends.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def wait_for_file(path: str | None) -> None:
    """Block until `path` exists (no-op without one)."""
    while path is not None and not os.path.exists(path):
        time.sleep(0.05)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="fake")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--uds", default=None)
    p.add_argument("--served-model-name", default="fake")
    p.add_argument("--fail-start", action="store_true")
    p.add_argument("--never-ready", action="store_true")
    p.add_argument("--start-delay", type=float, default=0.0)
    p.add_argument("--start-gate", default=None)
    p.add_argument("--crash-after", type=int, default=-1)
    p.add_argument("--hang", action="store_true")
    p.add_argument("--status", type=int, default=200)
    p.add_argument("--reset", action="store_true")
    p.add_argument("--slow", type=float, default=0.0)
    p.add_argument("--score-gate", default=None)
    p.add_argument("--ignore-sigterm", action="store_true")
    p.add_argument("--oom-above", type=float, default=None)
    p.add_argument("--oom-first", default=None)
    p.add_argument("--start-log", default=None)
    p.add_argument("--gpu-memory-utilization", type=float, default=0.92)
    args, _ = p.parse_known_args()

    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print(f"fake vllm starting on {args.host}:{args.port}", flush=True)
    if args.fail_start:
        print("OSError: [Errno 98] Address already in use", flush=True)
        sys.exit(1)
    if args.oom_above is not None and args.gpu_memory_utilization > args.oom_above:
        print("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", flush=True)
        sys.exit(1)
    if args.never_ready:
        while True:
            time.sleep(3600)
    t0 = time.time()
    time.sleep(args.start_delay)
    wait_for_file(args.start_gate)
    engine = args.uds or str(args.port)
    first = False
    if args.oom_first is not None:
        marker = os.path.join(args.oom_first, engine.replace("/", "_") + ".tried")
        first = not os.path.exists(marker)
        if first:
            open(marker, "w").close()
    if args.start_log is not None:
        line = {
            "engine": engine,
            "attempt": 1 if first else 2,
            "start": t0,
            "end": time.time(),
            "gpu_memory_utilization": args.gpu_memory_utilization,
        }
        with open(args.start_log, "a") as f:
            f.write(json.dumps(line) + "\n")
    if first:
        print(
            "ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization`", flush=True
        )
        sys.exit(1)
    count = {"score": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a: object) -> None:
            pass

        def _send(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._send(200, {})
            elif self.path == "/v1/models":
                self._send(
                    200,
                    {
                        "object": "list",
                        "data": [{"id": args.served_model_name, "root": args.model, "max_model_len": 512}],
                    },
                )
            elif self.path == "/metrics":
                data = b"vllm:num_requests_running 0.0\n"
                self.send_response(200)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            else:
                self._send(404, {"detail": "Not Found"})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
            if self.headers.get("x-vllm-rerank-warmup"):  # the supervisor's warm-up: no fault, not counted
                docs = body.get("text_2") or body.get("input") or []
                data = [{"index": i, "object": "score", "score": 0.5} for i in range(len(docs))]
                self._send(200, {"object": "list", "data": data, "usage": {"prompt_tokens": len(docs)}})
                return
            with lock:
                count["score"] += 1
                n = count["score"]
            if args.crash_after >= 0 and n > args.crash_after:
                os._exit(3)
            if args.hang:
                time.sleep(3600)
            if args.reset:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            time.sleep(args.slow)
            wait_for_file(args.score_gate)
            if args.status != 200:
                self._send(
                    args.status,
                    {
                        "error": {
                            "message": f"fake error {args.status}",
                            "type": "Fake",
                            "param": None,
                            "code": args.status,
                        }
                    },
                )
                return
            docs = body.get("text_2") or []
            self._send(
                200,
                {
                    "id": "score-fake",
                    "object": "list",
                    "model": args.served_model_name,
                    "data": [{"index": i, "object": "score", "score": 0.5} for i in range(len(docs))],
                    "usage": {"prompt_tokens": len(docs), "total_tokens": len(docs)},
                },
            )

    if args.uds:  # as vLLM's --uds: serve on a Unix socket instead of host:port

        class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        class UnixHandler(Handler):
            def address_string(self) -> str:
                return "unix"

        UnixServer(args.uds, UnixHandler).serve_forever()
        return
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
