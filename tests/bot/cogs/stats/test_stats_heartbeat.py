"""The heartbeat's judgement and message, and the presence rotation's choice (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import discord

from bot.cogs.stats import heartbeat, presence


def cluster(**over: Any) -> dict[str, Any]:
    base = {
        "guilds": 1200,
        "shards": 4,
        "ready_shards": 4,
        "latency": 0.05,
        "events_per_s": 12.5,
        "rss": 80 * 2**20,
        "cpu": 7.0,
        "redis_rtt": 0.0004,
        "postgres_rtt": 0.0009,
    }
    return {**base, **over}


def test_all_well_is_green_with_the_totals() -> None:
    answers = {0: cluster(), 1: cluster(guilds=800)}
    problems = heartbeat.warnings(answers, expected=2, missing=[])
    assert problems == []
    e = heartbeat.embed(answers, problems, datetime(2026, 12, 4, tzinfo=UTC))
    assert e.colour == discord.Colour.green()
    assert "**2** clusters up · **8/8** shards READY · **2,000** servers" in (e.description or "")
    assert "RSS 80 MiB" in str(e.fields[0].value)


def test_what_is_off_is_named_and_turns_it_orange() -> None:
    answers = {
        0: cluster(ready_shards=3, latency=1.5),
        1: cluster(redis_rtt=None, postgres_rtt=0.25, cpu=99.0),
    }
    problems = heartbeat.warnings(answers, expected=4, missing=[2])
    assert problems == [
        "cluster 2 did not answer",
        "1 cluster(s) not registered",
        "cluster 0: 1 shard(s) not READY",
        "cluster 0: gateway latency 1500 ms",
        "cluster 1: redis unreachable",
        "cluster 1: postgres round trip 250 ms",
        "cluster 1: CPU 99 %",
    ]
    e = heartbeat.embed(answers, problems, datetime(2026, 12, 4, tzinfo=UTC))
    assert e.colour == discord.Colour.orange()
    assert e.fields[-1].name == "Warnings"


def test_slots_are_the_interval() -> None:
    s = heartbeat.Setting(channel_id=1, every=300)
    assert s.slot(1_000_000) == 3333
    assert s.due(3333).timestamp() == 999_900


def test_the_rotation_is_the_same_everywhere_and_fills_in_the_count() -> None:
    lines = (*presence.DEFAULT_LINES, "playing:Rolling dice")
    assert presence.pick(lines, 0) == "watching:{guilds:,} servers"
    assert presence.pick(lines, 1) == "listening:/help"
    assert presence.pick(lines, 2) == "playing:Rolling dice"
    assert presence.pick(lines, 3) == lines[0]
    a = presence.activity(lines[0], 12345)
    assert (a.type, a.name) == (discord.ActivityType.watching, "12,345 servers")
    odd = presence.activity("playing:{nope}", 3)
    assert odd.name == "{nope}"


def test_the_next_slot_does_not_depend_on_waking_on_time() -> None:
    """The rotation sleeps until a slot starts and shows that slot's line: a timer that fires
    a moment early (a run of the stats tests showed one line for three minutes, its clusters
    apart) still moves on, one that fires late too, and a loop that fell behind catches up."""
    assert presence.next_slot(10, 11 * 60 - 0.001, 60) == 11  # woke a moment early
    assert presence.next_slot(10, 11 * 60 + 0.01, 60) == 11  # on time
    assert presence.next_slot(10, 10 * 60 + 30, 60) == 11  # the line was set mid-slot
    assert presence.next_slot(10, 14 * 60 + 5, 60) == 14  # slept through three slots
