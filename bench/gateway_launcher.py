#!/usr/bin/env python3
"""Run the gateway app (gateway.app.create_app) against already-running engines, no supervisor.

A fallback for services whose start_service.py has no `--engine-url` yet: the benchmark uses
it to put a gateway in front of the stub engine (or in front of another service's engine).
Every start_service flag the settings parser knows is accepted (e.g. --workers 2,
--score-cache-size N once it exists).

    python bench/gateway_launcher.py --engine-url http://127.0.0.1:9100 --port 8100 --workers 1
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_ENGINES_ENV = "VLLM_RERANK_BENCH_ENGINES"

__all__ = ["create_app_from_env", "main"]


def create_app_from_env():  # type: ignore[no-untyped-def]
    """uvicorn factory (one call per worker process)."""
    sys.path.insert(0, str(ROOT))
    import orjson

    from engine import EngineRegistry
    from gateway.app import create_app
    from gateway.settings import SETTINGS_ENV, Settings

    settings = Settings.from_json(os.environ[SETTINGS_ENV])
    engines = orjson.loads(os.environ[_ENGINES_ENV])
    registry = EngineRegistry(static=engines)
    return create_app(settings, registry=registry)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    import orjson
    import uvicorn

    from gateway.options import parse_settings
    from gateway.settings import SETTINGS_ENV

    p = argparse.ArgumentParser(add_help=True, description=__doc__)
    p.add_argument("--engine-url", action="append", required=True)
    p.add_argument("--served-model-name-engine", default=None,
                   help="model name the engine serves (default: ask its /v1/models)")
    p.add_argument("--score-kind", default="cosine")
    args, rest = p.parse_known_args(argv)
    settings = parse_settings(rest)
    engine_model = args.served_model_name_engine
    if engine_model is None:
        import httpx

        try:
            engine_model = httpx.get(f"{args.engine_url[0]}/v1/models", timeout=10).json()["data"][0]["id"]
        except Exception:  # noqa: BLE001 - any failure: fall back to the gateway's own name
            engine_model = settings.served_model_name or "stub"
    engines = [{"name": f"engine{i}", "url": u.rstrip("/"), "state": "ready", "served_model_name": engine_model,
                "score_kind": args.score_kind} for i, u in enumerate(args.engine_url)]
    os.environ[SETTINGS_ENV] = settings.to_json()
    os.environ[_ENGINES_ENV] = orjson.dumps(engines).decode()
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT / "bench"))
    uvicorn.run("gateway_launcher:create_app_from_env", factory=True, host=settings.host, port=settings.port,
                workers=settings.workers, log_level=settings.log_level.lower(), access_log=False,
                app_dir=str(ROOT / "bench"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
