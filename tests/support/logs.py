"""Reading a service's log in tests."""

from __future__ import annotations

import json
from typing import Any

import pytest

__all__ = ["json_lines"]


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every non-blank line of `text` as a JSON object; fails the test at the first line that is not one."""
    objects = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
        if not isinstance(value, dict):
            pytest.fail(f"not a JSON object: {line!r}")
        objects.append(value)
    return objects
