"""Statistics' and analytics' settings (STATS_*, ANALYTICS_*, PUBLIC_URL): checked by the
launcher like every setting and handed to the workers in WorkerConfig, never read there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cluster.launcher import feature_configs
from cluster.settings import SettingsError, load


def problems(env: dict[str, str]) -> list[str]:
    with pytest.raises(SettingsError) as info:
        load(env)
    return info.value.problems


def test_defaults_reach_the_workers_as_before() -> None:
    stats, analytics = feature_configs(load({}))
    assert (stats.rename_window, stats.settle, stats.rename_budget) == (600.0, 10.0, 1.0)
    assert (stats.poll, stats.flush, stats.heartbeat_channel) == (600.0, 30.0, None)
    assert (stats.heartbeat_every, stats.presence_every, stats.presence_lines) == (300.0, 0.0, ())
    assert (analytics.flush, analytics.link_secret) == (10.0, None)
    assert analytics.public_url == "http://localhost:8080"


def test_values_are_typed_and_handed_to_the_workers() -> None:
    settings = load(
        {
            "STATS_RENAME_WINDOW": "6",
            "STATS_FLUSH": "0.5",
            "STATS_HEARTBEAT_CHANNEL": "123456789012345678",
            "STATS_HEARTBEAT_EVERY": "2",
            "STATS_PRESENCE_EVERY": "120",
            "STATS_PRESENCE_LINES": "dice | {guilds} tables |",
            "ANALYTICS_FLUSH": "0.2",
            "ANALYTICS_LINK_SECRET": "s3cret-s3cret-s3cret",
            "PUBLIC_URL": "https://bot.example.org/",
        }
    )
    stats, analytics = feature_configs(settings)
    assert (stats.rename_window, stats.flush) == (6.0, 0.5)
    assert stats.heartbeat_channel == 123456789012345678
    assert stats.heartbeat_every == 120.0  # minutes in the setting, seconds for the worker
    assert stats.presence_every == 120.0
    assert stats.presence_lines == ("dice", "{guilds} tables")
    assert analytics.flush == 0.2
    assert analytics.link_secret == "s3cret-s3cret-s3cret"
    assert analytics.public_url == "https://bot.example.org"
    shown = settings.masked()
    assert shown["ANALYTICS_LINK_SECRET"] == "***"
    assert shown["STATS_PRESENCE_LINES"] == "dice | {guilds} tables"
    assert "s3cret" not in repr(analytics)


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("STATS_POLL", "often", "is not a number; expected a number of seconds from 1 to 86400"),
        ("STATS_FLUSH", "0", "out of range"),
        ("STATS_RENAME_BUDGET", "-1", "out of range"),
        ("STATS_PRESENCE_EVERY", "30", "from 60 to 86400, or 0 for off"),
        ("STATS_HEARTBEAT_CHANNEL", "#general", "not a Discord channel id"),
        ("STATS_HEARTBEAT_EVERY", "0", "a number of minutes"),
        ("STATS_PRESENCE_LINES", "x" * 129, "at most 128 characters"),
        ("ANALYTICS_FLUSH", "ten", "is not a number"),
        ("PUBLIC_URL", "bot.example.org", "expected one of http, https"),
    ],
)
def test_each_bad_value_is_named(name: str, value: str, needle: str) -> None:
    (line,) = problems({name: value})
    assert line.startswith(f"{name}={value!r} (environment): ")
    assert needle in line


def test_a_short_link_secret_is_refused_without_showing_it() -> None:
    (line,) = problems({"ANALYTICS_LINK_SECRET": "hunter2"})
    assert line.startswith("ANALYTICS_LINK_SECRET='***'")
    assert "hunter2" not in line
    assert "at least 16 characters" in line


def test_the_workers_read_no_feature_setting_from_the_environment(repo_root: Path) -> None:
    read = re.compile(r"(environ|getenv)\b.{0,40}[\"'](STATS_|ANALYTICS_|PUBLIC_URL)")
    found = [
        str(path.relative_to(repo_root))
        for path in sorted((repo_root / "bot").rglob("*.py"))
        if read.search(path.read_text())
    ]
    assert not found
    assert read.search('os.environ.get("STATS_POLL", "600")')  # the pattern finds a read
