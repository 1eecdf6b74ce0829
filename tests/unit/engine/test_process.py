"""EngineProcess stops its whole process group; failures are classified from the log tail."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.process import EngineProcess, classify_failure, group_shm_files
from tests.support.script_engine import script_engine
from tests.support.wait import wait_until


@pytest.mark.parametrize(
    ("line", "cause"),
    [
        ("OSError: [Errno 98] Address already in use", "port_in_use"),
        ("ValueError: No available memory for the cache blocks. Try increasing", "out_of_memory"),
        ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB", "out_of_memory"),
        ("api_server.py: error: unrecognized arguments: --task score", "bad_flag"),
        ("huggingface_hub.errors.HFValidationError: Repo id must be in the form", "bad_model"),
        ("OSError: /nope is not a local folder and is not a valid model identifier", "bad_model"),
    ],
)
def test_classify_failure(line: str, cause: str) -> None:
    assert classify_failure(["noise", line, "Traceback tail"])[0] == cause


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def test_stop_kills_the_whole_group_even_if_sigterm_is_ignored(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pidfile = tmp_path / "grandchild"
    script = (
        "import os, signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)'\n"
        "p = subprocess.Popen([sys.executable, '-c', child])\n"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
        "print('started', flush=True)\n"
        "time.sleep(300)\n"
    )
    config = script_engine(script)
    proc = EngineProcess(config)
    proc.start()
    for _ in range(100):
        if pidfile.exists() and pidfile.read_text():
            break
        time.sleep(0.05)
    grandchild = int(pidfile.read_text())
    assert proc.alive() and _alive(grandchild)
    t0 = time.monotonic()
    proc.stop(grace=0.5)
    assert time.monotonic() - t0 < 5
    time.sleep(0.2)
    assert not proc.alive() and not _alive(grandchild)
    assert any("started" in line for line in proc.tail)


def test_a_failed_config_check_shows_vllms_message_not_the_help_link() -> None:
    tail = [
        "pydantic_core._pydantic_core.ValidationError: 1 validation error for ModelConfig",
        (
            "  Value error, User-specified max_model_len (8192) is greater than the derived max_model_len "
            "(max_position_embeddings=2048 in model's config.json). [type=value_error, input_value=ArgsKwargs((), "
            "{'model': '/m'}), input_type=ArgsKwargs]"
        ),
        "    For further information visit https://errors.pydantic.dev/2.14/v/value_error",
    ]
    cause, line = classify_failure(tail)
    assert cause == "bad_config"
    assert line.startswith("User-specified max_model_len (8192) is greater than the derived max_model_len")
    assert "pydantic.dev" not in line and "[type=" not in line


def test_traceback_frames_are_not_the_cause() -> None:
    tail = ["RuntimeError: Engine core initialization failed.", '  File "/x/error_handler.py", line 3, in f']
    assert classify_failure(tail) == ("engine_error", "RuntimeError: Engine core initialization failed.")


def test_an_engine_killed_by_a_signal_says_so_not_an_old_log_line() -> None:
    from engine.process import exit_cause

    assert exit_cause(-9, []) == ("signal", "killed by SIGKILL")
    assert exit_cause(-15, ["RuntimeError: old start-up noise"]) == ("signal", "killed by SIGTERM")
    assert exit_cause(1, []) == ("exited", "exit code 1 with no output since it was ready")
    assert exit_cause(1, ["ValueError: boom"])[1] == "ValueError: boom"


def _started(script: str, ready: Path) -> EngineProcess:
    """An EngineProcess running `script`, returned once the script has run (it then sleeps); stopped if
    it never gets there."""
    script += f"open({str(ready)!r}, 'w').write('ok')\ntime.sleep(300)\n"
    proc = EngineProcess(script_engine(script))
    proc.start()
    try:
        wait_until(lambda: ready.exists() and ready.read_text() == "ok", 30, message="the child never started")
    except BaseException:
        proc.stop(grace=0.2)
        raise
    return proc


def test_a_killed_group_leaves_no_shared_memory_behind(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """vLLM's message queues live in /dev/shm; a SIGKILLed EngineCore cannot unlink them, so the stop
    does: every /dev/shm file the group mapped or held open, and nothing else."""
    import _posixshmem  # type: ignore[import-not-found]  # CPython's own shm_open, no resource tracker

    tag = f"vr-test-{os.getpid()}-{time.monotonic_ns()}"
    namefile = tmp_path / "names"
    script = (
        "import _posixshmem, mmap, os, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"  # so that only the SIGKILL sweep ends it
        "held = []\n"
        "for kind in ('mapped', 'open'):\n"
        f"    name = '/{tag}-' + kind\n"
        "    fd = _posixshmem.shm_open(name, os.O_CREAT | os.O_RDWR, 0o600)\n"
        "    os.ftruncate(fd, 4096)\n"
        "    held.append(mmap.mmap(fd, 4096) if kind == 'mapped' else fd)\n"
    )
    other = f"/{tag}-not-ours"
    fd = _posixshmem.shm_open(other, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    proc = _started(script, namefile)
    try:
        ours = {f"/dev/shm/{tag}-mapped", f"/dev/shm/{tag}-open"}
        assert all(os.path.exists(p) for p in ours)
        proc.stop(grace=0.2)
        assert not any(os.path.exists(p) for p in ours)
        assert os.path.exists(f"/dev/shm{other}")  # another process's segment is left alone
    finally:
        proc.stop(grace=0.2)
        _posixshmem.shm_unlink(other)


def test_a_group_that_died_by_itself_leaves_no_shared_memory_behind(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A crash or an OOM kill ends the group before any stop: /proc shows nothing then, so the stop
    removes what the group had mapped when it was noted (at READY), and only files made after it started."""
    import _posixshmem  # type: ignore[import-not-found]

    tag = f"vr-test-{os.getpid()}-{time.monotonic_ns()}"
    segment = f"/dev/shm/{tag}-queue"
    foreign = f"/dev/shm/sem.loky-{os.getpid()}-{tag}"  # named after this process: not the group's
    namefile = tmp_path / "names"
    script = (
        "import _posixshmem, mmap, os, time\n"
        f"fd = _posixshmem.shm_open('/{tag}-queue', os.O_CREAT | os.O_RDWR, 0o600)\n"
        "os.ftruncate(fd, 4096)\n"
        "held = mmap.mmap(fd, 4096)\n"
        # loky's named semaphore in vLLM's CPU worker: neither mapped nor open, named after its maker
        f"open(f'/dev/shm/sem.loky-{{os.getpid()}}-{tag}', 'w').close()\n"
    )
    open(foreign, "w").close()
    proc = _started(script, namefile)
    assert proc.pid is not None
    semaphore = f"/dev/shm/sem.loky-{proc.pid}-{tag}"
    try:
        proc.note_shm()
        os.killpg(proc.pid, signal.SIGKILL)  # dies by itself, as far as the stop can tell
        wait_until(lambda: proc.poll() is not None, 30, message="the killed group is still there")
        assert os.path.exists(segment) and os.path.exists(semaphore)  # nobody unlinked them
        proc.stop(grace=0.2)
        assert not os.path.exists(segment) and not os.path.exists(semaphore)
        assert os.path.exists(foreign)
    finally:
        proc.stop(grace=0.2)
        with contextlib.suppress(FileNotFoundError):
            _posixshmem.shm_unlink(f"/{tag}-queue")
        for path in (semaphore, foreign):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def test_the_stop_removes_no_file_the_group_only_used(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A model, a Hugging Face cache or a runtime dir kept on /dev/shm is mapped or open by the engine
    too: a file that was there before the engine started, or one in a folder under /dev/shm, is not
    one of its leftover segments and survives the stop."""
    tag = f"vr-test-{os.getpid()}-{time.monotonic_ns()}"
    model = f"/dev/shm/{tag}-model.gguf"  # there before the engine: a model file the engine maps
    folder = f"/dev/shm/{tag}-hf"
    cached = f"{folder}/model.safetensors"  # made by the engine, in a cache folder on /dev/shm
    segment = f"/dev/shm/{tag}-segment"  # made by the engine, directly in /dev/shm: its own
    with open(model, "wb") as f:
        f.write(b"\0" * 4096)
    namefile = tmp_path / "names"
    script = (
        "import mmap, os, signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "held = []\n"
        f"os.makedirs({folder!r}, exist_ok=True)\n"
        f"for path in ({model!r}, {cached!r}, {segment!r}):\n"
        "    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)\n"
        "    os.ftruncate(fd, 4096)\n"
        "    held.append(mmap.mmap(fd, 4096))\n"
    )
    proc = _started(script, namefile)
    try:
        proc.stop(grace=0.2)
        assert os.path.exists(model)
        assert os.path.exists(cached)
        assert not os.path.exists(segment)
    finally:
        proc.stop(grace=0.2)
        for path in (model, cached, segment):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def test_a_zombie_in_the_group_counts_as_gone(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A member that died and was not reaped (a container whose PID 1 never reaps) maps nothing and
    runs nothing: its loky semaphore is not "in use", so the stop's wait for the group does not hang
    on it and the cleanup still happens."""
    tag = f"vr-test-{os.getpid()}-{time.monotonic_ns()}"
    pidfile = tmp_path / "zombie"
    script = (
        "import os, sys, time\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        f"    open(f'/dev/shm/sem.loky-{{os.getpid()}}-{tag}', 'w').close()\n"
        "    os._exit(0)\n"
        f"open({str(pidfile)!r}, 'w').write(str(child))\n"
        "time.sleep(60)\n"  # never reaps the child
    )
    leader = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    zombie = 0

    def state() -> bytes:
        with open(f"/proc/{zombie}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0]

    try:
        wait_until(lambda: pidfile.exists() and pidfile.read_text().isdigit(), 30, message="no child")
        zombie = int(pidfile.read_text())
        wait_until(lambda: state() == b"Z", 30, message="the child never became a zombie")
        semaphore = f"/dev/shm/sem.loky-{zombie}-{tag}"
        assert os.path.exists(semaphore)
        assert semaphore not in group_shm_files(leader.pid)
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait(30)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"/dev/shm/sem.loky-{zombie}-{tag}")
