"""deploy/ray/config.yaml against Ray's own schema and the service (offline; no cluster).

The config validates with ray.serve.schema.ServeDeploySchema; its import path names the builder in
vllm_rerank/ray_serve.py; its flags parse into the service's Settings; the deployment autoscales on
ongoing requests, checks health often enough to leave a dead engine out of routing within seconds,
and gives a stopping replica the time the service's own stop takes (the drain, then the engine's grace).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli import parse_settings
from tests.unit.test_deploy import stop_budget

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "ray" / "config.yaml"
APP = ROOT / "vllm_rerank" / "ray_serve.py"


def config() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    return doc


def the_app() -> dict[str, Any]:
    (app,) = config()["applications"]
    return dict(app)


def the_deployment() -> dict[str, Any]:
    (deployment,) = the_app()["deployments"]
    return dict(deployment)


def test_config_validates_with_rays_own_schema() -> None:
    schema = pytest.importorskip("ray.serve.schema", reason="`pip install -e '.[ray]'` for Ray's schema")
    parsed = schema.ServeDeploySchema.model_validate(config())
    (app,) = parsed.applications
    assert app.route_prefix == "/"
    assert app.deployments[0].name == the_deployment()["name"]


def test_import_path_names_the_builder_and_the_deployment_name_matches() -> None:
    module, attr = the_app()["import_path"].split(":")
    assert Path(*module.split(".")).with_suffix(".py") == APP.relative_to(ROOT)
    tree = ast.parse(APP.read_text())
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert attr in functions
    # The config's `deployments: - name:` must be the @serve.deployment's name, or Ray refuses it.
    assert f'name="{the_deployment()["name"]}"' in APP.read_text()


def test_flags_are_the_standalone_services() -> None:
    flags = [str(f) for f in the_app()["args"]["flags"]]
    parse_settings(flags, environ=the_app()["runtime_env"].get("env_vars", {}))


def test_autoscaling_on_ongoing_requests_within_what_a_replica_accepts() -> None:
    d = the_deployment()
    auto = d["autoscaling_config"]
    assert 1 <= auto["min_replicas"] <= auto["max_replicas"]
    assert 0 < auto["target_ongoing_requests"] <= d["max_ongoing_requests"]
    assert d["max_queued_requests"] > 0, "a bounded queue: past it Serve answers 503"


def test_health_and_shutdown_follow_the_services_rules() -> None:
    d = the_deployment()
    # A replica whose engine died leaves routing within a few seconds (its requests get 503 + Retry-After).
    assert d["health_check_period_s"] <= 5
    flags = [str(f) for f in the_app()["args"]["flags"]]
    grace = parse_settings(flags, environ={}).stop_grace
    assert d["graceful_shutdown_timeout_s"] > stop_budget(grace, engines=True)


def test_replica_settings_one_engine_per_replica_unless_asked() -> None:
    serve_app = pytest.importorskip("vllm_rerank.ray_serve", reason="`pip install -e '.[ray]'`")
    assert serve_app.replica_settings([], {}).engine_replicas == 1
    assert serve_app.replica_settings(["--engine-replicas", "2"], {}).engine_replicas == 2
    assert serve_app.replica_settings(["--workers", "4"], {}).workers == 1
