"""Settings: every origin-guide flag, env var precedence, pass-through, presets, --help."""

from __future__ import annotations

import pytest

from engine import FORMATS, EngineConfig
from gateway.cli import build_parser, parse_settings
from gateway.settings import Settings, SettingsError
from gateway.topology import engine_configs, plan_topology


def configs(s: Settings, ports: list[int]) -> list[EngineConfig]:
    return engine_configs(s, plan_topology(s), ports)


def config(s: Settings) -> EngineConfig:
    (cfg,) = configs(s, [9])
    return cfg


def replicas(s: Settings, cpu_count: int) -> int:
    return len(plan_topology(s, cpu_count=cpu_count).engines)


GUIDE = [
    ("--workers", "WORKERS", "workers", "3", 3),
    ("--max-num-seqs", "MAX_NUM_SEQS", "max_num_seqs", "1024", 1024),
    ("--max-num-batched-tokens", "MAX_NUM_BATCHED_TOKENS", "max_num_batched_tokens", "32768", 32768),
    ("--gpu-memory-utilization", "GPU_MEMORY_UTILIZATION", "gpu_memory_utilization", "0.6", 0.6),
    ("--tensor-parallel-size", "TENSOR_PARALLEL_SIZE", "tensor_parallel_size", "2", 2),
    ("--max-workers", "MAX_WORKERS", "max_workers", "16", 16),
    ("--model-size", "MODEL_SIZE", "model_size", "4B", "4B"),
]


@pytest.mark.parametrize(("flag", "env", "field", "text", "value"), GUIDE)
def test_env_var_is_read(flag: str, env: str, field: str, text: str, value: object) -> None:
    assert getattr(parse_settings([], {env: text}), field) == value


@pytest.mark.parametrize(("flag", "env", "field", "text", "value"), GUIDE)
def test_flag_wins_over_env_and_env_over_default(flag: str, env: str, field: str, text: str, value: object) -> None:
    default = getattr(Settings(), field)
    other = "8B" if field == "model_size" else ("0.5" if "." in text else "5")
    assert getattr(parse_settings([flag, other], {env: text}), field) != value
    assert str(getattr(parse_settings([flag, other], {env: text}), field)) == other
    assert getattr(parse_settings([], {}), field) == default


def test_help_documents_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_settings(["--help"], {})
    out = capsys.readouterr().out
    for flag, env, *_ in GUIDE:
        assert flag in out and env in out
    for flag in ("--model", "--host", "--port", "--engine-url", "--engine-replicas"):
        assert flag in out


def test_unknown_flags_pass_through_to_vllm() -> None:
    s = parse_settings(["--workers", "2", "--max-model-len", "512", "--block-size", "16", "--", "--seed", "3"], {})
    assert s.workers == 2 and s.max_model_len == 512
    assert s.vllm_args == ("--block-size", "16", "--seed", "3")
    argv = config(s).argv()
    assert argv[-4:] == ["--block-size", "16", "--seed", "3"]


def test_no_abbreviations_swallow_vllm_flags() -> None:
    # "--max-num" must not be taken as an abbreviation of one of our flags.
    assert parse_settings(["--max-num", "1"], {}).vllm_args == ("--max-num", "1")


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["--workers", "-1"], {}, "--workers"),
        ([], {"GPU_MEMORY_UTILIZATION": "1.5"}, "gpu-memory-utilization"),
        ([], {"MAX_NUM_SEQS": "many"}, "MAX_NUM_SEQS"),
        ([], {"MODEL_SIZE": "2B"}, "MODEL_SIZE"),
        (["--log-level", "loud"], {}, "log-level"),
        ([], {"RERANK_PRETOKENIZE": "on"}, "RERANK_PRETOKENIZE"),
        (["--pretokenize", "always"], {}, "--pretokenize"),
    ],
)
def test_bad_values_name_the_setting(args: list[str], env: dict[str, str], needle: str) -> None:
    with pytest.raises((SettingsError, SystemExit)) as info:
        parse_settings(args, env)
    if info.type is SettingsError:
        assert needle in str(info.value)


@pytest.mark.parametrize("size", ["0.6B", "4B", "8B"])
def test_model_size_preset_maps_to_qwen3_reranker_with_overrides_and_template(size: str) -> None:
    s = parse_settings(["--model-size", size], {})
    cfg = config(s)
    assert cfg.model == f"Qwen/Qwen3-Reranker-{size}"
    assert cfg.family.name == "llm-reranker"
    assert cfg.hf_overrides == FORMATS["qwen3-reranker"].hf_overrides
    argv = cfg.argv()
    assert "--hf-overrides" in argv and "--chat-template" in argv
    assert argv[argv.index("--chat-template") + 1].endswith("qwen3_reranker.jinja")
    assert argv[argv.index("--max-model-len") + 1] == "8192"


def test_pretokenize_defaults_to_auto_and_reads_flag_and_env() -> None:
    assert parse_settings([], {}).pretokenize == "auto"
    assert parse_settings([], {"RERANK_PRETOKENIZE": "off"}).pretokenize == "off"
    assert parse_settings(["--pretokenize", "auto"], {"RERANK_PRETOKENIZE": "off"}).pretokenize == "auto"


