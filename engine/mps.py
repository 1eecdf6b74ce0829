"""CUDA MPS for the engines that share a card: a private control daemon owned by the service.

Several engine processes on one GPU each hold their own CUDA context, and the GPU runs the contexts in
turns (time-slicing): while one engine's kernels run, the others' wait, however little of the card
those kernels fill. Under one MPS server the engines become clients of one context and their kernels
run side by side. The daemon here is private to the service (its own pipe and log directory under the
runtime dir, passed to the engines in CUDA_MPS_PIPE_DIRECTORY / CUDA_MPS_LOG_DIRECTORY) and runs in
the foreground under a small keeper process of ours. The keeper gets SIGTERM when the service stops
it or dies in any way (PR_SET_PDEATHSIG, so a SIGKILLed service too); it then tells the daemon to
quit, which ends the MPS server the daemon started, and kills whatever of them is left.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

from engine.process import die_with_parent

__all__ = ["CONTROL", "MpsDaemon", "MpsError", "keep", "mps_clients", "mps_refusal", "operator_daemon"]

CONTROL = "nvidia-cuda-mps-control"
log = logging.getLogger("vllm_rerank.engine")


class MpsError(RuntimeError):
    """The control daemon could not be started."""


def operator_daemon(environ: Mapping[str, str] | None = None) -> str | None:
    """The pipe directory of an MPS daemon the environment already names (the operator's), else None."""
    return (os.environ if environ is None else environ).get("CUDA_MPS_PIPE_DIRECTORY") or None


def mps_clients(
    mode: str,
    device: str,
    tensor_parallel_size: int,
    cards: list[list[str | None]],
    *,
    which: Callable[[str], str | None] = shutil.which,
    environ: Mapping[str, str] | None = None,
) -> tuple[str | None, list[list[bool]]]:
    """Which engines join a private MPS daemon, for `mode` (auto, on, off) and each engine's card
    (`cards`: per model, each engine's CUDA_VISIBLE_DEVICES, None for the default card): the control
    binary (None: no daemon) and, per model and engine, whether it joins. auto: the engines on a card
    that two or more engines share (one engine has its card to itself; a tensor-parallel engine spans
    cards). on: every engine on a GPU. Nobody joins on CPU or where the environment names the
    operator's own daemon.

    Raises: MpsError for `on` where the control binary is not on PATH."""
    none: list[list[bool]] = [[False] * len(v) for v in cards]
    if mode == "off" or device == "cpu" or operator_daemon(environ):
        return None, none
    if mode == "auto" and tensor_parallel_size > 1:
        return None, none
    engines_on = Counter(card for engine_cards in cards for card in engine_cards)
    join = [[mode == "on" or engines_on[card] > 1 for card in engine_cards] for engine_cards in cards]
    if not any(any(j) for j in join):
        return None, none
    binary = which(CONTROL)
    if binary is None:
        if mode == "on":
            raise MpsError(f"{CONTROL} is not on PATH (it comes with the NVIDIA driver's utilities)")
        return None, none
    return binary, join


def mps_refusal(smi: str | None = None, timeout: float = 10.0) -> str | None:
    """Why the visible GPUs cannot take this service's own MPS daemon (a compute mode other than Default,
    MIG), as nvidia-smi reports them; None where they can or nvidia-smi cannot tell."""
    smi = smi or shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=index,compute_mode,mig.mode.current", "--format=csv,noheader"],
            capture_output=True,
            timeout=timeout,
            check=True,
        ).stdout.decode("utf-8", "replace")
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 3:
            continue
        index, mode, mig = fields
        if mode != "Default":
            return f"GPU {index} is in compute mode {mode}"
        if mig == "Enabled":
            return f"GPU {index} has MIG enabled"
    return None


_ROOT = str(Path(__file__).resolve().parents[1])  # where `engine` is importable from, for the keeper
_KEEPER = "import sys; sys.path.insert(0, sys.argv[1]); from engine.mps import keep; sys.exit(keep(sys.argv[2]))"


def _die_with_parent() -> None:  # runs in the child between fork and exec
    die_with_parent(None)


