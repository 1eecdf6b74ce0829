"""Several models behind one endpoint: the flags and the models file, the plan (engines, GPU shares),
routing by name, per-model health and models list — in-process, with scripted engines."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from engine import EngineRegistry
from engine.transport import CallableTransport
from gateway.app import create_app
from gateway.cli import parse_settings
from gateway.model_specs import ModelSpec
from gateway.settings import Settings, SettingsError, bundled_model_path
from gateway.topology import engine_configs, plan_topology
from tests.unit.engines import snapshot

BUNDLED = bundled_model_path() or pytest.skip("the bundled model is not installed", allow_module_level=True)


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# ---------------------------------------------------------------------------------------- settings
def test_model_flag_repeated_names_each_model() -> None:
    s = parse_settings(["--model", f"fast={BUNDLED}", "--model", f"slow={BUNDLED}"], {})
    assert [(m.name, m.model) for m in s.models] == [("fast", BUNDLED), ("slow", BUNDLED)]
    env = parse_settings([], {"MODEL": f"fast={BUNDLED},slow={BUNDLED}"})
    assert env.models == s.models


def test_single_model_keeps_its_old_names() -> None:
    s = parse_settings(["--model", BUNDLED, "--model-alias", "small"], {})
    (only,) = s.models
    assert only.name == "model" and only.aliases == ("small",)  # the directory's name, as before
    assert parse_settings([], {}).models[0].name == "all-MiniLM-L6-v2"
    assert parse_settings(["--model-size", "0.6B"], {}).models[0].model == "Qwen/Qwen3-Reranker-0.6B"


TOML = f"""
[[models]]
name = "fast"
model = "{BUNDLED}"
aliases = ["small", "mini"]
max-num-seqs = 16

[[models]]
name = "slow"
model = "{BUNDLED}"
max_model_len = 128
instruction = "Judge relevance"
vllm-args = ["--seed", "7"]
"""

YAML = f"""
models:
  - name: fast
    model: {BUNDLED}
    aliases: [small, mini]
    max-num-seqs: 16
  - name: slow
    model: {BUNDLED}
    max_model_len: 128
    instruction: Judge relevance
    vllm-args: ["--seed", "7"]
