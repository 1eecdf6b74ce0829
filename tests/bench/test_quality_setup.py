"""bench/quality.py's setup: both SciFact layouts load, and what is missing is said before any wait.

Synthetic three-document files in the two layouts; no SciFact data, no service."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def quality() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_quality", ROOT / "bench" / "quality.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(data: Path, queries: str, qrels: str) -> None:
    (data / Path(qrels).parent).mkdir(parents=True, exist_ok=True)
    (data / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": str(i), "title": f"t{i}", "text": f"x{i}"}) + "\n" for i in range(3))
    )
    (data / queries).write_text(
        json.dumps({"_id": "1", "text": "q one"}) + "\n" + json.dumps({"_id": "9", "text": "no judgement"}) + "\n"
    )
    (data / qrels).write_text("query-id\tcorpus-id\tscore\n1\t2\t1\n1\t0\t0\n")


@pytest.mark.parametrize(
    ("queries", "qrels"), [("queries-train.jsonl", "qrels-train.tsv"), ("queries.jsonl", "qrels/train.tsv")]
)
def test_both_layouts_load(quality: ModuleType, tmp_path: Path, queries: str, qrels: str) -> None:
    _write(tmp_path, queries, qrels)
    doc_ids, texts, qs, judged = quality.load_scifact(tmp_path)
    assert doc_ids == ["0", "1", "2"] and texts[2] == "t2 x2"
    assert qs == [("1", "q one")]  # queries without a relevant document are left out
    assert judged == {"1": {"2"}}


def test_missing_data_is_said_at_once(
    quality: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(quality, "missing_modules", list)
    monkeypatch.setattr(quality, "wait_ready", lambda *a: pytest.fail("waited for the service"))
    assert quality.main(["--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no SciFact train split" in err and "qrels/train.tsv" in err


def test_missing_modules_name_the_extra(
    quality: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(tmp_path, "queries.jsonl", "qrels/train.tsv")
    monkeypatch.setattr(quality, "missing_modules", lambda: ["bm25s"])
    monkeypatch.setattr(quality, "wait_ready", lambda *a: pytest.fail("waited for the service"))
    assert quality.main(["--data", str(tmp_path)]) == 2
    assert "bm25s not installed: .venv/bin/pip install -e '.[bench]'" in capsys.readouterr().err
