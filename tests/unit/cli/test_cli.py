"""The `vllm-rerank` command's dispatch (in-process; the installed command is tests/unit/test_package.py)."""

from __future__ import annotations

import pytest

from vllm_rerank.cli import main


def test_help_lists_both_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "serve" in out and "run-batch" in out


def test_no_command_prints_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "serve" in err and "run-batch" in err


def test_an_unknown_command_is_an_error_naming_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["serv"])
    assert done.value.code == 2
    assert "invalid choice: 'serv'" in capsys.readouterr().err


def test_serve_help_is_the_service_parser_under_its_own_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["serve", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: vllm-rerank serve") and "--max-num-seqs" in out and "--engine-url" in out


def test_run_batch_refuses_a_missing_input(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    assert main(["run-batch", "-i", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "out.jsonl")]) == 2
    assert "no input file" in capsys.readouterr().err
