#!/usr/bin/env bash
# Runs HERE (network): stage everything the GPU run needs into the git-ignored .gpu/ folder.
#   1. real vllm 0.26 (CUDA) as two ~40 MiB chunks .gpu/c01, .gpu/c02 (../shared/gpu/download_wheels.sh)
#   2. the shared GPU tools (gpu.sh, build_models.py, ...) as .gpu/tools
#   3. the gateway's own dependencies the GPU image lacks (vllm's site already brings fastapi,
#      starlette, uvicorn, pydantic, httptools): orjson, stamina + tenacity; py-spy for profiling
# Then follow the device calls listed at the top of run_gpu.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"; cd "$ROOT"
SHARED="${SHARED_GPU:-$ROOT/../shared/gpu}"
[ -d .gpu/c01 ] || "$SHARED/download_wheels.sh" .gpu
rm -rf .gpu/tools && cp -r "$SHARED" .gpu/tools
mkdir -p .gpu/extra
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 \
    -d .gpu/extra -r bench/gpu/requirements-extra.txt
du -sh .gpu/c0* .gpu/tools .gpu/extra
