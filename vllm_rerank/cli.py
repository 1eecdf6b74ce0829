"""The `vllm-rerank` command: `serve` (the service) and `run-batch` (rerank a JSONL file)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS = ("serve", "run-batch")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: it lists the commands; each command parses its own flags."""
    parser = argparse.ArgumentParser(
        prog="vllm-rerank",
        description="vllm-rerank: a drop-in rerank API (Cohere, Jina, Voyage, TEI, vLLM, Pinecone, Mixedbread, "
        "NIM, Infinity dialects) in front of supervised vLLM engines.",
        epilog="`vllm-rerank COMMAND --help` lists a command's flags.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser(
        "serve",
        add_help=False,
        help="run the rerank service (the same as `python start_service.py`; every flag has an env var)",
    )
    commands.add_parser(
        "run-batch",
        add_help=False,
        help="rerank a JSONL file: -i IN.jsonl -o OUT.jsonl [serve flags]; starts its own service or uses "
        "--service-url; resumes an interrupted run",
    )
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vllm-rerank")
    except PackageNotFoundError:  # a checkout that was never installed
        return "(not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        build_parser().print_help(sys.stderr)
        return 2
    if args[0] not in COMMANDS:
        build_parser().parse_args(args)  # --help, --version, or an error that names the commands
        return 2
    command, rest = args[0], args[1:]
    if command == "serve":
        from vllm_rerank import service

        if argv is None:
            # service.main reads sys.argv itself so that it can start again without --api-key in the process list.
            sys.argv = [sys.argv[0], *rest]
            return service.main(prog="vllm-rerank serve", relaunch=[sys.executable, "-m", "vllm_rerank", "serve"])
        return service.main(rest, prog="vllm-rerank serve")
    from vllm_rerank import batch

    return batch.main(rest)


if __name__ == "__main__":
    sys.exit(main())
