"""deploy/kubernetes against the service and the Dockerfile (offline; no cluster).

Every manifest parses; our containers' env names and flags are ones gateway/settings.py reads
and parse into valid Settings; probes hit /health on the named port; Services, HPAs and
--engine-url point at objects that exist; the GPU Deployment asks for one GPU; grace periods
cover the service's drain. kubernetes-validate (offline JSON schemas) runs when installed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli import OPTIONS as _OPTIONS
from gateway.cli import parse_settings
from tests.unit.test_dockerfile import THIRD_PARTY_ENV, parse_dockerfile

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
SETTINGS_ENV = {o.env for o in _OPTIONS}
SETTINGS_FLAGS = {o.flag for o in _OPTIONS}
INFLIGHT_METRIC = "vllm_rerank_inflight_requests"
KINDS = {"Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap", "Kustomization"}

Doc = dict[str, Any]


def manifest_files() -> list[Path]:
    return sorted(DEPLOY.rglob("*.yaml"))


def load(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def docs_in(directory: Path) -> list[Doc]:
    return [d for p in sorted(directory.glob("*.yaml")) for d in load(p)]


def example_dirs() -> list[Path]:
    return sorted(p for p in DEPLOY.iterdir() if p.is_dir())


def containers(doc: Doc) -> list[Doc]:
    return list(doc["spec"]["template"]["spec"]["containers"])


def is_ours(container: Doc) -> bool:
    return str(container["image"]).split(":")[0].endswith("vllm-rerank")


def env_values(container: Doc) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def test_examples_exist() -> None:
    assert {p.name for p in example_dirs()} == {"managed", "external"}
    assert manifest_files()


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_manifest_parses_with_known_kinds(path: Path) -> None:
    docs = load(path)
    assert docs
    for doc in docs:
        assert doc["kind"] in KINDS, f"{path}: unexpected kind {doc['kind']}"
        assert doc.get("apiVersion")
        if doc["kind"] == "HorizontalPodAutoscaler":
            assert doc["apiVersion"] == "autoscaling/v2"


@pytest.mark.parametrize("directory", example_dirs(), ids=lambda p: p.name)
def test_kustomization_lists_existing_files(directory: Path) -> None:
    kust = load(directory / "kustomization.yaml")[0]
    for res in kust["resources"]:
        assert (directory / res).exists(), res


def test_our_containers_use_only_settings_env_and_flags() -> None:
    found = 0
    for path in manifest_files():
        for doc in load(path):
            if doc["kind"] != "Deployment":
                continue
            for c in containers(doc):
                if not is_ours(c):
                    continue
                found += 1
                names = {e["name"] for e in c.get("env", [])}
                unknown = names - SETTINGS_ENV - set(THIRD_PARTY_ENV)
                assert not unknown, f"{path}: env the service does not read: {sorted(unknown)}"
                args = [str(a) for a in c.get("args", [])]
                assert "command" not in c, "keep the image's ENTRYPOINT (tini + start_service.py)"
                flags = {a.split("=", 1)[0] for a in args if a.startswith("--")}
                assert flags <= SETTINGS_FLAGS, f"{path}: unknown flags {flags - SETTINGS_FLAGS}"
                # They really parse: a typo'd value would fail here, not in the cluster.
                parse_settings(args, environ=env_values(c))
    assert found >= 2


def _probe_target(probe: Doc) -> tuple[str, Any]:
    if "httpGet" in probe:
        return probe["httpGet"]["path"], probe["httpGet"]["port"]
    return "tcp", probe["tcpSocket"]["port"]


def test_probes_hit_health_on_the_named_port() -> None:
    for path in manifest_files():
        for doc in load(path):
            if doc["kind"] != "Deployment":
                continue
            for c in containers(doc):
                ports = {p["name"]: p["containerPort"] for p in c["ports"]}
                assert ports == {"http": 8000}
                for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                    assert kind in c, f"{path}: {c['name']} has no {kind}"
                    target, port = _probe_target(c[kind])
                    assert port == "http"
                    if kind != "livenessProbe" or "httpGet" in c[kind]:
                        assert target == "/health", f"{path}: {kind} must hit /health"
                start = c["startupProbe"]
                assert start["periodSeconds"] * start["failureThreshold"] >= 600, "cold start takes minutes"
                if "httpGet" in c["livenessProbe"]:
                    live = c["livenessProbe"]
                    assert live["periodSeconds"] * live["failureThreshold"] >= 120, (
                        "liveness must outlast one supervised engine restart"
                    )


def test_gpu_deployments_request_one_gpu_and_managed_runs_our_image() -> None:
    managed = [d for d in docs_in(DEPLOY / "managed") if d["kind"] == "Deployment"]
    assert len(managed) == 1
    (c,) = containers(managed[0])
    assert is_ours(c) and c["image"].endswith(":latest")
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = env_values(c)
    for name in ("WORKERS", "MAX_NUM_SEQS", "GPU_MEMORY_UTILIZATION", "MAX_WORKERS"):
        assert name in env, f"the guide's {name}"
    engine = [d for d in docs_in(DEPLOY / "external") if d["kind"] == "Deployment" and d["metadata"]["name"] == "vllm"]
    (vc,) = containers(engine[0])
    assert vc["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert vc["image"] == parse_dockerfile().global_args["VLLM_IMAGE"], "same pinned vLLM as the GPU image"


def test_pods_run_as_the_images_non_root_user() -> None:
    uid = int(parse_dockerfile().final.last("USER").args.split(":")[0])  # type: ignore[union-attr]
    for path in manifest_files():
        for doc in load(path):
            if doc["kind"] == "Deployment" and any(is_ours(c) for c in containers(doc)):
                sc = doc["spec"]["template"]["spec"]["securityContext"]
                assert sc["runAsNonRoot"] is True and sc["runAsUser"] == uid


# On SIGTERM (gateway/protocol.py, gateway/server.py, start_service.py): the drain of requests in
# flight lasts up to --stop-grace s, with uvicorn's cancel 1 s later as a backstop; then each
# managed engine gets --stop-grace s more before SIGKILL.
DRAIN_BACKSTOP_S = 1.0


def stop_budget(stop_grace: float, *, engines: bool) -> float:
    """The longest a stop can take: the drain, then (with engines of its own) the engine's grace."""
    return stop_grace + DRAIN_BACKSTOP_S + (stop_grace if engines else 0.0)


