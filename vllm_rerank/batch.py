"""`vllm-rerank run-batch -i IN.jsonl -o OUT.jsonl [serve flags]`: rerank a file, line by line.

Each input line is `{"query": str, "documents": [str | {"text": str}, ...], "id"?, "top_n"?,
"instruction"?}`; each output line, in input order, is `{"id"?, "results": [{"index",
"relevance_score"}, ...]}` (best first, as the service ranks them), or `{"id"?, "error": {"line",
"message"}}` for a line that cannot be reranked. One output line per input line is what makes a
run resumable: an existing output's complete lines are the input lines already done, a torn last
line (a run killed mid-write) is cut off, and the run goes on from the next input line.

The work goes through the service itself, so a batch ranks exactly as the API does: without
--service-url, run-batch starts `vllm-rerank serve` with the serve flags it was given (`--model`,
`--engine-url` for an engine that is already running, ...) on a free loopback port, behind a
one-off API key, and stops it at the end. Memory is bounded by --window: at most that many lines
are read ahead of the last line written, each one request in flight or waiting for its turn.

Bad lines (not JSON, a missing or mistyped field, or one the service answers 4xx, whose message
is kept) are reported on stderr, in --errors FILE when given, and as an error line in the output;
the run goes on. Anything that may pass (the service gone, 5xx after retries) or that every line
would get (401/403/404: the key, the URL, the model name) stops the run with the output a valid
prefix: run the same command again to go on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.process import die_with_parent

__all__ = ["BatchLine", "ResumePoint", "main", "resume_point"]

RETRYABLE = frozenset({429, 502, 503, 504})
# Answers about the run, not the line (the key, the URL, the model name): every line would get the same.
RUN_WIDE = frozenset({401, 403, 404})

# One line in the window: (line number, its id, its pairs, the request or why the line is bad).
_Entry = tuple[int, object, int, "asyncio.Task[list[dict[str, Any]]] | LineError"]


class _Text(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    text: str


class BatchLine(BaseModel):
    """One input line."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    query: str
    documents: list[str | _Text] = Field(min_length=1)
    id: str | int | None = None
    top_n: int | None = Field(None, ge=1)
    instruction: str | None = None

    def body(self, model: str) -> dict[str, Any]:
        """The Cohere v2 request for this line."""
        docs = [d if isinstance(d, str) else d.text for d in self.documents]
        out: dict[str, Any] = {"model": model, "query": self.query, "documents": docs}
        if self.top_n is not None:
            out["top_n"] = self.top_n
        if self.instruction is not None:
            out["instruction"] = self.instruction
        return out


class LineError(Exception):
    """This line cannot be reranked (the run goes on)."""


class BatchAbort(Exception):
    """The run cannot go on (the output stays a valid prefix)."""


@dataclass(frozen=True)
class ResumePoint:
    lines: int  # complete output lines: the input lines already done
    torn_bytes: int  # bytes of a torn last line cut off


def resume_point(output: Path) -> ResumePoint:
    """Count the complete lines of an earlier run's output and cut off a torn last line.

    A line is complete when it ends in a newline and parses as JSON (a write is one whole line, so
    only the last can be torn).
    """
    if not output.exists():
        return ResumePoint(0, 0)
    lines = 0
    good_end = 0
    with output.open("rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break
            try:
                orjson.loads(raw)
            except orjson.JSONDecodeError:
                break
            lines += 1
            good_end += len(raw)
    size = output.stat().st_size
    if size > good_end:
        with output.open("r+b") as f:
            f.truncate(good_end)
    return ResumePoint(lines, size - good_end)


def _parse(raw: bytes) -> BatchLine:
    """Raises LineError naming the field."""
    if not raw.strip():
        raise LineError("empty line")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise LineError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise LineError(f"not a JSON object: {type(data).__name__}")
    try:
        return BatchLine.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "line"
        raise LineError(f"{where}: {first['msg']}") from None


def _raw_id(raw: bytes) -> object:
    """The id of a line that did not validate, if it has a usable one."""
    with contextlib.suppress(orjson.JSONDecodeError):
        data = orjson.loads(raw)
        if isinstance(data, dict) and isinstance(data.get("id"), str | int):
            return data["id"]
    return None


def _input_lines(path: Path, skip: int) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, bytes) after the first `skip` lines."""
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            if n > skip:
                yield n, raw


def _count(path: Path, done: int) -> tuple[int, int, int]:
    """(lines, pairs, pairs in the first `done` lines): the progress bar's total and start."""
    lines = pairs = pairs_done = 0
    with path.open("rb") as f:
        for raw in f:
            lines += 1
            try:
                docs = orjson.loads(raw).get("documents")
                n = len(docs) if isinstance(docs, list) else 0
            except (orjson.JSONDecodeError, AttributeError):
                n = 0
            pairs += n
            if lines <= done:
                pairs_done += n
    return lines, pairs, pairs_done


