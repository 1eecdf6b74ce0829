"""CUDA MPS for the engines that share a card: a private control daemon owned by the service.

Several engine processes on one GPU each hold their own CUDA context, and the GPU runs the contexts in
turns (time-slicing): while one engine's kernels run, the others' wait, however little of the card
those kernels fill. Under one MPS server the engines become clients of one context and their kernels
run side by side. The daemon here is private to the service (its own pipe and log directory under the
runtime dir, passed to the engines in CUDA_MPS_PIPE_DIRECTORY / CUDA_MPS_LOG_DIRECTORY), runs in the
foreground as a child that dies with the service (PR_SET_PDEATHSIG), and is told to quit after the
engines stopped, which ends the MPS server it started.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from engine.process import die_with_parent

__all__ = ["CONTROL", "MpsDaemon", "MpsError", "control_binary"]

CONTROL = "nvidia-cuda-mps-control"
log = logging.getLogger("vllm_rerank.engine")


class MpsError(RuntimeError):
    """The control daemon could not be started."""


def control_binary() -> str | None:
    """The path of nvidia-cuda-mps-control on PATH, else None."""
    return shutil.which(CONTROL)


def _die_with_service() -> None:  # runs in the child between fork and exec
    die_with_parent(None)


class MpsDaemon:
    """One private MPS control daemon: `start()` before the engines, `stop()` after them; `env()` is what
    each engine's environment needs to become its client."""

    def __init__(self, directory: Path, *, binary: str) -> None:
        self.directory = directory
        self.binary = binary
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pipe_dir(self) -> Path:
        return self.directory / "pipe"

    @property
    def log_dir(self) -> Path:
        return self.directory / "log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def env(self) -> dict[str, str]:
        return {"CUDA_MPS_PIPE_DIRECTORY": str(self.pipe_dir), "CUDA_MPS_LOG_DIRECTORY": str(self.log_dir)}

    def _env(self) -> dict[str, str]:
        return {**os.environ, **self.env()}

    def start(self, timeout: float = 15.0) -> None:
        """Start the daemon and wait until its control socket exists. Raises MpsError (the daemon is
        stopped again) when it exits or does not listen within `timeout` seconds."""
        for d in (self.pipe_dir, self.log_dir):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        control = self.pipe_dir / "control"
        with contextlib.suppress(FileNotFoundError):
            control.unlink()  # a socket left by an earlier run that was killed
        self._proc = subprocess.Popen(
            [self.binary, "-f"],
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(self.log_dir / "daemon.out").open("ab"),
            start_new_session=True,
            preexec_fn=_die_with_service,  # noqa: PLW1509 - only prctl(PDEATHSIG): async-signal-safe
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
        """Ask the daemon to quit (it ends the MPS server it started), wait up to `grace` seconds, then
        kill its group. Idempotent."""
        proc = self._proc
        if proc is None:
            return
        servers: list[int] = []
        if proc.poll() is None:
            servers = [int(w) for w in self._ask("get_server_list", grace).split() if w.isdigit()]
            self._ask("quit", grace)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                log.warning("mps_kill pid=%d reason=grace_expired", proc.pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        for pid in servers:  # a server that outlived its daemon (it would hold GPU memory): gone too
            with contextlib.suppress(OSError):
                if "mps" in Path(f"/proc/{pid}/comm").read_text():  # not a pid reused meanwhile
                    os.kill(pid, signal.SIGKILL)
        log.info("mps_stopped pid=%d code=%s", proc.pid, proc.returncode)

    def _ask(self, command: str, timeout: float) -> str:
        """Send one command to the daemon (its client mode reads them from stdin); its answer."""
        try:
            done = subprocess.run(
                [self.binary],
                input=f"{command}\n".encode(),
                env=self._env(),
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.decode("utf-8", "replace")
