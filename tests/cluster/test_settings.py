from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cluster.settings import SPECS, SettingsError, load

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GabcDe.abcdefghijklmnopqrstuvwxyz0123"


@pytest.fixture(autouse=True)
def _no_local_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a developer's own guildhouse.toml must not leak in


def problems(env: dict[str, str], **kw: object) -> list[str]:
    with pytest.raises(SettingsError) as info:
        load(env, **kw)  # type: ignore[arg-type]
    return info.value.problems


def test_defaults_with_empty_environment() -> None:
    s = load({})
    assert s.discord_token is None and s.uses_sandbox
    assert s.shard_count is None
    assert s.cluster_count is None and 1 <= s.clusters_for(64) <= 64
    assert s.log_level == "INFO" and s.http_port == 8080
    assert s.data_dir == Path(".guildhouse")
    assert s.config_file is None


def test_valid_values_are_typed() -> None:
    s = load(
        {
            "DISCORD_TOKEN": "Bot " + TOKEN,
            "SHARD_COUNT": "8",
            "CLUSTER_COUNT": "4",
            "CLUSTER_ID": "3",
            "OWNER_IDS": "123456789012345678, 223456789012345678",
            "LOG_LEVEL": "debug",
            "LOG_FORMAT": "TEXT",
            "HTTP_PORT": "0",
            "DATABASE_URL": "postgresql://u:pw@db:5432/x",
            "REDIS_URL": "redis://r:6379/1",
            "DISCORD_API_URL": "http://127.0.0.1:8700/api/v10/",
            "DISCORD_GATEWAY_URL": "ws://127.0.0.1:8700/",
            "DATA_DIR": "~/gh",
        },
        config_file=None,
    )
    assert s.discord_token == TOKEN  # the 'Bot ' prefix is dropped
    assert (s.shard_count, s.cluster_count, s.cluster_id) == (8, 4, 3)
    assert s.owner_ids == {123456789012345678, 223456789012345678}
    assert s.log_level == "DEBUG" and s.log_format == "text" and s.http_port == 0
    assert s.discord_api_url == "http://127.0.0.1:8700/api/v10"
    assert not s.data_dir.as_posix().startswith("~")


def test_auto_shard_count() -> None:
    assert load({"SHARD_COUNT": "auto"}).shard_count is None


def test_cluster_count_defaults_to_at_most_one_per_shard() -> None:
    assert load({}).clusters_for(1) == 1
    assert load({"CLUSTER_COUNT": "3"}).clusters_for(8) == 3


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("SHARD_COUNT", "abc", "not a whole number; expected a whole number from 1"),
        ("SHARD_COUNT", "0", "out of range"),
        ("SHARD_COUNT", "-3", "out of range"),
        ("CLUSTER_COUNT", "1.5", "not a whole number"),
        ("CLUSTER_ID", "x", "not a whole number"),
        ("HTTP_PORT", "70000", "out of range; expected a whole number from 0 to 65535"),
        ("LOG_LEVEL", "LOUD", "expected one of DEBUG, INFO"),
        ("LOG_FORMAT", "xml", "expected one of auto, json, text"),
        ("OWNER_IDS", "12,abc", "not a Discord user id"),
        ("DATABASE_URL", "mysql://x/y", "expected one of postgres, postgresql"),
        ("DATABASE_URL", "postgresql://", "has no host"),
        ("REDIS_URL", "http://r", "expected one of redis, rediss, unix"),
        ("REDIS_URL", "redis://r:99999", "invalid port"),
        ("DISCORD_API_URL", "ftp://x", "expected one of http, https"),
        ("DISCORD_GATEWAY_URL", "http://x", "expected one of ws, wss"),
        ("REDIS_PREFIX", "has space", "without spaces"),
    ],
)
def test_each_bad_value_is_named(name: str, value: str, needle: str) -> None:
    (line,) = problems({name: value})
    assert line.startswith(f"{name}={value!r} (environment): ")
    assert needle in line


