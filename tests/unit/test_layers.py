"""The dependency rules, enforced: compat imports neither engine nor gateway (and does no I/O);
engine knows no dialect (imports neither compat nor gateway); the commands (vllm_rerank/) import
gateway and engine only; FastAPI/Starlette live in gateway only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("compat", {"engine", "gateway", "fastapi", "starlette", "httpx", "aiohttp", "os", "socket", "subprocess"}),
        ("engine", {"compat", "gateway", "fastapi", "starlette"}),
    ],
)
def test_layers(package: str, forbidden: set[str]) -> None:
    bad = {str(p.relative_to(ROOT)): sorted(_imports(p) & forbidden) for p in _files(package)}
    assert not {k: v for k, v in bad.items() if v}


def test_only_the_cli_reads_the_environment_in_gateway() -> None:
    readers = [p.name for p in _files("gateway") if "os.environ" in p.read_text()]
    # app.py: the worker factory reads what start_service wrote; metrics.py: prometheus_client's own
    # PROMETHEUS_MULTIPROC_DIR convention.
    assert sorted(readers) == ["app.py", "cli.py", "metrics.py"]


def test_the_commands_import_only_gateway_and_engine() -> None:
    """start_service.py and vllm_rerank/ (serve, run-batch) sit on top: gateway and engine, nothing below."""
    project = {"gateway", "engine", "compat", "core"}
    assert _imports(ROOT / "start_service.py") & project == set()
    for path in _files("vllm_rerank"):
        assert _imports(path) & project <= {"gateway", "engine"}, path
