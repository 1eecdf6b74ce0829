"""vllm-rerank's one top-level name: the `vllm-rerank` command and the home of the four packages.

The code is four packages, `compat`, `core`, `engine` and `gateway`, which import each other by
those names (`from engine.client import EngineClient`). A checkout keeps them at the top of the
repository; the wheel installs them as `vllm_rerank/compat/`, ... so that nothing generic lands
in site-packages. Importing `vllm_rerank` puts a finder first on `sys.meta_path` that resolves
exactly those four top-level names to the folders next to it (wheel) or beside it (checkout or
editable install). One name per file, so one module object per file; no sys.path entry, no
`.pth` file: a process that never imports `vllm_rerank` sees no `gateway` of ours. Every entry
point (the console script, `python -m vllm_rerank`, start_service.py, the uvicorn workers through
`vllm_rerank.asgi`) imports this package first. README.md, "Layout", gives the reasoning.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

__all__ = ["PACKAGES", "ROOT"]

PACKAGES = frozenset({"compat", "core", "engine", "gateway"})

_HERE = Path(__file__).resolve().parent
# The wheel: vllm_rerank/gateway/; a checkout or an editable install: gateway/ beside vllm_rerank/.
ROOT = _HERE if (_HERE / "gateway" / "__init__.py").is_file() else _HERE.parent


class _PackageFinder(importlib.abc.MetaPathFinder):
    """Finds the four top-level packages under ROOT; their submodules then load from the package's
    own `__path__` as usual."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if path is None and fullname in PACKAGES:
            return importlib.machinery.PathFinder.find_spec(fullname, [str(ROOT)])
        return None


if not any(isinstance(f, _PackageFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _PackageFinder())