def test_bad_token_is_reported_without_the_token() -> None:
    (line,) = problems({"DISCORD_TOKEN": "not-a-token-secret"})
    assert line.startswith("DISCORD_TOKEN='***'")
    assert "not-a-token-secret" not in line
    assert "three dot-separated parts" in line


def test_every_problem_is_reported_at_once() -> None:
    found = problems({"SHARD_COUNT": "x", "HTTP_PORT": "y", "LOG_LEVEL": "z"})
    assert [p.split("=")[0] for p in found] == ["SHARD_COUNT", "LOG_LEVEL", "HTTP_PORT"]


def test_cross_field_rules() -> None:
    (line,) = problems({"CLUSTER_COUNT": "2", "CLUSTER_ID": "2"})
    assert "CLUSTER_ID=2: must be below CLUSTER_COUNT (2)" in line
    (line,) = problems({"CLUSTER_ID": "0"})
    assert "CLUSTER_ID=0: needs CLUSTER_COUNT" in line
    (line,) = problems({"SHARD_COUNT": "2", "CLUSTER_COUNT": "3"})
    assert "more clusters than shards" in line


def test_toml_file_and_environment_precedence(tmp_path: Path) -> None:
    cfg = tmp_path / "guildhouse.toml"
    cfg.write_text('shard_count = 6\nlog_level = "warning"\nowner_ids = [123456789012345678]\n')
    s = load({"LOG_LEVEL": "ERROR"}, config_file=cfg)
    assert s.shard_count == 6
    assert s.log_level == "ERROR"  # the environment wins
    assert s.owner_ids == {123456789012345678}
    assert s.config_file == cfg


def test_bad_toml_values_name_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "guildhouse.toml"
    cfg.write_text('shard_count = "many"\nbogus = 1\n')
    found = problems({}, config_file=cfg)
    assert any(p.startswith("SHARD_COUNT='many' (guildhouse.toml): ") for p in found)
    assert any(p.startswith("bogus (in guildhouse.toml): unknown setting") for p in found)


def test_unreadable_and_invalid_toml(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("shard_count = = 3")
    assert "is not valid TOML" in problems({"GUILDHOUSE_CONFIG": str(broken)})[0]
    missing = tmp_path / "missing.toml"
    assert "cannot be read" in problems({"GUILDHOUSE_CONFIG": str(missing)})[0]


def test_masked_hides_secrets() -> None:
    s = load(
        {
            "DISCORD_TOKEN": TOKEN,
            "DATABASE_URL": "postgresql://u:hunter2@db/x",
            "REDIS_URL": "redis://:s3cret@r:6379/0",
        }
    )
    shown = s.masked()
    assert set(shown) == {spec.env for spec in SPECS}
    text = repr(shown)
    for secret in (TOKEN, "hunter2", "s3cret"):
        assert secret not in text
    assert shown["DISCORD_TOKEN"] == "***"
    assert shown["DATABASE_URL"] == "postgresql://u:***@db/x"


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cluster.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_config_check_bad_shard_count_exits_2_with_one_line(tmp_path: Path) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if k not in {s.env for s in SPECS}}
    env["SHARD_COUNT"] = "lots"
    done = _cli("config", "check", env=env, cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("guildhouse: bad setting: SHARD_COUNT='lots'")


def test_config_check_prints_masked_settings(tmp_path: Path) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if k not in {s.env for s in SPECS}}
    env.update(DISCORD_TOKEN=TOKEN, DATABASE_URL="postgresql://u:hunter2@db/x")
    done = _cli("config", "check", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert TOKEN not in done.stdout and "hunter2" not in done.stdout
    assert "SHARD_COUNT" in done.stdout and "settings OK" in done.stdout


def test_readme_documents_every_setting(repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text()
    missing = [spec.env for spec in SPECS if f"`{spec.env}`" not in readme]
    assert not missing, f"README settings table lacks {missing}"
