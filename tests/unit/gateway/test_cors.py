"""CORS on the gateway: preflights answered before auth, every answer (errors too) carries the headers,
and vLLM's HTTP-server flags are read as the gateway's settings (or refused), never passed to the engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import yaml
from starlette.testclient import TestClient

from engine import EngineRegistry
from engine.transport import CallableTransport
from gateway.app import create_app
from gateway.cli import parse_settings
from gateway.settings import Settings, SettingsError
from gateway.topology import engine_configs, plan_topology
from tests.unit.engines import snapshot

ORIGIN = "https://search.example"
PREFLIGHT = {
    "Origin": ORIGIN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}


def _engine(method: str, url: str, body: bytes | None) -> tuple[int, bytes]:
    docs = orjson.loads(body or b"{}").get("text_2") or []
    return 200, orjson.dumps({"data": [{"index": i, "score": 0.5} for i in range(len(docs))], "usage": {}})


def _client(**settings: object) -> TestClient:
    app = create_app(
        Settings(api_keys=("k",), **settings),  # type: ignore[arg-type]
        registry=EngineRegistry(static=[snapshot()]),
        engine_transport=CallableTransport(_engine),
    )
    return TestClient(app)


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with _client(cors_allow_origins=(ORIGIN,)) as c:
        yield c


@pytest.mark.parametrize("path", ["/v1/rerank", "/v2/rerank", "/rerank", "/v1/score", "/v1/ranking", "/health"])
def test_a_preflight_is_answered_by_the_gateway_without_a_key(client: TestClient, path: str) -> None:
    r = client.options(path, headers=PREFLIGHT)
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "authorization" in r.headers["access-control-allow-headers"].lower()


def test_an_origin_not_allowed_gets_no_cors_headers(client: TestClient) -> None:
    r = client.options("/v2/rerank", headers={**PREFLIGHT, "Origin": "https://evil.example"})
    assert r.status_code == 400
    assert "access-control-allow-origin" not in r.headers
    r = client.post("/v2/rerank", json={"query": "q", "documents": ["a"]}, headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_answers_and_errors_carry_the_headers_and_expose_request_id_and_timings(client: TestClient) -> None:
    body = {"query": "q", "documents": ["a", "b"]}
    ok = client.post("/v2/rerank", json=body, headers={"Origin": ORIGIN, "Authorization": "Bearer k"})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == ORIGIN
    exposed = {h.strip() for h in ok.headers["access-control-expose-headers"].lower().split(",")}
    assert {"x-request-id", "x-total-time", "x-inference-time", "retry-after"} <= exposed
    refused = client.post("/v2/rerank", json=body, headers={"Origin": ORIGIN})
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == ORIGIN


def test_without_origins_there_is_no_cors() -> None:
    with _client() as c:
        r = c.options("/v2/rerank", headers=PREFLIGHT)  # not a preflight here: a request without the key
        assert r.status_code == 401 and "access-control-allow-origin" not in r.headers


def test_any_origin_and_limited_methods() -> None:
    with _client(cors_allow_origins=("*",), cors_allow_methods=("POST",), cors_allow_headers=("content-type",)) as c:
        r = c.options("/v1/rerank", headers={**PREFLIGHT, "Access-Control-Request-Headers": "content-type"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
        assert r.headers["access-control-allow-methods"] == "POST"
        r = c.options("/v1/rerank", headers={**PREFLIGHT, "Access-Control-Request-Method": "DELETE"})
        assert r.status_code == 400


# ---------------------------------------------------------------------------------------------- settings
def test_flags_repeat_and_split_on_commas() -> None:
    s = parse_settings(
        ["--cors-allow-origin", "https://a", "--cors-allow-origin", "https://b", "--cors-allow-methods", "GET,POST"],
        {},
    )
    assert s.cors_allow_origins == ("https://a", "https://b")
    assert s.cors_allow_methods == ("GET", "POST")
    assert s.cors_allow_headers == ("*",)
    env = parse_settings([], {"RERANK_CORS_ALLOW_ORIGINS": "https://a, https://b", "RERANK_CORS_ALLOW_HEADERS": "x-a"})
    assert env.cors_allow_origins == ("https://a", "https://b") and env.cors_allow_headers == ("x-a",)


def test_credentials_with_any_origin_is_refused() -> None:
    with pytest.raises(SettingsError, match="cors-allow-credentials"):
        parse_settings(["--cors-allow-origin", "*", "--cors-allow-credentials"], {})


def test_vllm_server_flags_are_the_gateways_and_never_reach_the_engine() -> None:
    s = parse_settings(
        [
            "--allowed-origins",
            '["https://a", "https://b"]',
            '--allowed-methods=["POST"]',
            "--allow-credentials",
            "--enable-prefix-caching",
            "--",
            "--allowed-headers",
            "x-a,x-b",
        ],
        {},
    )
    assert s.cors_allow_origins == ("https://a", "https://b")
    assert s.cors_allow_methods == ("POST",)
    assert s.cors_allow_headers == ("x-a", "x-b")
    assert s.cors_allow_credentials is True
    assert s.vllm_args == ("--enable-prefix-caching",)
    (config,) = engine_configs(s, plan_topology(s), [8100])
    argv = config.argv()
    assert "--enable-prefix-caching" in argv
    assert not {"--allowed-origins", "--allowed-methods", "--allowed-headers", "--allow-credentials"} & set(argv)


def test_the_gateways_own_flag_wins_over_vllms_spelling() -> None:
    s = parse_settings(["--cors-allow-origin", "https://mine", "--allowed-origins", '["https://theirs"]'], {})
    assert s.cors_allow_origins == ("https://mine",)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--root-path", "/api"], "--root-path"),
        (["--ssl-keyfile=/k.pem"], "--ssl-keyfile"),
        (["--", "--ssl_certfile", "/c.pem"], "--ssl-certfile"),
        (["--allowed-origins"], "--allowed-origins needs a value"),
    ],
)
def test_vllm_server_flags_without_meaning_here_are_refused_in_one_line(args: list[str], named: str) -> None:
    with pytest.raises(SettingsError, match=named) as err:
        parse_settings(args, {})
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("flag", "named"),
    [('--allowed-origins=["*"]', "use --cors-allow-origin"), ("--ssl-certfile", "proxy or ingress")],
)
def test_a_models_own_vllm_args_may_not_hold_server_flags(tmp_path: Path, flag: str, named: str) -> None:
    """CORS is the service's, not a model's: in a models file it is refused, naming the file's key."""
    models = tmp_path / "models.yaml"
    models.write_text(yaml.safe_dump({"models": [{"name": "a", "model": "/m/a", "vllm-args": [flag]}]}))
    with pytest.raises(SettingsError, match=named) as err:
        parse_settings(["--models-file", str(models)], {})
    assert "vllm-args" in str(err.value) and "\n" not in str(err.value)