def test_termination_grace_covers_prestop_and_drain() -> None:
    for path in manifest_files():
        for doc in load(path):
            if doc["kind"] != "Deployment":
                continue
            spec = doc["spec"]["template"]["spec"]
            for c in containers(doc):
                if not is_ours(c):
                    continue
                grace = float(env_values(c).get("RERANK_STOP_GRACE", "15"))
                pre = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
                sleep = float(pre[1]) if pre[:1] == ["sleep"] else 0.0
                need = sleep + stop_budget(grace, engines="--engine-url" not in c.get("args", []))
                assert spec["terminationGracePeriodSeconds"] > need, f"{path}: grace < {need}s"


@pytest.mark.parametrize("directory", example_dirs(), ids=lambda p: p.name)
def test_services_and_hpas_point_at_existing_objects(directory: Path) -> None:
    docs = docs_in(directory)
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    services = [d for d in docs if d["kind"] == "Service"]
    assert any(s["metadata"]["name"] == "vllm-rerank" for s in services), "clients use the vllm-rerank Service"
    for svc in services:
        sel = svc["spec"]["selector"]
        matches = [
            d for d in deployments.values() if sel.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matches) == 1, f"Service {svc['metadata']['name']} selects {len(matches)} Deployments"
        assert sel.items() <= matches[0]["spec"]["selector"]["matchLabels"].items()
        named = {p["name"] for c in containers(matches[0]) for p in c["ports"]}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in named
    hpas = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    assert hpas
    for hpa in hpas:
        target = deployments[hpa["spec"]["scaleTargetRef"]["name"]]
        for metric in hpa["spec"]["metrics"]:
            if metric["type"] == "Resource":
                assert all("cpu" in c["resources"]["requests"] for c in containers(target)), (
                    "CPU utilisation needs requests.cpu"
                )
            else:
                assert metric["type"] == "Pods"
                assert metric["pods"]["metric"]["name"] == INFLIGHT_METRIC