def _ask(binary: str, command: str, timeout: float, env: dict[str, str] | None = None) -> str:
    """Send one command to the daemon named by CUDA_MPS_PIPE_DIRECTORY in `env` (default: ours; the
    control binary's client mode reads commands from stdin); its answer, "" when there is none."""
    try:
        done = subprocess.run(
            [binary], input=f"{command}\n".encode(), env=env, capture_output=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.decode("utf-8", "replace")


def _servers(binary: str, timeout: float, env: dict[str, str] | None = None) -> list[int]:
    return [int(w) for w in _ask(binary, "get_server_list", timeout, env).split() if w.isdigit()]


def _kill_servers(pids: list[int]) -> None:
    """SIGKILL the MPS servers in `pids` that still run (a server that outlived its daemon holds GPU memory)."""
    for pid in pids:
        with contextlib.suppress(OSError):
            if "mps" in Path(f"/proc/{pid}/comm").read_text():  # not a pid reused meanwhile
                os.kill(pid, signal.SIGKILL)


def keep(binary: str, grace: float = 10.0) -> int:
    """The keeper (a process of its own, started by MpsDaemon): run `binary -f` until SIGTERM/SIGINT,
    then quit it, end its servers, and exit 0. Returns the daemon's exit code if it ends by itself."""
    daemon = subprocess.Popen([binary, "-f"], stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)  # noqa: PLW1509
    asked: list[int] = []
    # the handler only notes the signal: a wait() inside it would deadlock on the wait() it interrupted
    signal.signal(signal.SIGTERM, lambda signum, frame: asked.append(signum))
    signal.signal(signal.SIGINT, lambda signum, frame: asked.append(signum))
    while not asked:
        try:
            return daemon.wait(0.5)
        except subprocess.TimeoutExpired:
            continue
    servers = _servers(binary, grace)
    _ask(binary, "quit", grace)
    try:
        daemon.wait(grace)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()
    _kill_servers(servers)
    return 0


class MpsDaemon:
    """One private MPS control daemon: `start()` before the engines, `stop()` after them; `env()` is what
    each engine's environment needs to become its client."""

    def __init__(self, directory: Path, *, binary: str) -> None:
        self.directory = directory
        self.binary = binary
        self._proc: subprocess.Popen[bytes] | None = None  # the keeper

    @property
    def pipe_dir(self) -> Path:
        return self.directory / "pipe"

    @property
    def log_dir(self) -> Path:
        return self.directory / "log"

    @property
    def pid(self) -> int | None:
        """The keeper's pid (the daemon is its child)."""
        return self._proc.pid if self._proc else None

    def env(self) -> dict[str, str]:
        return {"CUDA_MPS_PIPE_DIRECTORY": str(self.pipe_dir), "CUDA_MPS_LOG_DIRECTORY": str(self.log_dir)}

    def start(self, timeout: float = 15.0) -> None:
        """Start the keeper and its daemon and wait until the daemon's control socket exists. Raises
        MpsError (everything stopped again) when the daemon exits or does not listen within `timeout` s."""
        for d in (self.pipe_dir, self.log_dir):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        control = self.pipe_dir / "control"
        with contextlib.suppress(FileNotFoundError):
            control.unlink()  # a socket left by an earlier run that was killed
        with (self.log_dir / "daemon.out").open("ab") as out:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _KEEPER, _ROOT, self.binary],
                env={**os.environ, **self.env()},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl(PDEATHSIG): async-signal-safe
            )
        deadline = time.monotonic() + timeout
        while not control.exists():
            if self._proc.poll() is not None or time.monotonic() >= deadline:
                why = (
                    f"exited with code {self._proc.returncode}"
                    if self._proc.poll() is not None
                    else f"did not listen within {timeout:.0f} s"
                )
                self.stop(grace=2.0)
                raise MpsError(f"{self.binary} -f {why} (log: {self.log_dir})")
            time.sleep(0.05)
        log.info("mps_started pid=%d pipe_dir=%s", self._proc.pid, self.pipe_dir)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the keeper (it quits the daemon and its servers), wait, then kill what is left. Idempotent."""
        proc = self._proc
        if proc is None:
            return
        servers: list[int] = []
        if proc.poll() is None:
            servers = _servers(self.binary, grace, {**os.environ, **self.env()})  # for the last resort below
            proc.terminate()
            try:
                proc.wait(2 * grace + 5)
            except subprocess.TimeoutExpired:
                log.warning("mps_kill pid=%d reason=grace_expired", proc.pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # the keeper and the daemon (its child, in its group)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        _kill_servers(servers)
        log.info("mps_stopped pid=%d code=%s", proc.pid, proc.returncode)
