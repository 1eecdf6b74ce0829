"""What `pip install .` installs: one top-level package, `vllm_rerank`, and the `vllm-rerank` command.

The wheel is built (no build isolation: no network) from a copy of what .dockerignore lets into the
Docker build context, so the images' `pip install .` is covered too, and the checkout gets no
build/ folder. It is installed without its dependencies into a throwaway venv that sees this
venv's site-packages through a `.pth` line (a directory named in a .pth file gets no .pth
processing of its own, so this venv's editable install of the checkout stays invisible). The
commands then run from a directory outside the checkout, so only the installed copy can answer.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("compat", "core", "engine", "gateway")


def _docker_context(into: Path) -> Path:
    """The files .dockerignore lets through (its `*` + `!path` allow-list), without caches."""
    allowed = [
        line[1:].strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    for name in allowed:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, into / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, into / name)
    return into


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    source = _docker_context(tmp_path_factory.mktemp("context"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=180,
        env={"PIP_NO_INDEX": "1", "TMPDIR": str(build), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    (whl,) = out.glob("vllm_rerank-*.whl")
    return whl


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=60)
    site = Path(
        subprocess.run(
            [str(env / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (site / "project-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(env / "bin" / "python"),
            "install",
            "--no-deps",
            "-q",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return env


def test_the_wheel_has_one_top_level_package_and_the_command(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"vllm_rerank", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    assert not top & {*PACKAGES, "start_service.py"}
    for package in PACKAGES:
        assert f"vllm_rerank/{package}/__init__.py" in names
    assert "vllm_rerank/engine/templates/qwen3_reranker.jinja" in names
    (entry_points,) = (n for n in names if n.endswith("entry_points.txt"))
    assert "vllm-rerank = vllm_rerank.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def _run(venv: Path, *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / argv[0]), *argv[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(cwd)},
    )


def test_the_installed_command(venv: Path, tmp_path: Path) -> None:
    top = _run(venv, "vllm-rerank", "--help", cwd=tmp_path)
    assert top.returncode == 0, top.stderr
    assert "serve" in top.stdout and "run-batch" in top.stdout
    serve = _run(venv, "vllm-rerank", "serve", "--help", cwd=tmp_path)
    assert serve.returncode == 0, serve.stderr
    assert serve.stdout.startswith("usage: vllm-rerank serve") and "--max-num-seqs" in serve.stdout
    batch = _run(venv, "vllm-rerank", "run-batch", "--help", cwd=tmp_path)
    assert batch.returncode == 0, batch.stderr
    assert "--input" in batch.stdout and "--output" in batch.stdout


def test_the_packages_resolve_inside_vllm_rerank_only(venv: Path, tmp_path: Path) -> None:
    """Importing vllm_rerank makes `gateway` etc. resolve to its own copies; without it there is no `gateway`."""
    code = (
        "import importlib.util, vllm_rerank, gateway.app, engine, compat, core;"
        "print(gateway.app.__file__); print(engine.__file__)"
    )
    inside = _run(venv, "python", "-c", code, cwd=tmp_path)
    assert inside.returncode == 0, inside.stderr
    site = Path(vllm_site := inside.stdout.split()[0]).parents[2]
    assert Path(vllm_site).relative_to(site) == Path("vllm_rerank/gateway/app.py")
    assert Path(inside.stdout.split()[1]).relative_to(site) == Path("vllm_rerank/engine/__init__.py")
    alone = _run(venv, "python", "-c", "import gateway", cwd=tmp_path)
    assert alone.returncode != 0 and "No module named 'gateway'" in alone.stderr