def test_llm_rerankers_run_our_template_unless_overridden() -> None:
    """The engine state says so (prompt_format), which lets the gateway send token ids instead."""
    assert config(parse_settings(["--model-size", "0.6B"], {})).prompt_format == "qwen3-reranker"
    mine = parse_settings(["--model-size", "0.6B", "--chat-template", "/mine.jinja"], {})
    assert config(mine).prompt_format is None
    assert (
        config(parse_settings(["--model", "/models/bert-ce", "--model-family", "cross-encoder"], {})).prompt_format
        is None
    )


def test_model_wins_over_model_size() -> None:
    s = parse_settings(["--model-size", "8B", "--model", "/m/x"], {})
    assert s.resolved_model == "/m/x"


def test_default_model_is_the_bundled_one(bundled_model_path: str) -> None:
    s = parse_settings([], {})
    assert s.resolved_model == bundled_model_path
    assert s.resolved_served_name == "all-MiniLM-L6-v2"


def test_settings_round_trip_through_json_for_workers() -> None:
    s = parse_settings(["--workers", "2", "--model-alias", "a", "--engine-url", "http://x:1", "--", "--seed", "1"], {})
    assert Settings.model_validate_json(s.model_dump_json()) == s


def test_replicas_split_gpu_memory_or_pin_devices() -> None:
    s = parse_settings(["--engine-replicas", "3", "--gpu-memory-utilization", "0.9", "--device", "cuda"], {})
    cfgs = configs(s, [1, 2, 3])
    assert [c.gpu_memory_utilization for c in cfgs] == [0.3, 0.3, 0.3]
    assert len({c.port for c in cfgs}) == 3
    s = parse_settings(["--engine-replicas", "2", "--device", "cuda"], {"RERANK_ENGINE_DEVICES": "0;1"})
    assert [dict(c.extra_env)["CUDA_VISIBLE_DEVICES"] for c in configs(s, [1, 2])] == ["0", "1"]


def test_parser_builds() -> None:
    assert build_parser().prog == "start_service.py"


def test_origin_guide_high_performance_recipe_reaches_vllm() -> None:
    """The guide's multi-GPU recipe: every flag lands on the engine's command line (TP=2) and
    NVLink multicast stays off. (Running it needs two GPUs; see docs/gpu-performance.md.)"""
    s = parse_settings(
        [
            "--workers",
            "4",
            "--tensor-parallel-size",
            "2",
            "--max-num-seqs",
            "2048",
            "--max-num-batched-tokens",
            "65536",
            "--gpu-memory-utilization",
            "0.95",
            "--max-workers",
            "16",
            "--model-size",
            "8B",
            "--device",
            "cuda",
        ],
        {},
    )
    cfg = configs(s, [7000])[0]
    argv = cfg.argv()
    pairs = {argv[i]: argv[i + 1] for i in range(len(argv) - 1)}
    assert argv[argv.index("--model") + 1 if "--model" in argv else 2] == "Qwen/Qwen3-Reranker-8B"
    assert (
        pairs["--tensor-parallel-size"],
        pairs["--max-num-seqs"],
        pairs["--max-num-batched-tokens"],
        pairs["--gpu-memory-utilization"],
    ) == ("2", "2048", "65536", "0.95")
    assert cfg.env({})["NCCL_NVLS_ENABLE"] == "0"
    assert s.workers == 4 and s.max_workers == 16 and cfg.effective_args().tensor_parallel_size == 2


def test_two_replicas_one_per_gpu() -> None:
    s = parse_settings(
        [
            "--engine-replicas",
            "2",
            "--engine-devices",
            "0",
            "--engine-devices",
            "1",
            "--model-size",
            "8B",
            "--device",
            "cuda",
            "--gpu-memory-utilization",
            "0.9",
        ],
        {},
    )
    cfgs = configs(s, [7000, 7001])
    assert [dict(c.extra_env)["CUDA_VISIBLE_DEVICES"] for c in cfgs] == ["0", "1"]
    assert [c.gpu_memory_utilization for c in cfgs] == [0.9, 0.9]  # own GPU each: no split
    assert [c.port for c in cfgs] == [7000, 7001]


