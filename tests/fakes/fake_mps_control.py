#!/usr/bin/env python3
"""A stand-in for nvidia-cuda-mps-control, for machines without an NVIDIA driver (CI): fault injection
and lifecycle only, no GPU. Tests copy it onto PATH under the real name.

    nvidia-cuda-mps-control -f   the daemon: makes $CUDA_MPS_PIPE_DIRECTORY/control, starts one "server"
                                 child (a sleeping process named like the real one), and runs until asked
                                 to quit, then ends its server and removes the control file
    nvidia-cuda-mps-control      the client: reads one command from stdin (get_server_list, quit)

FAKE_MPS_FAIL=exit makes the daemon exit at once with code 3; FAKE_MPS_FAIL=silent makes it run without
ever making its control file. FAKE_MPS_ORPHAN=1 makes its server ignore the quit (it outlives the daemon).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    pipe = Path(os.environ["CUDA_MPS_PIPE_DIRECTORY"])
    if sys.argv[1:] == ["-f"]:
        return daemon(pipe)
    command = sys.stdin.readline().strip()
    if command == "get_server_list":
        server = pipe / "server.pid"
        print(server.read_text().strip() if server.exists() else "")
        return 0
    if command == "quit":
        (pipe / "quit").touch()
        return 0
    print(f"unknown command {command!r}", file=sys.stderr)
    return 1


def daemon(pipe: Path) -> int:
    fail = os.environ.get("FAKE_MPS_FAIL")
    if fail == "exit":
        return 3
    (pipe / "quit").unlink(missing_ok=True)
    # the real daemon starts its server on the first client; starting it at once keeps the fake simple
    # named as the real one is (a process's name is its executable's file name): a link to Python
    exe = pipe / "nvidia-cuda-mps-server"
    exe.unlink(missing_ok=True)
    exe.symlink_to(sys.executable)
    code = "import time\nwhile True: time.sleep(1)"
    server = subprocess.Popen([str(exe), "-c", code], start_new_session=True)  # not in the daemon's group
    (pipe / "server.pid").write_text(str(server.pid))
    if fail != "silent":
        (pipe / "control").touch()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while not (pipe / "quit").exists():
            time.sleep(0.02)
    finally:
        if not os.environ.get("FAKE_MPS_ORPHAN"):
            server.kill()
            server.wait()
        (pipe / "control").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
