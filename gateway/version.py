"""The service's version: the installed package's, or the source tree's (pyproject.toml) when run from a
checkout that is not installed."""

from __future__ import annotations

from importlib import metadata

__all__ = ["VERSION"]


def _version() -> str:
    try:
        return metadata.version("vllm-rerank")
    except metadata.PackageNotFoundError:
        return "0.1.0"


VERSION = _version()