def test_auto_replicas_from_host_cores_for_encoders_on_gpu(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(
        json.dumps({"architectures": ["BertForSequenceClassification"], "model_type": "bert"})
    )
    gpu = parse_settings(["--model", str(bert), "--device", "cuda"], {})
    assert replicas(gpu, 16) == 8 and replicas(gpu, 8) == 3
    assert replicas(gpu, 2) == 1
    assert replicas(parse_settings(["--model", str(bert), "--device", "cpu"], {}), 16) == 1
    # a small LLM reranker gets replicas too (its API server leaves the GPU idle), a big one does not
    small_llm = parse_settings(["--model-size", "0.6B", "--device", "cuda"], {})
    assert (replicas(small_llm, 16), replicas(small_llm, 8), replicas(small_llm, 64)) == (4, 3, 4)  # 4 keep a card busy
    assert replicas(parse_settings(["--model-size", "8B", "--device", "cuda"], {}), 16) == 1
    assert (
        replicas(parse_settings(["--model", str(bert), "--device", "cuda", "--tensor-parallel-size", "2"], {}), 16) == 1
    )
    assert replicas(parse_settings(["--model", str(bert), "--device", "cuda", "--engine-replicas", "3"], {}), 16) == 3


def test_settings_built_in_code_are_validated_the_same_way() -> None:
    from pydantic import ValidationError

    for bad in ({"workers": -1}, {"max_documents": 10_001}, {"pretokenize": "on"}, {"port": 8000, "engine_port": 8000}):
        with pytest.raises(ValidationError):
            Settings(**bad)
    assert Settings(log_level="DEBUG").log_level == "debug"


def test_settings_built_in_code_read_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "1234")
    monkeypatch.setenv("WORKERS", "7")
    assert Settings().port == 8000 and Settings().workers == 0
    assert parse_settings([]).port == 1234  # the CLI reads the process environment


def test_errors_name_the_flag_and_its_env_var() -> None:
    with pytest.raises(SettingsError, match=r"--max-documents/RERANK_MAX_DOCUMENTS: .*10000"):
        parse_settings([], {"RERANK_MAX_DOCUMENTS": "20000"})
    with pytest.raises(SettingsError, match="--engine-port must differ from --port"):
        parse_settings(["--port", "9000", "--engine-port", "9000"], {})
    with pytest.raises(SettingsError) as info:
        parse_settings([], {"RERANK_API_KEYS": "k", "RERANK_PROTECT_OPS": "perhaps"})
    assert "perhaps" in str(info.value) and "--protect-ops/RERANK_PROTECT_OPS" in str(info.value)


def test_every_option_declares_flag_env_help_and_default() -> None:
    from gateway.cli import OPTIONS

    assert len({o.flag for o in OPTIONS}) == len({o.env for o in OPTIONS}) == len(OPTIONS)
    for o in OPTIONS:
        assert o.help and o.flag.startswith("--") and o.env.isupper()


def test_in_flight_default_follows_the_engines_actually_started(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"architectures": ["BertForSequenceClassification"]}))
    auto = plan_topology(parse_settings(["--model", str(bert), "--device", "cuda"], {}), cpu_count=16)
    assert len(auto.engines) == 8 and auto.inflight_pairs_per_worker == 32 * 256 * 8
    explicit = plan_topology(parse_settings(["--max-inflight-pairs", "1000", "--workers", "3"], {}), cpu_count=16)
    assert explicit.inflight_pairs_per_worker == 334  # the service's limit, split over the workers
    external = plan_topology(parse_settings(["--engine-url", "http://a", "--engine-url", "http://b"], {}))
    assert external.engines == () and external.inflight_pairs_per_worker == 32 * 256 * 2


def test_served_name_is_the_hub_id_also_for_a_cache_snapshot_path(tmp_path) -> None:  # type: ignore[no-untyped-def]
    snap = tmp_path / "hub" / "models--BAAI--bge-reranker-v2-m3" / "snapshots" / ("c0" * 20)
    snap.mkdir(parents=True)
    assert parse_settings(["--model", str(snap)], {}).resolved_served_name == "BAAI/bge-reranker-v2-m3"
    assert parse_settings(["--model", "BAAI/bge-reranker-v2-m3"], {}).resolved_served_name == "BAAI/bge-reranker-v2-m3"
    assert parse_settings(["--model-size", "4B"], {}).resolved_served_name == "Qwen/Qwen3-Reranker-4B"
    local = tmp_path / "my-reranker"
    local.mkdir()
    assert parse_settings(["--model", str(local)], {}).resolved_served_name == "my-reranker"
    named = parse_settings(["--model", str(snap), "--served-model-name", "m"], {})
    assert named.resolved_served_name == "m"


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("localhost:8000", "is not an http://, https:// or http+unix:// URL"),
        ("ftp://engine", "is not an http://, https:// or http+unix:// URL"),
        ("http://", "is not an http://, https:// or http+unix:// URL"),
        ("http://engine:port", "is not a URL"),
        ("http://engine:8000/?x=1", "takes no query or fragment"),
        ("http://user:secret@engine:8000", "'http://***@engine:8000' has credentials in it"),
    ],
)
def test_an_engine_url_the_gateway_cannot_call_is_refused_at_start(url: str, needle: str) -> None:
    with pytest.raises(SettingsError, match="--engine-url/RERANK_ENGINE_URLS") as err:
        parse_settings(["--engine-url", url], {})
    assert needle in str(err.value)
    assert "secret" not in str(err.value)
    with pytest.raises(SettingsError):  # the same from the environment
        parse_settings([], {"RERANK_ENGINE_URLS": f"http://ok:1,{url}"})


def test_engine_urls_the_gateway_can_call_are_kept() -> None:
    urls = ("http://10.0.0.5:8000", "https://engines.internal/vllm", "http+unix://%2Frun%2Fe.sock", "http://[::1]:9")
    assert parse_settings([a for u in urls for a in ("--engine-url", u)], {}).engine_urls == urls
