"""The dependency rules, enforced: compat imports neither engine nor gateway (and does no I/O);
engine knows no dialect (imports neither compat nor gateway); start_service imports gateway and
engine only; FastAPI/Starlette live in gateway only."""

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


def test_start_service_imports_only_gateway_and_engine() -> None:
    project = {"gateway", "engine", "compat"}
    assert _imports(ROOT / "start_service.py") & project <= {"gateway", "engine"}
