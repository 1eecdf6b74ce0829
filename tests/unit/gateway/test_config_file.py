"""--config FILE (YAML or TOML, env RERANK_CONFIG): the same settings as flags, flag > env > file > default."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import parse_settings
from gateway.settings import Settings, SettingsError

YAML = """\
# the guide's production setup, as a file
workers: 2
max-num-seqs: 1024
max_num_batched_tokens: 32768
model-alias: [rerank-v3.5, rerank-2]
strict-model-names: true
log-level: WARNING
vllm-args: [--seed, 0]
"""

TOML = """\
workers = 2
max-num-seqs = 1024
max_num_batched_tokens = 32768
model-alias = ["rerank-v3.5", "rerank-2"]
strict-model-names = true
log-level = "WARNING"
vllm-args = ["--seed", "0"]
"""

FLAGS = [
    "--workers", "2", "--max-num-seqs", "1024", "--max-num-batched-tokens", "32768", "--model-alias", "rerank-v3.5",
    "--model-alias", "rerank-2", "--strict-model-names", "--log-level", "WARNING", "--", "--seed", "0",
]  # fmt: skip


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def without_config(s: Settings) -> dict[str, object]:
    return {k: v for k, v in s.model_dump().items() if k != "config"}


@pytest.mark.parametrize(("name", "text"), [("svc.yaml", YAML), ("svc.toml", TOML), ("svc.yml", YAML)])
def test_a_file_is_equivalent_to_the_same_flags(tmp_path: Path, name: str, text: str) -> None:
    from_file = parse_settings(["--config", write(tmp_path, name, text)], {})
    assert without_config(from_file) == without_config(parse_settings(FLAGS, {}))
    assert from_file.model_aliases == ("rerank-v3.5", "rerank-2") and from_file.vllm_args == ("--seed", "0")


def test_flag_beats_env_beats_file_beats_default(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", "max-num-seqs: 64\nworkers: 3\n")
    assert parse_settings([], {}).max_num_seqs == 256  # default
    assert parse_settings(["--config", path], {}).max_num_seqs == 64  # file over default
    assert parse_settings(["--config", path], {"MAX_NUM_SEQS": "32"}).max_num_seqs == 32  # env over file
    flagged = parse_settings(["--config", path, "--max-num-seqs", "16"], {"MAX_NUM_SEQS": "32"})
    assert flagged.max_num_seqs == 16 and flagged.workers == 3  # flag over env; the rest from the file


def test_rerank_config_env_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "c.toml", "max-num-seqs = 64\n")
    assert parse_settings([], {"RERANK_CONFIG": path}).max_num_seqs == 64
    other = write(tmp_path, "d.toml", "max-num-seqs = 8\n")
    assert parse_settings(["--config", other], {"RERANK_CONFIG": path}).max_num_seqs == 8


def test_vllm_args_from_the_file_come_before_the_command_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", "vllm-args: ['--seed', '1', --enable-prefix-caching]\n")
    s = parse_settings(["--config", path, "--seed", "2"], {})
    assert s.vllm_args == ("--seed", "1", "--enable-prefix-caching", "--seed", "2")


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "c.yaml",
            "workers: 2\nmax-num-seq: 64\n",
            "c.yaml line 2: unknown key 'max-num-seq' (did you mean max-num-seqs?)",
        ),
        ("c.toml", "workers = 2\n\nmodle = 'x'\n", "c.toml line 3: unknown key 'modle' (did you mean model?)"),
        (
            "c.yaml",
            "workers: 2\nmax-num-seqs: 0\n",
            "c.yaml line 2: max-num-seqs: --max-num-seqs/MAX_NUM_SEQS: Input should be greater than or equal to 1",
        ),
        ("c.toml", "port = 'http'\n", "c.toml line 1: port: --port/PORT: Input should be a valid integer"),
        ("c.yaml", "log-level: loud\n", "c.yaml line 1: log-level: --log-level/LOG_LEVEL: Input should be"),
        ("c.yaml", "config: other.yaml\n", "c.yaml line 1: unknown key 'config'"),
        ("c.yaml", "vllm-args: --seed 0\n", "c.yaml line 1: 'vllm-args' must be a list of strings"),
        ("c.yaml", "workers: 2\nworkers: 3\n", "line 2: 'workers' is set a second time (first on line 1)"),
        ("c.yaml", "max-num-seqs: 2\nmax_num_seqs: 3\n", "line 2: 'max_num_seqs' sets --max-num-seqs a second time"),
        ("c.yaml", "- workers\n", "expected a mapping of settings"),
        ("c.yaml", "workers: [1\n", "not valid YAML"),
        ("c.toml", "workers = \n", "not valid TOML"),
    ],
)
def test_errors_name_the_file_line_and_key(tmp_path: Path, name: str, text: str, expected: str) -> None:
    with pytest.raises(SettingsError) as exc:
        parse_settings(["--config", write(tmp_path, name, text)], {})
    assert expected in str(exc.value)


def test_a_missing_file_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"cannot read config file .*missing.yaml.* \(--config/RERANK_CONFIG\)"):
        parse_settings(["--config", str(tmp_path / "missing.yaml")], {})


def test_an_empty_file_changes_nothing(tmp_path: Path) -> None:
    s = parse_settings(["--config", write(tmp_path, "c.yaml", "# nothing yet\n")], {})
    assert without_config(s) == without_config(parse_settings([], {}))
