"""One engine child process: spawn in its own session, forward its log, stop the whole group.

The child runs in a new session (its own process group), so SIGTERM/SIGKILL reach vLLM's
EngineCore and worker processes too. On Linux the child also gets PR_SET_PDEATHSIG, so even
a SIGKILLed service does not leave its engine behind.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Container, Iterable

from engine.config import EngineConfig
from engine.logs import EngineLogReader, shown

__all__ = ["EngineProcess", "classify_failure", "die_with_parent", "exit_cause", "group_shm_files", "unlink_shm"]

log = logging.getLogger("vllm_rerank.engine")

_FAILURES: list[tuple[str, re.Pattern[str]]] = [
    ("port_in_use", re.compile(r"Address already in use|Errno 98")),
    (
        "out_of_memory",
        re.compile(
            r"No available memory for the cache blocks|KV cache is needed|OutOfMemoryError|"
            r"CUDA out of memory|Cannot allocate memory|MemoryError"
        ),
    ),
    ("bad_flag", re.compile(r"error: unrecognized arguments|error: argument|: error: ")),
    (
        "bad_model",
        re.compile(
            r"HFValidationError|Repo id must|is not a local folder|does not appear to have a file named|"
            r"Can't load the configuration|No such file or directory: .*config|LocalEntryNotFoundError|"
            r"We couldn't connect to|OfflineModeIsEnabled|Invalid repository ID|not a valid model"
        ),
    ),
]


# Lines that mention an error without saying what it is: pydantic's help link, traceback frames.
_NOISE = re.compile(r"For further information visit|errors\.pydantic\.dev|^\s*File \"|^\s*Traceback|^\s*\^+\s*$")
# pydantic's own line for a failed check of vLLM's config: "  Value error, <what> [type=value_error, ...]".
_PYDANTIC_VALUE = re.compile(r"(?:Value|Assertion) error, (.+?)(?: \[type=[^\]]*\])?\s*$")


def classify_failure(lines: list[str]) -> tuple[str, str]:
    """(cause, one-line explanation) from the tail of a failed engine's log: the line that says what
    went wrong, not a help link or the last frame of a traceback."""
    for cause, pattern in _FAILURES:
        for line in reversed(lines):
            if pattern.search(line):
                return cause, line.strip()[:400]
    for line in reversed(lines):
        m = _PYDANTIC_VALUE.search(line)
        if m:
            return "bad_config", m.group(1).strip()[:400]
    for line in reversed(lines):
        if re.search(r"Error|error", line) and not _NOISE.search(line):
            return "engine_error", line.strip()[:400]
    return "exited", (lines[-1].strip()[:400] if lines else "no output")


def exit_cause(rc: int | None, lines_since: list[str]) -> tuple[str, str]:
    """(cause, one line) for an engine that exited after it was ready: the signal that killed it,
    else what it logged since it became ready (never a line from its start-up)."""
    if rc is not None and rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return "signal", f"killed by {name}"
    if not lines_since:
        return "exited", f"exit code {rc} with no output since it was ready"
    return classify_failure(lines_since)


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def die_with_parent(parent_pid: int | None) -> None:
    """Make this process get SIGTERM when its parent dies (Linux PR_SET_PDEATHSIG); if the parent is
    already gone (it died before this call), SIGTERM ourselves now."""
    _set_pdeathsig()
    if parent_pid and os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGTERM)


_SHM = "/dev/shm/"


def unlink_shm(paths: Iterable[str], keep: Container[str] = ()) -> int:
    """Remove shared-memory files a killed group left (from `group_shm_files`, taken before the kill);
    how many went. Only files directly in /dev/shm (vLLM's psm_*, sem.*) whose name is not in `keep`
    (what was there before the group started): a model, a Hugging Face cache or a runtime dir kept
    on /dev/shm is mapped or open too."""
    removed = 0
    for path in paths:
        if os.path.dirname(path) != _SHM.rstrip("/") or os.path.basename(path) in keep:
            continue
        with contextlib.suppress(OSError):  # gone, another user's, a directory: left as it is
            os.unlink(path)
            removed += 1
    return removed


def group_shm_files(pgid: int, proc_root: str = "/proc") -> set[str]:
    """The /dev/shm files (POSIX shared memory, named semaphores) that the processes of group `pgid`
    have mapped or open. vLLM unlinks its message-queue segments on a clean exit; a SIGKILLed
    EngineCore or worker cannot, and every such kill leaves hundreds of MB of segments behind.
    Also the named semaphores loky (joblib) makes in vLLM's CPU worker, `sem.loky-PID-*`: they carry
    their maker's pid, are not kept open, and outlive even a clean stop."""
    found: set[str] = set()
    members: list[str] = []
    try:
        pids = [d for d in os.listdir(proc_root) if d.isdigit()]
    except OSError:
        return found
    for pid in pids:
        try:
            with open(f"{proc_root}/{pid}/stat", "rb") as stat:
                # "pid (comm) state ppid pgrp ...": comm may hold spaces or parentheses, split after the last ")"
                fields = stat.read().rsplit(b")", 1)[1].split()
                if int(fields[2]) != pgid or fields[0] in (b"Z", b"X"):
                    continue  # another group's, or dead (a zombie maps and holds nothing, and may never be reaped)
            members.append(pid)
            with open(f"{proc_root}/{pid}/maps") as maps:
                found.update(line[line.index(_SHM) :].strip() for line in maps if _SHM in line)
            for fd in os.listdir(f"{proc_root}/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"{proc_root}/{pid}/fd/{fd}")
                    if target.startswith(_SHM):
                        found.add(target)
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to read
    if members:
        made_by = tuple(f"sem.loky-{pid}-" for pid in members)
        found.update(_SHM + name for name in _shm_entries() if name.startswith(made_by))
    return {path for path in found if not path.endswith(" (deleted)")}  # already unlinked: nothing to do


def _shm_entries() -> frozenset[str]:
    """The names directly in /dev/shm now (empty when it cannot be listed)."""
    try:
        return frozenset(os.listdir(_SHM))
    except OSError:
        return frozenset()


class EngineProcess:
    """A running (or finished) `vllm serve` child for one `EngineConfig`."""

    def __init__(self, config: EngineConfig, *, log_prefix: str | None = None, tail_lines: int = 200) -> None:
        self.config = config
        self.prefix = log_prefix or f"[{config.name}]"
        self.tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
        self.lines = 0  # lines read since start (the tail keeps the last `tail_lines`)
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._log = EngineLogReader()
        self.started_at = 0.0
        self._shm_before: frozenset[str] = frozenset()  # /dev/shm's entries when the group started
        self._shm_noted: set[str] = set()  # what the group mapped or held open when note_shm() last looked

    @property
    def stage(self) -> str:
        """The furthest start-up stage its output has shown (engine.logs)."""
        return self._log.stage

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        if self.config.uds:  # a socket file left by a previous (crashed) run would make the bind fail
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.config.uds)
        argv = self.config.argv()
        log.info("engine_starting name=%s cmd=%s", self.config.name, " ".join(self.config.redacted_argv()))
        self.tail.clear()
        self.lines = 0
        self._log = EngineLogReader()
        self.started_at = time.monotonic()
        self._shm_before = _shm_entries()  # these are not the group's to remove, whatever it maps
        self._shm_noted = set()
        self._proc = subprocess.Popen(
            argv,
            env=self.config.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_set_pdeathsig,  # noqa: PLW1509 - only prctl(PDEATHSIG): async-signal-safe
        )
        self._reader = threading.Thread(target=self._forward, name=f"{self.config.name}-log", daemon=True)
        self._reader.start()

    def _forward(self) -> None:
        """Re-log each line at the level the engine wrote it (a traceback at ERROR), keeping only those
        at or above `--engine-log` and the start-up progress; the tail keeps every line."""
        assert self._proc is not None and self._proc.stdout is not None
        out = logging.getLogger("vllm_rerank.engine.log")
        threshold = self.config.log_threshold
        for raw in iter(self._proc.stdout.readline, b""):
            text = raw.decode("utf-8", "replace").rstrip()
            if text:
                self.tail.append(text)
                self.lines += 1
                line = self._log.read(text)
                if shown(line, threshold):
                    out.log(max(line.level, logging.INFO) if line.progress else line.level, "%s %s", self.prefix, text)

    def elapsed(self) -> float:
        """Seconds since the process was started."""
        return time.monotonic() - self.started_at

    def poll(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def flush_log(self, timeout: float = 2.0) -> None:
        if self._reader:
            self._reader.join(timeout)

    def _killpg(self, sig: int) -> None:
        if self._proc is None:
            return
        try:
            os.killpg(self._proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def note_shm(self) -> None:
        """Note the /dev/shm files the group maps or holds open now (the supervisor calls this once the
        engine is ready, when its message queues exist), so that the stop can remove them even if the
        group died by itself first (a crash, an OOM kill) and /proc no longer shows them."""
        if self._proc is not None:
            self._shm_noted |= group_shm_files(self._proc.pid)

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM the group, wait up to `grace`, then SIGKILL the group. Idempotent."""
        if self._proc is None:
            return None
        # before the group is gone /proc still shows what it maps; what it mapped when ready was noted
        shm = group_shm_files(self._proc.pid) | self._shm_noted
        if self._proc.poll() is None:
            self._killpg(signal.SIGTERM)
            try:
                self._proc.wait(grace)
            except subprocess.TimeoutExpired:
                log.warning("engine_kill name=%s reason=grace_expired grace=%.1fs", self.config.name, grace)
        # The leader may be gone while EngineCore/workers linger: always sweep the group.
        self._killpg(signal.SIGKILL)
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self.flush_log(1.0)
        self._unlink_leftovers(shm)
        return self._proc.returncode

    def _unlink_leftovers(self, shm: set[str], settle: float = 5.0) -> None:
        """Remove the shared-memory files a killed group could not clean up itself, once no process of the
        group is left (a survivor still using one keeps it). The group was just SIGKILLed: its members
        may take a moment to go (an EngineCore whose API server died first was still there when this
        looked at once, and its segments stayed), so wait up to `settle` seconds for them."""
        if not shm:
            return
        pgid = self._proc.pid if self._proc else -1
        deadline = time.monotonic() + settle
        while group_shm_files(pgid):
            if time.monotonic() >= deadline:
                log.warning("engine_cleanup name=%s shm_files_kept=%d reason=group_alive", self.config.name, len(shm))
                return
            time.sleep(0.05)
        removed = unlink_shm(shm, keep=self._shm_before)
        if removed:
            log.info("engine_cleanup name=%s shm_files_removed=%d", self.config.name, removed)
