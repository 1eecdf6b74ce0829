"""API keys on every inference route, in each caller's dialect, with the real engine (a second
gateway in front of the shared service's engine via --engine-url; no extra engine start)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.service import ServiceProcess
from tests.support.wait import wait_until

CASES = [
    ("/v1/rerank", {"query": "q", "documents": ["a", "b"]}, "cohere"),
    ("/v1/rerank", {"query": "q", "documents": ["a", "b"], "top_k": 1, "model": "rerank-2"}, "voyage"),
    ("/v2/rerank", {"model": "m", "query": "q", "documents": ["a", "b"]}, "cohere"),
    ("/rerank", {"query": "q", "texts": ["a", "b"]}, "tei"),
    ("/rerank", {"query": "q", "documents": ["a", "b"]}, "cohere"),  # the dialect of the body, as for any error
    ("/score", {"text_1": "q", "text_2": ["a", "b"]}, "openai"),
    ("/v1/score", {"queries": "q", "documents": ["a", "b"]}, "openai"),
]


@pytest.fixture(scope="module")
def keyfile(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("keys") / "keys.txt"
    path.write_text("# rotated keys\nfile-key-1\n")
    return path


@pytest.fixture(scope="module")
def guarded(service: ServiceProcess, keyfile) -> Iterator[ServiceProcess]:  # type: ignore[no-untyped-def]
    engine_url = service.health()[1]["engine"]["url"]
    with ServiceProcess(
        ["--engine-url", engine_url, "--api-key", "env-key", "--api-key-file", str(keyfile)], name="auth"
    ) as svc:
        yield svc


@pytest.mark.parametrize(("path", "body", "dialect"), CASES)
def test_every_inference_route_needs_a_key(guarded: ServiceProcess, path: str, body: dict, dialect: str) -> None:  # type: ignore[type-arg]
    url = f"{guarded.url}{path}"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "env-key"}):
        r = httpx.post(url, json=body, headers=headers, timeout=30)
        assert r.status_code == 401, (headers, r.text)
        err = r.json()
        assert err["message"] and err["detail"] == err["message"]
        if dialect == "tei":
            assert err["error"] == err["message"] and err["error_type"] == "Unauthorized"
        else:
            assert err["error"]["code"] == 401 and err["id"]
        assert "env-key" not in r.text
    for key in ("env-key", "file-key-1"):
        r = httpx.post(url, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60)
        assert r.status_code == 200, r.text


def test_models_needs_a_key_and_ops_are_public(guarded: ServiceProcess) -> None:
    assert httpx.get(f"{guarded.url}/v1/models").status_code == 401
    r = httpx.get(f"{guarded.url}/v1/models", headers={"Authorization": "Bearer env-key"})
    assert r.status_code == 200 and r.json()["data"][0]["id"]
    assert httpx.get(f"{guarded.url}/health").status_code == 200
    assert httpx.get(f"{guarded.url}/metrics").status_code == 200


def test_key_file_rotation_without_restart(guarded: ServiceProcess, keyfile) -> None:  # type: ignore[no-untyped-def]
    url = f"{guarded.url}/v1/rerank"
    body = {"query": "q", "documents": ["a"]}
    keyfile.write_text("file-key-2\n")
    wait_until(
        lambda: (
            httpx.post(url, json=body, headers={"Authorization": "Bearer file-key-2"}, timeout=30).status_code == 200
        ),
        10,
        0.3,
        message="the new key was never accepted",
    )
    assert httpx.post(url, json=body, headers={"Authorization": "Bearer file-key-1"}).status_code == 401


def test_keys_never_reach_the_log(guarded: ServiceProcess) -> None:
    log = guarded.log_tail(100000)
    assert "env-key" not in log and "file-key" not in log
