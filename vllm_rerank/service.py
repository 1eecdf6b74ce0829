"""The service: `vllm-rerank serve [flags] [-- vllm serve flags]`, also `python start_service.py`.

This process owns the engine: it starts and supervises the vLLM child (one engine shared by
every gateway worker), publishes its state to a file the workers read, runs uvicorn with
`--workers` processes, and on SIGINT/SIGTERM lets uvicorn drain, then stops the engine
(SIGTERM, grace, SIGKILL of its process group). Run `--help` for every flag.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]

log = logging.getLogger("vllm_rerank")


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host or "0.0.0.0", port))
        except OSError:
            return False
    return True


def _keys_out_of_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """(argv without --api-key flags, the keys they gave); only this service's own flags (before `--`)."""
    cut = argv.index("--") if "--" in argv else len(argv)
    rest: list[str] = []
    keys: list[str] = []
    i = 0
    while i < cut:
        a = argv[i]
        if a == "--api-key" and i + 1 < cut:
            keys.append(argv[i + 1])
            i += 2
            continue
        if a.startswith("--api-key="):
            keys.append(a.split("=", 1)[1])
        else:
            rest.append(a)
        i += 1
    return rest + argv[cut:], keys


def _raise_fd_limit() -> None:
    """Open files up to the hard limit: every client connection is a descriptor."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else soft, hard))
    except (ImportError, ValueError, OSError) as exc:  # pragma: no cover - not Linux, or not allowed
        log.warning("fd_limit_unchanged error=%s", exc)


def main(argv: list[str] | None = None, *, prog: str = "start_service.py", relaunch: Sequence[str] = ()) -> int:
    """Run the service until SIGINT/SIGTERM; the exit code.

    `argv` None reads sys.argv[1:] and, when it carries --api-key, starts this process again without
    them: `relaunch` is the command that does that (default: `python sys.argv[0]`). `prog` names the
    command in --help.
    """
    t0 = time.monotonic()
    if argv is None:
        rest, keys = _keys_out_of_argv(sys.argv[1:])
        if keys:
            # Keys given as flags are in the process list for anyone on the machine to read. Move them to
            # the environment (flag > env: they replace RERANK_API_KEYS) and start again without them.
            print(
                "warning: --api-key is visible in the process list; pass keys in RERANK_API_KEYS or "
                "--api-key-file (moved to the environment for this run)",
                file=sys.stderr,
                flush=True,
            )
            os.environ["RERANK_API_KEYS"] = ",".join(keys) if all(k.strip() for k in keys) else ","
            command = list(relaunch) or [sys.executable, str(Path(sys.argv[0]).resolve())]
            os.execv(command[0], [*command, *rest])
    from engine.mps import MpsError
    from gateway.cli import parse_settings
    from gateway.launch import plan_engines
    from gateway.logformat import configure_logging
    from gateway.settings import SETTINGS_ENV, SettingsError
    from gateway.topology import plan_topology

    try:
        settings = parse_settings(sys.argv[1:] if argv is None else argv, prog=prog)
        topology = plan_topology(settings)
        # what the defaults resolve to, once: workers and /health see the same numbers
        settings = settings.replace(workers=topology.workers)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    _raise_fd_limit()
    logging.getLogger("httpx").setLevel(logging.WARNING)

    if settings.port and not _port_free(settings.host, settings.port):
        print(
            f"error: cannot start: port {settings.port} on {settings.host} is already in use (--port/PORT)",
            file=sys.stderr,
        )
        return 1
    # Managed engines listen on Unix sockets (gateway.launch); --engine-port asks for loopback TCP.
    ports: list[int] = []
    if settings.engine_port and not settings.engine_urls:
        ports = [settings.engine_port + i for i in range(len(topology.engines))]
    for engine_port in ports:
        if not _port_free("127.0.0.1", engine_port):
            print(
                f"error: cannot start the engine: port {engine_port} is already in use (--engine-port)", file=sys.stderr
            )
            return 1

    try:
        engines = plan_engines(settings, topology, ports=ports)
    except MpsError as exc:
        print(f"error: cannot start: --mps on: {exc}", file=sys.stderr)
        return 1
    # what --mps resolved to (a daemon runs, or not), for /health
    settings = settings.replace(mps="on" if engines.mps else "off")
    runtime_dir, configs, supervisors = engines.runtime_dir, engines.configs, engines.handles
    metrics_dir = runtime_dir / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir()
    # Before gateway.app (and prometheus_client) load: every worker aggregates into this dir.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    from gateway.app import PARENT_PID_ENV, STATE_FILE_ENV
    from gateway.startup import announce_ready, preflight_exit_code

    code = preflight_exit_code(settings, configs, environ=os.environ)  # before any engine starts
    if code:
        engines.cleanup()
        return code
    for plan in topology.models:
        log.info(
            "service_config model=%s path=%s format=%s device=%s workers=%d engines=%s",
            plan.name or "(from the engine)",
            plan.spec.model,
            plan.info.format.name,
            topology.device,
            settings.workers,
            ",".join([c.url for c in configs if c.served_model_name == plan.name] + list(settings.engine_urls)),
        )

    publish = engines.publish
    publish()
    os.environ[SETTINGS_ENV] = settings.model_dump_json()
    os.environ[STATE_FILE_ENV] = str(engines.state_path)
    os.environ[PARENT_PID_ENV] = str(os.getpid())

    exit_code = 0
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        raise SystemExit(exit_code)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    several = len(topology.models) > 1
    models = {c.name: c.served_model_name for c in configs}

    def watch_first_start() -> None:
        nonlocal exit_code
        for sup in supervisors:
            if not sup.wait_first_start() and not stopping.is_set():
                err = sup.start_error
                line = err.message if err else "engine did not start"
                cause = err.cause if err else "unknown"
                which = f"engine {sup.name} of model {models[sup.name]!r}" if several else "engine"
                print(f"error: {which} failed to start ({cause}): {line}", file=sys.stderr, flush=True)
                exit_code = 1
                os.kill(os.getpid(), signal.SIGTERM)
                return

    from gateway.server import serve

    try:
        for sup in supervisors:
            sup.start()
        threading.Thread(target=watch_first_start, name="first-start", daemon=True).start()
        threading.Thread(
            target=announce_ready,
            args=(supervisors, settings),
            kwargs={
                "model": ", ".join(p.name or p.spec.model for p in topology.models),
                "stopping": stopping,
                "started": t0,
            },
            name="ready-line",
            daemon=True,
        ).start()
        # uvicorn with --workers processes, the connection limits (--header-timeout, --body-timeout,
        # --max-connections) and, on SIGTERM, a drain of up to --stop-grace s: the listener closes, a
        # request in progress is answered (503 + Retry-After if it is not done by then), no connection
        # is dropped. The engines get their own --stop-grace below.
        serve(settings, "vllm_rerank.asgi:create_app_from_env")
    except SystemExit as exc:
        if isinstance(exc.code, int) and exc.code:
            exit_code = exc.code
    finally:
        stopping.set()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stoppers = [threading.Thread(target=sup.stop) for sup in supervisors]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()
        publish()
        engines.cleanup()
        log.info("service_stopped exit_code=%d", exit_code)
    return exit_code