# --------------------------------------------------------------------------- the service
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _OwnService:
    """`vllm-rerank serve` on a free loopback port, behind a one-off key; its log in a file."""

    def __init__(self, serve_args: Sequence[str], *, log_dir: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.key = secrets.token_urlsafe(24)
        args = list(serve_args)
        cut = args.index("--") if "--" in args else len(args)
        # After the user's flags (the last of a flag wins), before `--` (after it, flags go to vLLM).
        args[cut:cut] = ["--host", "127.0.0.1", "--port", str(self.port)]
        env = {**os.environ, "RERANK_API_KEYS": self.key, "PYTHONUNBUFFERED": "1"}
        import vllm_rerank

        here = Path(vllm_rerank.__file__).resolve().parent
        if here.parent == vllm_rerank.ROOT:  # a checkout: vllm_rerank is importable from the repository root
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(vllm_rerank.ROOT), env.get("PYTHONPATH")) if p)
        fd, log_path = tempfile.mkstemp(prefix="vllm-rerank-batch-", suffix=".log", dir=log_dir)
        self.log_path = Path(log_path)
        with os.fdopen(fd, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vllm_rerank", "serve", *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # the terminal's Ctrl-C is ours to handle: we stop it ourselves
                # SIGTERM (the service's drain and engine stop) if this process is killed outright. As the
                # engine's own spawn: prctl, getppid and kill between fork and exec.
                preexec_fn=functools.partial(die_with_parent, os.getpid()),  # noqa: PLW1509
            )

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    async def wait_ready(self) -> None:
        """Raises BatchAbort when the service exits first (it bounds its own start: --ready-timeout)."""
        async with httpx.AsyncClient(timeout=5) as client:
            while True:
                if self.proc.poll() is not None:
                    raise BatchAbort(f"the service exited with {self.proc.returncode}:\n{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/health")).status_code == 200:
                        return
                await asyncio.sleep(0.5)

    def stop(self, grace: float = 60.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything of its group left behind
        self.proc.wait()


# --------------------------------------------------------------------------- the run
@dataclass
class _Stats:
    lines: int = 0
    pairs: int = 0
    bad: int = 0


class _Run:
    def __init__(self, a: argparse.Namespace, *, url: str, key: str | None, out: IO[bytes], errors: IO[bytes] | None):
        self.a = a
        self.url = url
        self.headers = {"authorization": f"Bearer {key}"} if key else {}
        self.out = out
        self.errors = errors
        self.stats = _Stats()
        self.started = time.monotonic()

    async def rerank(self, client: httpx.AsyncClient, line: BatchLine, model: str) -> list[dict[str, Any]]:
        """The results for one line. Raises LineError (4xx) or BatchAbort (the service is gone or keeps failing)."""
        delay = 0.5
        for attempt in range(self.a.retries + 1):
            try:
                r = await client.post("/v2/rerank", json=line.body(model), headers=self.headers)
            except httpx.HTTPError as exc:
                raise BatchAbort(f"the service cannot be reached: {exc!r}") from None
            if r.status_code == 200:
                return [{"index": x["index"], "relevance_score": x["relevance_score"]} for x in r.json()["results"]]
            if r.status_code in RETRYABLE and attempt < self.a.retries:
                wait = r.headers.get("retry-after")
                await asyncio.sleep(float(wait) if wait and wait.replace(".", "", 1).isdigit() else delay)
                delay = min(delay * 2, 10.0)
                continue
            message = _error_message(r)
            if 400 <= r.status_code < 500 and r.status_code not in RETRYABLE | RUN_WIDE:
                raise LineError(f"rejected by the service ({r.status_code}): {message}")
            raise BatchAbort(f"the service answered {r.status_code}: {message}")
        raise AssertionError("unreachable")

    def report(self, n: int, line_id: object, message: str, bar: Any) -> None:
        self.stats.bad += 1
        bar.write(f"line {n}: {message}", file=sys.stderr)
        if self.errors is not None:
            entry = {"line": n, **({"id": line_id} if line_id is not None else {}), "error": message}
            self.errors.write(orjson.dumps(entry) + b"\n")
            self.errors.flush()

    async def go(self, done: int, bar: Any) -> None:
        self.started = time.monotonic()
        limits = httpx.Limits(max_connections=self.a.window, max_keepalive_connections=self.a.window)
        async with httpx.AsyncClient(base_url=self.url, timeout=self.a.request_timeout, limits=limits) as client:
            model = self.a.rerank_model or await self._first_model(client)
            window: deque[_Entry] = deque()
            try:
                for n, raw in _input_lines(self.a.input, done):
                    try:
                        line = _parse(raw)
                        job: asyncio.Task[list[dict[str, Any]]] | LineError = asyncio.create_task(
                            self.rerank(client, line, model)
                        )
                        entry: _Entry = (n, line.id, len(line.documents), job)
                    except LineError as exc:
                        entry = (n, _raw_id(raw), 0, exc)
                    window.append(entry)
                    while len(window) >= self.a.window:
                        await self._write(window.popleft(), bar)
                while window:
                    await self._write(window.popleft(), bar)
            finally:
                for *_, job in window:
                    if isinstance(job, asyncio.Task):
                        job.cancel()

    async def _first_model(self, client: httpx.AsyncClient) -> str:
        r = await client.get("/v1/models", headers=self.headers)
        if r.status_code != 200 or not r.json().get("data"):
            raise BatchAbort(f"cannot list the service's models ({r.status_code}): {_error_message(r)}")
        return str(r.json()["data"][0]["id"])

    async def _write(self, entry: _Entry, bar: Any) -> None:
        n, line_id, pairs, job = entry
        head = {"id": line_id} if line_id is not None else {}
        try:
            if isinstance(job, LineError):
                raise job
            record: dict[str, Any] = {**head, "results": await job}
        except LineError as exc:
            self.report(n, line_id, str(exc), bar)
            record = {**head, "error": {"line": n, "message": str(exc)}}
        self.out.write(orjson.dumps(record) + b"\n")  # one write per line: only the last can be torn
        self.out.flush()
        self.stats.lines += 1
        self.stats.pairs += pairs
        bar.update(pairs)


def _error_message(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text[:300]
    if isinstance(body, dict):
        for key in ("message", "detail", "error"):
            if isinstance(body.get(key), str):
                return str(body[key])
            if isinstance(body.get(key), dict) and isinstance(body[key].get("message"), str):
                return str(body[key]["message"])
    return r.text[:300]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vllm-rerank run-batch",
        description="Rerank a JSONL file. Input lines: {query, documents, id?, top_n?, instruction?}; output lines, "
        "in input order: {id?, results: [{index, relevance_score}]} or {id?, error: {line, message}}. Flags not "
        "listed here are `vllm-rerank serve` flags for the service this command starts (e.g. --model, "
        "--engine-url URL to use an engine that is already running). An existing output is resumed.",
        allow_abbrev=False,
    )
    p.add_argument("-i", "--input", type=Path, required=True, help="input JSONL file")
    p.add_argument("-o", "--output", type=Path, required=True, help="output JSONL file (resumed if it exists)")
    p.add_argument("--errors", type=Path, help="also append bad lines here (JSONL: line, id, error)")
    p.add_argument("--overwrite", action="store_true", help="start over instead of resuming an existing output")
    p.add_argument(
        "--window", type=int, default=16, help="lines read ahead of the last one written (requests in flight)"
    )
    p.add_argument("--service-url", help="use a running vllm-rerank service (key: env RERANK_BATCH_API_KEY)")
    p.add_argument("--rerank-model", help="the model name sent in each request (default: the service's first)")
    p.add_argument("--request-timeout", type=float, default=600.0, help="seconds per request")
    p.add_argument("--retries", type=int, default=8, help="retries of a request answered 429/502/503/504")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str]) -> int:
    """Run a batch; 0 when every line has an output line, 1 when the run stopped, 2 on bad arguments."""
    a, serve_args = build_parser().parse_known_args(list(argv))
    if a.window < 1:
        print("error: --window must be at least 1", file=sys.stderr)
        return 2
    if not a.input.is_file():
        print(f"error: no input file {a.input}", file=sys.stderr)
        return 2
    if a.service_url and serve_args:
        print(f"error: --service-url uses a running service; serve flags make no sense: {serve_args}", file=sys.stderr)
        return 2
    if a.overwrite:
        a.output.unlink(missing_ok=True)
    point = resume_point(a.output)
    total_lines, total_pairs, pairs_done = _count(a.input, point.lines)
    if point.lines > total_lines:
        print(f"error: {a.output} has {point.lines} lines, more than the {total_lines} of {a.input}", file=sys.stderr)
        return 2
    if point.lines or point.torn_bytes:
        cut = f"; cut a torn last line ({point.torn_bytes} bytes)" if point.torn_bytes else ""
        print(f"run-batch: resuming after line {point.lines} of {total_lines}{cut}", file=sys.stderr)
    if point.lines == total_lines:
        print(f"run-batch: {a.output} is complete ({total_lines} lines)", file=sys.stderr)
        return 0

    from tqdm import tqdm

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # the same way out as Ctrl-C: the output flushed, the service stopped

    signal.signal(signal.SIGTERM, on_sigterm)
    own: _OwnService | None = None
    run: _Run | None = None
    started = time.monotonic()
    code = 0
    a.output.parent.mkdir(parents=True, exist_ok=True)
    try:
        with a.output.open("ab") as out, a.errors.open("ab") if a.errors else contextlib.nullcontext() as errors:
            if a.service_url:
                url, key = a.service_url.rstrip("/"), os.environ.get("RERANK_BATCH_API_KEY")
            else:
                own = _OwnService(serve_args, log_dir=Path(tempfile.gettempdir()))
                print(f"run-batch: starting the service (log: {own.log_path})", file=sys.stderr, flush=True)
                asyncio.run(own.wait_ready())
                print(f"run-batch: service ready after {time.monotonic() - started:.1f}s", file=sys.stderr, flush=True)
                url, key = own.url, own.key
            run = _Run(a, url=url, key=key, out=out, errors=errors)
            bar = tqdm(
                total=total_pairs,
                initial=pairs_done,
                unit="pair",
                unit_scale=True,
                file=sys.stderr,
                disable=a.no_progress,
                dynamic_ncols=True,
            )
            with bar:
                asyncio.run(run.go(point.lines, bar))
    except BatchAbort as exc:
        print(f"run-batch: stopped: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("run-batch: interrupted; run the same command again to go on", file=sys.stderr)
        code = 130
    finally:
        if run is not None:
            s, secs = run.stats, time.monotonic() - run.started
            print(
                f"run-batch: {s.lines} lines, {s.pairs} pairs in {secs:.1f}s ({s.pairs / max(secs, 1e-9):.1f} "
                f"pairs/s), {s.bad} bad; {point.lines + s.lines} of {total_lines} lines in {a.output}",
                file=sys.stderr,
                flush=True,
            )
        if own is not None:
            print("run-batch: stopping the service", file=sys.stderr, flush=True)
            own.stop()
    return code
