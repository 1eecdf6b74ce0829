"""Check an engine's command line against the installed vLLM's own argument parser, starting nothing.

`parser_problem(args)` builds the parser `vllm serve` itself uses (`make_arg_parser` on a
`FlexibleArgumentParser`: vllm.entrypoints.launchers.cli_args in vLLM 0.32+,
vllm.entrypoints.openai.cli_args before) and parses `args` with it, so underscores, `--flag=value`,
JSON and dotted arguments are read exactly as the engine would read them. An unknown flag comes
back as one line with the nearest real flags ("did you mean --model?").

The parser needs `import vllm` (torch with it: seconds, and half a gigabyte), so the service runs
it in a short-lived child (`check_in_child`: this file run as a script; stdlib only at import)
and the long-lived supervisor never loads vLLM. Nothing is cached between runs: the check always
reads the vLLM that is installed now.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

__all__ = ["check_in_child", "explain", "parser_problem"]

_MARK = "@@vllm-rerank-flags "
_RUN = "import runpy, sys; runpy.run_path(sys.argv.pop(1), run_name='__main__')"
_PARSER_MODULES = ("vllm.entrypoints.launchers.cli_args", "vllm.entrypoints.openai.cli_args")


class _Rejected(Exception):
    pass


def _build_parser() -> argparse.ArgumentParser:
    """vLLM's serve parser. Raises: ImportError when no installed vLLM provides one."""
    import importlib

    try:
        flexible = importlib.import_module("vllm.utils.argparse_utils").FlexibleArgumentParser
    except (ImportError, AttributeError):  # vLLM before 0.11 kept it in vllm.utils
        flexible = importlib.import_module("vllm.utils").FlexibleArgumentParser
    for name in _PARSER_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        parser: argparse.ArgumentParser = module.make_arg_parser(flexible(prog="vllm serve"))
        return parser
    raise ImportError("no vLLM argument parser in " + ", ".join(_PARSER_MODULES))


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return sorted({o for action in parser._actions for o in action.option_strings if o.startswith("--")})


def explain(message: str, options: Sequence[str]) -> str:
    """One line for argparse's `message`: each unknown flag with the nearest known ones."""
    m = re.match(r"unrecognized arguments: (.*)", message)
    if not m:
        return f"vLLM rejects the engine arguments: {message}"
    parts = []
    for token in m.group(1).split():
        if not token.startswith("-"):
            continue
        flag = token.split("=", 1)[0]
        close = difflib.get_close_matches(flag.replace("_", "-"), options, n=2, cutoff=0.6)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        parts.append(f"{flag}{hint}")
    if not parts:
        return f"vLLM rejects the engine arguments: {message}"
    noun = "flag" if len(parts) == 1 else "flags"
    return f"unknown vLLM {noun} " + ", ".join(parts) + " (passed through to vLLM: check the spelling)"


def parser_problem(args: Sequence[str]) -> str | None:
    """In this process: None when vLLM's parser accepts `args`, else one line saying why not.

    Raises: ImportError when vLLM is not installed."""
    parser = _build_parser()

    def reject(message: str) -> NoReturn:
        raise _Rejected(message)

    def leave(status: int = 0, message: str | None = None) -> NoReturn:
        raise _Rejected(message or f"exit {status}")

    parser.error = reject  # type: ignore[method-assign]
    parser.exit = leave  # type: ignore[method-assign]
    try:
        parser.parse_args(list(args))
    except _Rejected as exc:
        return explain(str(exc), _options(parser))
    except (ValueError, TypeError) as exc:  # FlexibleArgumentParser's own checks (e.g. a bad --config)
        return f"vLLM rejects the engine arguments: {exc}"
    return None


def check_in_child(
    args: Sequence[str], *, python: str = sys.executable, environ: Mapping[str, str], timeout: float = 120.0
) -> tuple[bool, str | None]:
    """(checked, problem): run `parser_problem(args)` in a child Python (`python`, the engine's).
    `checked` is False when it could not tell (no vLLM there, or the child failed or ran out of time):
    the engine's own start will then say."""
    if "--help" in args or "-h" in args:
        return False, None
    env = {k: v for k, v in environ.items() if not k.startswith(("VLLM_RERANK_", "RERANK_"))}
    env.setdefault("VLLM_NO_USAGE_STATS", "1")
    try:
        done = subprocess.run(
            # -P and run_path: this file's directory (engine/, whose config.py, logs.py... would shadow
            # other modules) is not put on the child's sys.path.
            [python, "-P", "-c", _RUN, os.path.abspath(__file__), *args],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except (subprocess.TimeoutExpired, OSError):
        return False, None
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(_MARK):
            answer: dict[str, Any] = json.loads(line[len(_MARK) :])
            return bool(answer.get("checked")), answer.get("problem")
    return False, None


def _main(args: list[str]) -> int:
    try:
        problem = parser_problem(args)
    except ImportError as exc:
        print(_MARK + json.dumps({"checked": False, "problem": None, "why": str(exc)}), flush=True)
        return 0
    print(_MARK + json.dumps({"checked": True, "problem": problem}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
