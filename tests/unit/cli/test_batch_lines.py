"""run-batch's file handling without a service: line validation, the resume point and a torn last line."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from vllm_rerank.batch import BatchLine, LineError, _parse, resume_point


def test_a_line_becomes_a_cohere_v2_request() -> None:
    line = _parse(b'{"query": "q", "documents": ["a", {"text": "b"}], "id": 7, "top_n": 1, "instruction": "i"}\n')
    assert line == BatchLine(query="q", documents=["a", {"text": "b"}], id=7, top_n=1, instruction="i")  # type: ignore[list-item]
    assert line.body("m") == {"model": "m", "query": "q", "documents": ["a", "b"], "top_n": 1, "instruction": "i"}
    assert _parse(b'{"query": "q", "documents": ["a"]}').body("m") == {"model": "m", "query": "q", "documents": ["a"]}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\n", "empty line"),
        (b"{not json\n", "not JSON"),
        (b"[1, 2]\n", "not a JSON object: list"),
        (b'{"documents": ["a"]}\n', "query: Field required"),
        (b'{"query": "q"}\n', "documents: Field required"),
        (b'{"query": "q", "documents": []}\n', "documents: List should have at least 1 item"),
        (b'{"query": "q", "documents": ["a"], "top_n": 0}\n', "top_n: Input should be greater than or equal to 1"),
        (b'{"query": "q", "documents": ["a"], "topn": 2}\n', "topn: Extra inputs are not permitted"),
        (b'{"query": "q", "documents": [3]}\n', "documents.0"),
    ],
)
def test_bad_lines_name_the_reason(raw: bytes, message: str) -> None:
    with pytest.raises(LineError) as err:
        _parse(raw)
    assert message in str(err.value)


def _lines(n: int) -> bytes:
    return b"".join(
        orjson.dumps({"id": i, "results": [{"index": 0, "relevance_score": 0.5}]}) + b"\n" for i in range(n)
    )


def test_resume_point_counts_complete_lines(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    assert resume_point(out).lines == 0 and not out.exists()
    out.write_bytes(_lines(3))
    point = resume_point(out)
    assert (point.lines, point.torn_bytes) == (3, 0)
    assert out.read_bytes() == _lines(3)


@pytest.mark.parametrize("tail", [b'{"id": 3, "resu', b'{"id": 3, "results": []}', b"garbage\n"])
def test_a_torn_last_line_is_cut_off(tmp_path: Path, tail: bytes) -> None:
    """A run killed mid-write leaves at most one torn line: no newline yet, or not JSON."""
    out = tmp_path / "out.jsonl"
    out.write_bytes(_lines(3) + tail)
    point = resume_point(out)
    assert (point.lines, point.torn_bytes) == (3, len(tail))
    assert out.read_bytes() == _lines(3)


@pytest.mark.parametrize("status", [401, 403, 404])
def test_a_wrong_key_url_or_model_stops_the_run_instead_of_failing_every_line(status: int) -> None:
    """A bad key (--service-url with a wrong RERANK_BATCH_API_KEY) or an unknown --rerank-model is the same
    answer for every line: the run stops with the output a valid prefix, rather than writing an error line
    for each input line (which a resumed run would take as done)."""
    import argparse
    import asyncio
    import io

    import httpx

    from vllm_rerank.batch import BatchAbort, _Run

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"message": "invalid api token"})

    run = _Run(argparse.Namespace(retries=0), url="http://svc", key="wrong", out=io.BytesIO(), errors=None)

    async def main() -> None:
        async with httpx.AsyncClient(base_url="http://svc", transport=httpx.MockTransport(answer)) as client:
            await run.rerank(client, BatchLine(query="q", documents=["a"]), "m")

    with pytest.raises(BatchAbort, match=str(status)):
        asyncio.run(main())
