"""REDIS_URL naming Redis Sentinels: accepted, checked, and shown without its passwords."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.settings import SettingsError, load


@pytest.fixture(autouse=True)
def _no_local_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a developer's own guildhouse.toml must not leak in


def test_a_sentinel_url_is_accepted_and_masked() -> None:
    url = "redis+sentinel://:s3cret@sa:26379,sb:26380,sc/mymaster/1?sentinel_password=sp1"
    s = load({"REDIS_URL": url})
    assert s.redis_url == url
    shown = s.masked()["REDIS_URL"]
    assert "s3cret" not in shown and "sp1" not in shown
    assert shown == ("redis+sentinel://:***@sa:26379,sb:26380,sc/mymaster/1?sentinel_password=***")
    # A plain URL is still checked and shown as before.
    assert load({"REDIS_URL": "redis://:pw@r:6379/0"}).masked()["REDIS_URL"] == (
        "redis://:***@r:6379/0"
    )


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://sa:26379", "names no service"),
        ("redis+sentinel://sa:0/mymaster", "invalid port"),
        ("http://sa/mymaster", "expected one of redis, rediss, unix, redis+sentinel"),
    ],
)
def test_a_bad_redis_url_names_the_setting_and_the_problem(url: str, says: str) -> None:
    with pytest.raises(SettingsError) as info:
        load({"REDIS_URL": url})
    (problem,) = info.value.problems
    assert "REDIS_URL" in problem and says in problem, problem