"""


@pytest.mark.parametrize(("name", "text"), [("m.toml", TOML), ("m.yaml", YAML)])
def test_models_file_gives_per_model_settings(tmp_path: Path, name: str, text: str) -> None:
    s = parse_settings(["--models-file", _write(tmp_path, name, text)], {})
    fast, slow = s.models
    assert (fast.name, fast.aliases, fast.max_num_seqs) == ("fast", ("small", "mini"), 16)
    assert (slow.max_model_len, slow.instruction, slow.vllm_args) == (128, "Judge relevance", ("--seed", "7"))
    # workers get the file's contents with the settings: no second read
    again = Settings.model_validate_json(s.model_dump_json())
    assert again.models == s.models


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        ("m.toml", TOML.replace("max-num-seqs = 16", "max-num-seqs = 0"), "m.toml:6: models[0].max-num-seqs"),
        ("m.yaml", YAML.replace("max_model_len: 128", "max_model_len: lots"), "m.yaml:9: models[1].max_model_len"),
        ("m.toml", TOML.replace('name = "slow"', 'name = "slow"\nreplica = 2'), "m.toml:10: models[1].replica"),
        ("m.yaml", YAML.replace("  - name: slow", "  - name: slow\n   bad: [indent"), "m.yaml:"),
        ("m.toml", TOML + "\n[extra]\nx = 1\n", "extra: unknown key"),
        ("m.json", "{}", "ends in .toml, .yaml or .yml"),
        ("m.toml", "models = []", "non-empty `models` list"),
    ],
)
def test_a_bad_models_file_is_one_line_naming_file_line_and_key(
    tmp_path: Path, name: str, text: str, needle: str
) -> None:
    with pytest.raises(SettingsError) as err:
        parse_settings(["--models-file", _write(tmp_path, name, text)], {})
    message = str(err.value)
    assert needle in message and "\n" not in message and "--models-file" in message


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--model", "a=x", "--model", "a=y"], "'a' is used by"),
        (["--model", "a=x", "--model", "b=y", "--served-model-name", "n"], "--served-model-name"),
        (["--model", "a=x", "--model", "b=y", "--engine-url", "http://e"], "--engine-url"),
        (["--model", "=x"], "NAME=ID_OR_PATH"),
    ],
)
def test_conflicting_model_flags_are_refused(args: list[str], needle: str) -> None:
    with pytest.raises(SettingsError, match="--model") as err:
        parse_settings(args, {})
    assert needle in str(err.value)


def test_model_flag_and_models_file_are_exclusive(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="give one of them"):
        parse_settings(["--model", BUNDLED, "--models-file", _write(tmp_path, "m.toml", TOML)], {})


# ---------------------------------------------------------------------------------------- topology
def _specs(*specs: dict[str, Any]) -> Settings:
    return Settings(model_specs=tuple(ModelSpec.model_validate({"model": BUNDLED, **s}) for s in specs))


def test_each_model_gets_its_own_engines_with_its_own_settings() -> None:
    s = _specs({"name": "a", "replicas": 2, "max-num-seqs": 8}, {"name": "b", "vllm-args": ["--seed", "3"]})
    topo = plan_topology(s, device="cpu")
    assert [(e.name, e.model) for e in topo.engines] == [("a-engine0", "a"), ("a-engine1", "a"), ("b-engine0", "b")]
    configs = engine_configs(s, topo, [9001, 9002, 9003])
    assert [c.served_model_name for c in configs] == ["a", "a", "b"]
    assert [c.max_num_seqs for c in configs] == [8, 8, 256]
    assert configs[2].argv()[-2:] == ["--seed", "3"] and "--seed" not in configs[0].argv()
    assert [m.inflight_pairs_per_worker for m in topo.models] == [32 * 8 * 2, 32 * 256]


def test_gpu_shares_of_all_models_are_planned_together() -> None:
    s = _specs(
        {"name": "a", "replicas": 2},
        {"name": "b", "gpu_memory_utilization": 0.5, "replicas": 1},
        {"name": "c", "replicas": 1},
    )
    topo = plan_topology(s, device="cuda", cpu_count=16)
    shares = {e.name: e.gpu_memory_utilization for e in topo.engines}
    assert shares == {"a-engine0": 0.1, "a-engine1": 0.1, "b-engine0": 0.5, "c-engine0": 0.2}
    assert sum(v for v in shares.values() if v) <= 0.9
    # different cards do not share
    apart = _specs({"name": "a", "devices": ["0"]}, {"name": "b", "devices": ["1"]})
    assert {e.gpu_memory_utilization for e in plan_topology(apart, device="cuda").engines} == {0.9}


def test_gpu_shares_past_the_card_are_refused() -> None:
    s = _specs({"name": "a", "gpu_memory_utilization": 0.6}, {"name": "b", "gpu_memory_utilization": 0.5})
    with pytest.raises(SettingsError, match=r"add up to 1\.10"):
        plan_topology(s, device="cuda")
    full = _specs({"name": "a", "gpu_memory_utilization": 0.9}, {"name": "b"})
    with pytest.raises(SettingsError, match="no GPU memory is left for 'b'"):
        plan_topology(full, device="cuda")


# ---------------------------------------------------------------------------------------- serving
_URLS = {"http://fast": 2.0, "http://slow": -2.0}  # each engine scores every document its own way


def _engine(method: str, url: str, body: bytes | None) -> tuple[int, bytes]:
    base = url.rsplit("/", 1)[0]
    req = orjson.loads(body or b"{}")
    docs = req.get("text_2") or []
    data = [{"index": i, "score": _URLS[base] * (i + 1) / 10} for i in range(len(docs))]
    return 200, orjson.dumps({"data": data, "usage": {"prompt_tokens": len(docs)}})


@contextmanager
def _service(*, slow_state: str = "ready", **settings: Any) -> Iterator[TestClient]:
    s = _specs({"name": "fast", "aliases": ["small"]}, {"name": "slow"}).replace(**settings)
    engines = [
        snapshot(name="fast-engine0", url="http://fast", served_model_name="fast", family="cross-encoder"),
        snapshot(
            name="slow-engine0", url="http://slow", served_model_name="slow", family="cross-encoder", state=slow_state
        ),
    ]
    app = create_app(s, registry=EngineRegistry(static=engines), engine_transport=CallableTransport(_engine))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _rerank(c: TestClient, model: str | None, path: str = "/v2/rerank") -> Any:
    body: dict[str, Any] = {"query": "q", "documents": ["a", "b"]}
    if model is not None:
        body["model"] = model
    return c.post(path, json=body)


def test_the_request_model_picks_the_engine_and_names_the_answer() -> None:
    with _service() as c:
        fast, slow = _rerank(c, "fast").json(), _rerank(c, "slow").json()
        # fast's engine scores rising logits (the second document first), slow's falling ones
        assert [r["index"] for r in fast["results"]] == [1, 0]
        assert [r["index"] for r in slow["results"]] == [0, 1]
        assert _rerank(c, "small").json()["results"] == fast["results"]  # an alias
        # unknown or no name: the first model serves, and the answer says which
        tei = c.post("/rerank", json={"query": "q", "texts": ["a", "b"], "model": "nope"})
        assert [r["index"] for r in tei.json()] == [1, 0]
        score = c.post("/score", json={"model": "slow", "text_1": "q", "text_2": ["a", "b"]}).json()
        assert score["model"] == "slow"


def test_strict_names_answer_404_listing_the_names_in_the_callers_dialect() -> None:
    with _service(strict_model_names=True) as c:
        r = _rerank(c, "nope")
        assert r.status_code == 404
        for name in ("fast", "slow", "small"):
            assert name in r.text
        assert "message" in r.json()  # Cohere's envelope
        assert _rerank(c, "slow").status_code == 200
        assert _rerank(c, None).status_code == 200  # no name at all: the first model


def test_health_is_per_model_and_200_only_when_all_are_ready() -> None:
    with _service(slow_state="starting") as c:
        r = c.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "degraded"
        models = r.json()["models"]
        assert (models["fast"]["status"], models["slow"]["status"]) == ("ready", "starting")
        assert models["fast"]["aliases"] == ["small"] and models["slow"]["engines"] == ["slow-engine0"]
        assert c.get("/health", params={"model": "fast"}).status_code == 200
        assert c.get("/health", params={"model": "small"}).json()["model"] == "fast"
        assert c.get("/health", params={"model": "slow"}).status_code == 503
        assert c.get("/health", params={"model": "nope"}).status_code == 404
        # the model still starting answers 503; the other one serves
        assert _rerank(c, "slow").status_code == 503 and _rerank(c, "fast").status_code == 200
    with _service() as c:
        assert c.get("/health").status_code == 200


def test_health_shows_the_resolved_worker_count_not_the_auto_setting() -> None:
    with _service(workers=0) as c:  # 0 = auto
        rt = c.app.state.runtime  # type: ignore[attr-defined]
        assert rt.topology.workers >= 1
        assert c.get("/health").json()["workers"] == rt.topology.workers
    with _service(workers=3) as c:
        assert c.get("/health").json()["workers"] == 3


def test_models_list_every_name_and_each_model_has_its_own_limits_and_cache() -> None:
    with _service(score_cache_size=16) as c:
        ids = [m["id"] for m in c.get("/v1/models").json()["data"]]
        assert ids == ["fast", "small", "slow"]
        rt = c.app.state.runtime  # type: ignore[attr-defined]
        fast, slow = rt.router.pipelines
        assert fast.cache is not slow.cache and fast.admission is not slow.admission
        _rerank(c, "fast")
        assert (len(fast.cache), len(slow.cache)) == (2, 0)


def test_the_readme_models_file_example_is_valid(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    block = readme.split("### Several models", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    fast, accurate = parse_settings(["--models-file", _write(tmp_path, "models.toml", block)], {}).models
    assert fast.aliases == ("rerank-v3.5", "small") and fast.replicas == 2
    assert accurate.format == "qwen3-reranker" and accurate.vllm_args == ("--dtype", "bfloat16")


# ---------------------------------------------------------------------------------------- sizing defaults
QWEN_06B = {
    "architectures": ["Qwen3ForCausalLM"],
    "num_hidden_layers": 28,
    "hidden_size": 1024,
    "intermediate_size": 3072,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 151669,
}


def test_model_size_and_kv_bytes_from_the_config() -> None:
    from engine.sizing import kv_bytes_per_token, param_count

    assert 0.5e9 < (param_count(QWEN_06B) or 0) < 0.75e9  # Qwen3-0.6B: 0.6B with embeddings
    assert kv_bytes_per_token(QWEN_06B) == 2 * 28 * 8 * 128 * 2
    assert param_count(None, "Qwen/Qwen3-Reranker-4B") == 4e9 and param_count(None, "org/model") is None


def _qwen_dir(tmp_path: Path, config: dict[str, Any]) -> str:
    d = tmp_path / "Qwen3-Reranker-0.6B"
    d.mkdir()
    (d / "config.json").write_text(orjson.dumps(config).decode())
    return str(d)


def test_gpu_defaults_resolve_replicas_workers_and_kv_budgets(tmp_path: Path) -> None:
    qwen = _qwen_dir(tmp_path, QWEN_06B)
    s = Settings(model=(qwen,), model_format="qwen3-reranker")
    topo = plan_topology(s, device="cuda", cpu_count=16, gpu_bytes=140 * 2**30)
    assert len(topo.engines) == 4 and topo.workers == 4  # a small LLM reranker gets replicas too
    (kv,) = {e.kv_cache_bytes for e in topo.engines}
    assert kv is not None and kv >= 65_536 * 2 * 28 * 8 * 128 * 2  # room for 64k tokens, within its share
    assert kv < 0.225 * 140 * 2**30
    (cfg, *_) = engine_configs(s, topo, [9001 + i for i in range(4)])
    assert cfg.argv()[-2:] == ["--kv-cache-memory-bytes", str(kv)]
    # a pass-through window wins on the engine's command line: the budget holds one of it, however small the card
    per_token = 2 * 28 * 8 * 128 * 2
    for args in (("--max-model-len", "64k"), ("--max-model-len=1k", "--max-model-len=64k")):
        small = plan_topology(s.replace(vllm_args=args), device="cuda", cpu_count=16, gpu_bytes=40 * 2**30)
        assert {e.kv_cache_bytes for e in small.engines} == {64_000 * per_token}
    # a user's own budget wins; a big model stays one engine; CPU stays one engine and one worker
    own = s.replace(vllm_args=("--kv-cache-memory-bytes", "123"))
    assert {e.kv_cache_bytes for e in plan_topology(own, device="cuda", cpu_count=16, gpu_bytes=2**37).engines} == {
        None
    }
    big = Settings(model_size="4B")
    assert len(plan_topology(big, device="cuda", cpu_count=16).engines) == 1
    cpu = plan_topology(s, device="cpu", cpu_count=16)
    assert (len(cpu.engines), cpu.workers) == (1, 1)
    bert = plan_topology(Settings(), device="cuda", cpu_count=16)
    assert (len(bert.engines), bert.workers, {e.kv_cache_bytes for e in bert.engines}) == (8, 8, {None})
    assert plan_topology(Settings(workers=3), device="cuda", cpu_count=16).workers == 3


def test_llm_replicas_sharing_a_card_get_larger_engine_steps(tmp_path: Path) -> None:
    """Qwen3-0.6B engines sharing a card: 32,768 batched tokens each (+6% pairs/s on an H100, measured);
    a user's value, one engine on its card, an encoder model and CPU keep vLLM's own default."""

    def tokens(s: Settings, **kw: Any) -> set[int | None]:
        topo = plan_topology(s, **{"device": "cuda", "cpu_count": 16, "gpu_bytes": 80 * 2**30, **kw})
        return {c.max_num_batched_tokens for c in engine_configs(s, topo, [9001 + i for i in range(len(topo.engines))])}

    qwen = _qwen_dir(tmp_path, QWEN_06B)
    s = Settings(model=(qwen,), model_format="qwen3-reranker")
    assert tokens(s) == {32_768}
    (cfg, *_) = engine_configs(
        s, topo := plan_topology(s, device="cuda", cpu_count=16, gpu_bytes=80 * 2**30), [9001] * 4
    )
    assert cfg.argv()[cfg.argv().index("--max-num-batched-tokens") + 1] == "32768"
    assert topo.models[0].max_num_batched_tokens == 32_768
    assert tokens(s.replace(max_num_batched_tokens=4096)) == {4096}
    assert tokens(s.replace(max_model_len=40_960)) == {40_960}  # at least one window
    assert tokens(s.replace(vllm_args=("--max-model-len", "64k"))) == {64_000}  # a pass-through window too
    assert tokens(s.replace(vllm_args=("--max-num-batched-tokens=16k",))) == {None}
    assert tokens(s.replace(engine_replicas=1)) == {None}  # one engine on its card: no KV budget planned
    assert tokens(s, device="cpu") == {None}
    assert tokens(Settings()) == {None}  # BERT-class replicas: not measured, vLLM's default


def test_mps_joins_the_engines_that_share_a_card(tmp_path: Path) -> None:
    """--mps auto: engines that share a card join the service's MPS daemon where its binary exists; one
    engine on its card, CPU, an operator's own daemon, --mps off and a missing binary start none;
    --mps on without the binary is refused at start."""
    control = "/usr/bin/nvidia-cuda-mps-control"
    found = {"nvidia-cuda-mps-control": control}.get

    def plan(s: Settings, *, which: Any = found, environ: dict[str, str] | None = None, **kw: Any) -> Any:
        args = {"device": "cuda", "cpu_count": 16, "gpu_bytes": 80 * 2**30, **kw}
        return plan_topology(s, which=which, environ=environ or {}, **args)

    qwen = _qwen_dir(tmp_path, QWEN_06B)
    s = Settings(model=(qwen,), model_format="qwen3-reranker")
    topo = plan(s)
    assert topo.mps_control == control and [e.mps for e in topo.engines] == [True] * 4
    env = {"CUDA_MPS_PIPE_DIRECTORY": "/run/x/pipe", "CUDA_MPS_LOG_DIRECTORY": "/run/x/log"}
    cfgs = engine_configs(s, topo, [9001 + i for i in range(4)], mps_env=env)
    assert all(c.env({})["CUDA_MPS_PIPE_DIRECTORY"] == "/run/x/pipe" for c in cfgs)
    assert "CUDA_MPS_PIPE_DIRECTORY" not in engine_configs(s, topo, [9001 + i for i in range(4)])[0].env({})
    # engines on their own cards: none joins; two engines on card 1: those two
    split = s.replace(engine_devices=("0", "1", "1"))
    assert [e.mps for e in plan(split).engines] == [False, True, True]
    assert plan(s.replace(engine_replicas=1)).mps_control is None
    assert plan(s.replace(mps="off")).mps_control is None
    assert plan(s, device="cpu").mps_control is None
    assert plan(s, environ={"CUDA_MPS_PIPE_DIRECTORY": "/tmp/nvidia-mps"}).mps_control is None
    assert plan(s, which=lambda _: None).mps_control is None
    assert plan(s.replace(tensor_parallel_size=2, engine_replicas=2)).mps_control is None
    # on: even one engine joins; without the binary, a refusal that names the way out
    assert [e.mps for e in plan(s.replace(mps="on", engine_replicas=1)).engines] == [True]
    with pytest.raises(SettingsError, match=r"--mps on: nvidia-cuda-mps-control is not on PATH.*--mps off"):
        plan(s.replace(mps="on"), which=lambda _: None)
    assert parse_settings(["--mps", "off"], {}).mps == "off"
    assert parse_settings([], {"RERANK_MPS": "on"}).mps == "on"
