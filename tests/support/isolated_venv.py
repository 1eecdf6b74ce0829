"""A client library that cannot share the main test venv (conflicting pins, or an older release to
test as well) gets its own venv under the repo root: created once, reused (a `.ready` stamp)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

__all__ = ["isolated_python"]


def isolated_python(venv: Path, requirement: str) -> Path:
    """The venv's python, with `requirement` installed. Fails the test when it cannot be installed."""
    py = venv / "bin" / "python"
    stamp = venv / ".ready"
    if not stamp.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        proc = subprocess.run(
            [str(py), "-m", "pip", "install", "-q", requirement], capture_output=True, text=True, timeout=900
        )
        if proc.returncode != 0:
            pytest.fail(f"cannot install {requirement}: {proc.stderr[-2000:]}")
        stamp.touch()
    return py