def test_managed_has_inflight_and_cpu_hpa_variants_and_adapter_rule() -> None:
    hpas = {p.name: load(p)[0] for p in (DEPLOY / "managed").glob("hpa-*.yaml")}
    assert set(hpas) == {"hpa-inflight.yaml", "hpa-cpu.yaml"}
    types = {name: hpa["spec"]["metrics"][0]["type"] for name, hpa in hpas.items()}
    assert types == {"hpa-inflight.yaml": "Pods", "hpa-cpu.yaml": "Resource"}
    kust = load(DEPLOY / "managed" / "kustomization.yaml")[0]
    assert not {"hpa-inflight.yaml", "hpa-cpu.yaml"} <= set(kust["resources"]), "two HPAs would fight"
    rules = yaml.safe_load(load(DEPLOY / "managed" / "prometheus-adapter-rules.yaml")[0]["data"]["config.yaml"])
    (rule,) = rules["rules"]
    assert rule["seriesQuery"].startswith(INFLIGHT_METRIC + "{")
    assert rule["name"]["as"] == INFLIGHT_METRIC


def test_external_gateway_engine_url_resolves_to_the_vllm_service() -> None:
    docs = docs_in(DEPLOY / "external")
    gateway = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "vllm-rerank-gateway")
    (c,) = containers(gateway)
    args = c["args"]
    urls = [args[i + 1] for i, a in enumerate(args) if a == "--engine-url"]
    assert urls == ["http://vllm:8000"]
    assert "nvidia.com/gpu" not in c["resources"].get("limits", {}), "the gateway needs no GPU"
    svc = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "vllm")
    host, port = re.match(r"http://([^:/]+):(\d+)$", urls[0]).groups()  # type: ignore[union-attr]
    assert host == svc["metadata"]["name"] and int(port) in {p["port"] for p in svc["spec"]["ports"]}


@pytest.mark.parametrize(
    "path", [p for p in manifest_files() if p.name != "kustomization.yaml"], ids=lambda p: str(p.relative_to(DEPLOY))
)
def test_schema_valid_with_kubernetes_validate(path: Path) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="`pip install kubernetes-validate` for schema checks")
    for doc in load(path):
        try:
            kv.validate(doc, kv.latest_version(), strict=True)
        except kv.ValidationError as exc:
            pytest.fail(f"{path}: {doc['kind']}/{doc['metadata']['name']}: {exc.message}")


def test_documented_docker_stop_timeouts_cover_the_stop_budget() -> None:
    """Every `--stop-timeout N` / `docker stop -t N` / `stop_grace_period: Ns` in docs/deploy.md and the
    Dockerfile covers a full stop with the default --stop-grace, and the grace periods in the docs'
    Kubernetes paragraph are the manifests'."""
    from gateway.settings import Settings

    default = stop_budget(Settings().stop_grace, engines=True)
    for path in (ROOT / "docs" / "deploy.md", ROOT / "Dockerfile"):
        text = path.read_text()
        found = re.findall(r"(?:--stop-timeout |docker stop -t |stop_grace_period: )(\d+)", text)
        assert found, f"{path.name}: no Docker stop timeout documented"
        for value in found:
            assert int(value) > default + 1, f"{path.name}: stop timeout {value}s < {default + 1}s"
    text = (ROOT / "docs" / "deploy.md").read_text()
    for directory, name in (("managed", "vllm-rerank"), ("external", "vllm-rerank-gateway")):
        deployment = next(
            d for d in docs_in(DEPLOY / directory) if d["kind"] == "Deployment" and d["metadata"]["name"] == name
        )
        seconds = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert f"{seconds} s for" in text, (directory, seconds)


def test_docs_settings_table_matches_the_settings() -> None:
    """docs/deploy.md's table lists every (env var, flag) pair of gateway/settings.py, and no other."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    rows = set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \| `(--[a-z0-9-]+)` \|", text, flags=re.MULTILINE))
    expected = {(o.env, o.flag) for o in _OPTIONS}
    assert rows == expected, f"missing: {sorted(expected - rows)}; stale: {sorted(rows - expected)}"
