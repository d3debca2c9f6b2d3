"""Statistics end to end: the real bot (two clusters, two shards) against a sandbox whose long
windows are scaled down (`--window-scale 0.02`: 2 renames of a channel per 12 s instead of 10
minutes; the bot is told the same window through STATS_RENAME_WINDOW). Counter channels follow
joins, leaves and bans; a raid is coalesced into at most 2 renames a window with no 429; a
daily report due now (its job's due time moved, as the clock passing would) arrives once with
its PNG; a report due while the bot was down arrives on start, marked late."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis
from e2e_harness import (
    Driver,
    SandboxProc,
    png_size,
    running_sandbox,
    start_cluster,
    text_of,
    world_of,
)
from waits import until

from bot.config import StatsConfig
from bot.db.pool import connect
from cluster.workers import Supervisor
from ipc.client import Keys

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(400)]

EXTENSIONS = ("bot.cogs.general", "bot.cogs.admin", "bot.cogs.stats")
WINDOW_SCALE = 0.02
RENAME_WINDOW = 600 * WINDOW_SCALE  # 12 s
DISCORD_EPOCH_MS = 1420070400000
CHANNEL_UPDATE = 11
# The workers' STATS_* settings (WorkerConfig.stats), shrunk with the sandbox's windows.
TUNING = StatsConfig(
    rename_window=RENAME_WINDOW,
    settle=1,
    flush=0.5,
    rename_budget=20,
    presence_every=60,  # the floor: the rotating presence, once a minute
)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProc]:
    with running_sandbox(
        "--guilds",
        "2",
        "--members",
        "20",
        "--seed",
        "29",
        "--identify-interval",
        "0.2",
        "--route-window",
        "1",
        "--window-scale",
        str(WINDOW_SCALE),
    ) as sb:
        yield sb


@dataclass
class Server:
    guild_id: int
    general: int
    dice: int
    voice: int
    mod_log: int
    owner_id: int
    members: list[int]


@dataclass
class Env:
    supervisor: Supervisor
    dsn: str
    servers: list[Server]
    api: str
    token: str
    control: str
    redis_url: str
    keys: Keys
    sandbox: SandboxProc


async def _start(
    sandbox: SandboxProc, dsn: str, redis_url: str, prefix: str, heartbeat: int
) -> Supervisor:
    """The cluster, with TUNING and the owners' heartbeat in channel `heartbeat`."""
    stats = replace(TUNING, heartbeat_channel=heartbeat)
    return await start_cluster(
        sandbox,
        dsn,
        redis_url,
        shards=2,
        clusters=2,
        owner_id=123456789012345678,
        prefix=prefix,
        adjust=lambda c: replace(c, extensions=EXTENSIONS, stats=stats),
    )


@pytest.fixture(scope="module")
async def env(sandbox: SandboxProc, bot_db: str, redis_url: str) -> AsyncIterator[Env]:
    world = await world_of(sandbox)
    servers = []
    for g in world["guilds"]:
        channels = {c["name"]: int(c["id"]) for c in g["channels"]}
        owner = int(g["owner_id"])
        plain = [int(m["id"]) for m in g["members"] if not m["roles"] and int(m["id"]) != owner]
        servers.append(
            Server(
                int(g["id"]),
                channels["general"],
                channels["dice"],
                channels["Voice"],
                channels["mod-log"],
                owner,
                plain,
            )
        )
    prefix = f"e2e:{uuid.uuid4().hex[:8]}:"
    sup = await _start(sandbox, bot_db, redis_url, prefix, servers[1].mod_log)
    e = Env(
        sup,
        bot_db,
        servers,
        sandbox.info["api_url"],
        sandbox.info["token"],
        sandbox.control,
        redis_url,
        Keys(prefix),
        sandbox,
    )
    try:
        yield e
    finally:
        await e.supervisor.stop()


async def discord(env: Env, method: str, path: str) -> Any:
    """Ask Discord (the sandbox's REST API) as the bot."""
    headers = {"Authorization": f"Bot {env.token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, env.api + path, headers=headers) as resp,
    ):
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def control(env: Env, method: str, path: str, body: Any = None) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, env.control + path, json=body) as resp,
    ):
        assert resp.status < 300, await resp.text()
        return await resp.json(content_type=None)


async def _guild(env: Env, guild_id: int) -> dict[str, Any]:
    # The control API, not the bot's REST routes: the test's looks must not spend the bot's
    # rate limits (or add 429s to the count under test).
    world = await control(env, "GET", "/_sandbox/world")
    return next(g for g in world["guilds"] if int(g["id"]) == guild_id)


async def channel_name(env: Env, guild_id: int, channel_id: int) -> str:
    g = await _guild(env, guild_id)
    return str(next(c["name"] for c in g["channels"] if int(c["id"]) == channel_id))


async def member_count(env: Env, guild_id: int) -> int:
    return len((await _guild(env, guild_id))["members"]) + 1  # the summary leaves out the bot


async def rename_times(env: Env, s: Server, channel_id: int) -> list[float]:
    """When the bot renamed the channel (s), from the server's audit log, oldest first."""
    log = await discord(
        env, "GET", f"/guilds/{s.guild_id}/audit-logs?action_type={CHANNEL_UPDATE}&limit=100"
    )
    times = [
        ((int(e["id"]) >> 22) + DISCORD_EPOCH_MS) / 1000
        for e in log["audit_log_entries"]
        if int(e["target_id"]) == channel_id
        and any(c["key"] == "name" for c in e.get("changes") or [])
    ]
    return sorted(times)


def most_in_a_window(times: list[float], window: float) -> int:
    return max((sum(1 for u in times if t <= u < t + window) for t in times), default=0)


async def ask(driver: Driver, channel: int, author: int, text: str) -> str:
    await driver.drain(channel)
    await driver.say(channel, author, text)
    return await driver.reply_text(channel, wait=20)


async def test_joins_leaves_and_a_ban_move_the_counters(env: Env, driver: Driver) -> None:
    s = env.servers[0]
    answer = await ask(driver, s.general, s.owner_id, f"!stats channel members <#{s.voice}>")
    start = await member_count(env, s.guild_id)
    assert f"now counts members: **Members: {start:,}**" in answer
    answer = await ask(driver, s.general, s.owner_id, f"!stats channel bans <#{s.dice}>")
    assert "now counts bans: **Bans: 0**" in answer
    answer = await ask(
        driver, s.general, s.owner_id, '!stats format members "👥 Members: {count:,}"'
    )
    assert "👥 Members: 1,234" in answer
    before = await control(env, "GET", "/_sandbox/stats")
    for i in range(3):
        await control(
            env,
            "POST",
            "/_sandbox/events",
            {"kind": "member_add", "guild_id": str(s.guild_id), "username": f"newcomer{i}"},
        )
    await control(
        env,
        "POST",
        "/_sandbox/events",
        {"kind": "member_remove", "guild_id": str(s.guild_id), "user_id": str(s.members[0])},
    )
    await control(
        env,
        "POST",
        "/_sandbox/events",
        {
            "kind": "ban",
            "guild_id": str(s.guild_id),
            "user_id": str(s.members[1]),
            "moderator_id": str(s.owner_id),
            "reason": "spam",
        },
    )
    want_members = f"👥 Members: {start + 3 - 2:,}"
    assert await member_count(env, s.guild_id) == start + 1

    async def shown() -> bool:
        return (
            await channel_name(env, s.guild_id, s.voice),
            await channel_name(env, s.guild_id, s.dice),
        ) == (
            want_members,
            "Bans: 1",
        )

    await until(
        "the counters show the joins, the leave and the ban", shown, within=3 * RENAME_WINDOW + 30
    )
    for channel in (s.voice, s.dice):
        assert most_in_a_window(await rename_times(env, s, channel), RENAME_WINDOW) <= 2
    after = await control(env, "GET", "/_sandbox/stats")
    assert after["rate_limited"] == before["rate_limited"]
    assert after["invalid_requests"] == before["invalid_requests"]


async def test_a_raid_of_500_is_at_most_two_renames_a_window_and_no_429(
    env: Env, driver: Driver
) -> None:
    s = env.servers[1]
    answer = await ask(driver, s.general, s.owner_id, f"!stats channel members <#{s.voice}>")
    assert "now counts members" in answer
    before = await control(env, "GET", "/_sandbox/stats")
    renamed_before = len(await rename_times(env, s, s.voice))
    for _ in range(10):  # 500 joins in well under the (scaled) minute
        await control(
            env,
            "POST",
            "/_sandbox/events",
            {"kind": "raid", "guild_id": str(s.guild_id), "count": 50},
        )
    final = await member_count(env, s.guild_id)
    want = f"Members: {final:,}"

    async def shows_final() -> bool:
        return await channel_name(env, s.guild_id, s.voice) == want

    await until(f"the counter shows {want}", shows_final, within=3 * RENAME_WINDOW + 30)
    times = await rename_times(env, s, s.voice)
    assert most_in_a_window(times, RENAME_WINDOW) <= 2
    # The raid (500 member events) took at most two renames: the burst settled, then the rest.
    assert len(times) - renamed_before <= 2
    after = await control(env, "GET", "/_sandbox/stats")
    assert after["rate_limited"] == before["rate_limited"]
    assert after["invalid_requests"] == before["invalid_requests"]


async def test_stats_on_demand_and_what_is_refused(env: Env, driver: Driver) -> None:
    s = env.servers[1]
    member = s.members[-1]
    for _ in range(3):
        await driver.say(s.dice, member, "chatting away")
    await driver.drain(s.general)
    await driver.say(s.general, member, "!stats")
    [shown] = await driver.replies(s.general, wait=20)
    text = text_of(shown)
    assert "Today so far" in text and "Messages" in text
    assert await png_size(env.control, shown) == (800, 400)
    assert "The span must be 1 to 365 days, not 400." in await ask(
        driver, s.general, member, "!stats history 400d"
    )
    assert "last 14 days" in text_of(await _history(driver, s.general, member, "!stats history 2w"))
    assert await ask(driver, s.general, member, "!stats off") == "This command is for admins."
    assert "must contain `{count}`" in await ask(
        driver, s.general, s.owner_id, '!stats format members "Members"'
    )
    assert "`roles` is not a counter; use one of members, online, bans." in await ask(
        driver, s.general, s.owner_id, f"!stats channel roles <#{s.dice}>"
    )
    assert "not a time zone I know" in await ask(
        driver, s.general, s.owner_id, f"!stats report <#{s.general}> 9 Mars/Olympus"
    )


async def _history(driver: Driver, channel: int, author: int, text: str) -> dict[str, Any]:
    await driver.drain(channel)
    await driver.say(channel, author, text)
    [entry] = await driver.replies(channel, wait=20)
    return entry


# -- heartbeat ---------------------------------------------------------------------------------


async def test_the_heartbeat_is_one_message_edited_in_place(env: Env, driver: Driver) -> None:
    s = env.servers[1]
    conn = await connect(env.dsn)
    seen: list[dict[str, Any]] = []
    healthy = "**2** clusters up · **2/2** shards READY"

    async def next_slot() -> None:
        """The next slot comes: its job (scheduled when the last one completed) is due now,
        and the runners are told."""

        async def scheduled() -> bool:
            return bool(
                await conn.fetchval(
                    "SELECT count(*) FROM jobs WHERE kind = $1 AND state = 'pending'",
                    "stats.heartbeat",
                )
            )

        await until("the next heartbeat is scheduled", scheduled)
        await conn.execute(
            "UPDATE jobs SET due_at = now() WHERE kind = $1 AND state = 'pending'",
            "stats.heartbeat",
        )
        await _wake(env)

    try:
        for _ in range(4):
            got = await driver.replies(s.mod_log, wait=30)
            seen += [e for e in got if "Heartbeat" in text_of(e)]
            if seen and healthy in text_of(seen[-1]):
                break
            await next_slot()
        assert seen, "no heartbeat"
        count = len(seen)
        await next_slot()
        seen += [e for e in await driver.replies(s.mod_log, wait=30) if "Heartbeat" in text_of(e)]
        assert len(seen) == count + 1
    finally:
        await conn.close()
    last = text_of(seen[-1])
    assert healthy in last and "Cluster 0" in last and "Cluster 1" in last
    assert "PostgreSQL" in last and "events/s" in last and "MiB" in last
    # One message, then edits of it.
    assert [e.get("kind") for e in seen][1:] == ["edit"] * (len(seen) - 1)
    assert len({str((e.get("data") or e).get("id")) for e in seen}) == 1


# -- reports -----------------------------------------------------------------------------------


async def _wake(env: Env) -> None:
    redis = aioredis.Redis.from_url(env.redis_url)
    try:
        await redis.publish(env.keys("jobs", "wake"), b"new")
    finally:
        await redis.aclose()


async def _reports(driver: Driver, channel: int, wait: float) -> list[dict[str, Any]]:
    got = await driver.replies(channel, wait=wait, count=1)
    return [e for e in got if "statistics" in text_of(e)]


async def _pending(conn: asyncpg.Connection, guild_id: int, kind: str = "daily") -> str | None:
    key: str | None = await conn.fetchval(
        "SELECT key FROM jobs WHERE kind = 'stats.report' AND key LIKE $1 AND state = 'pending'",
        f"{guild_id}:{kind}:%",
    )
    return key


async def _due_report_sent_once(
    env: Env, driver: Driver, s: Server, conn: asyncpg.Connection, kind: str
) -> tuple[str, str, str]:
    """The clock reaches the server's pending `kind` report: its job is made due now and both
    clusters are told. It arrives once with its 800 × 400 chart, its job is done, the next
    period's is chained, and nothing more arrives. Returns (key, the next key, the text)."""
    key = await _pending(conn, s.guild_id, kind)
    assert key is not None
    await conn.execute(
        "UPDATE jobs SET due_at = now() WHERE kind = 'stats.report' AND key = $1", key
    )
    await _wake(env)
    [sent] = await _reports(driver, s.general, wait=60)
    assert await png_size(env.control, sent) == (800, 400)

    async def chained() -> bool:
        nxt = await _pending(conn, s.guild_id, kind)
        return nxt is not None and nxt != key

    await until(f"the next {kind} report is scheduled", chained)
    nxt = await _pending(conn, s.guild_id, kind)
    assert nxt is not None
    assert await conn.fetchval("SELECT state FROM jobs WHERE key = $1", key) == "done"
    await _wake(env)
    assert await _reports(driver, s.general, wait=3) == []
    return key, nxt, text_of(sent)


async def test_a_daily_report_arrives_once_with_its_chart_then_late_after_downtime(
    env: Env, driver: Driver
) -> None:
    s = env.servers[0]
    for _ in range(5):
        await driver.say(s.general, s.members[2], "hello there")
    answer = await ask(driver, s.general, s.owner_id, f"!stats report <#{s.general}> 9 UTC")
    assert "Daily reports go to" in answer
    conn = await connect(env.dsn)
    try:
        key, nxt, text = await _due_report_sent_once(env, driver, s, conn, "daily")
        assert "Daily statistics" in text and "(late)" not in text
        # Exactly once: one report row too.
        period = key.split(":", 1)[1]
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM stats_reports WHERE guild_id = $1 AND period = $2",
                s.guild_id,
                period,
            )
            == 1
        )

        # The bot is down when the next report is due; it arrives on start, marked late.
        await env.supervisor.stop()
        await conn.execute("UPDATE jobs SET due_at = now() - interval '1 hour' WHERE key = $1", nxt)
        env.supervisor = await _start(
            env.sandbox, env.dsn, env.redis_url, env.keys.prefix, env.servers[1].mod_log
        )
        [late] = await _reports(driver, s.general, wait=60)
        assert "(late)" in text_of(late) and "sent late" in text_of(late)
        assert await png_size(env.control, late) == (800, 400)

        async def late_done() -> bool:
            state = await conn.fetchval("SELECT state FROM jobs WHERE key = $1", nxt)
            return bool(state == "done")

        await until("the late report's job is done", late_done)
        assert await conn.fetchval(
            "SELECT late FROM stats_reports WHERE guild_id = $1 AND period = $2",
            s.guild_id,
            nxt.split(":", 1)[1],
        )
    finally:
        await conn.close()


async def test_a_weekly_report_arrives_once_with_its_chart(env: Env, driver: Driver) -> None:
    s = env.servers[1]
    answer = await ask(driver, s.general, s.owner_id, f"!stats report <#{s.general}> 9 UTC")
    assert "Daily reports go to" in answer
    answer = await ask(driver, s.general, s.owner_id, "!stats schedule weekly on")
    assert f"The weekly report is on to <#{s.general}>." in answer
    conn = await connect(env.dsn)
    try:
        key, nxt, text = await _due_report_sent_once(env, driver, s, conn, "weekly")
        assert "Weekly statistics" in text and "(late)" not in text
        monday = date.fromisoformat(key.rsplit(":", 1)[1])
        assert monday.weekday() == 0
        assert date.fromisoformat(nxt.rsplit(":", 1)[1]) == monday + timedelta(days=7)
    finally:
        await conn.close()


async def test_stats_setup_makes_locked_counter_channels_that_move(
    env: Env, driver: Driver
) -> None:
    """`stats setup` through the sandbox's Create Guild Channel: a category with voice counters
    nobody can join (or, with `text`, text counters nobody can write in), each named with the
    count, then following a join and a ban."""
    s = env.servers[0]
    answer = await ask(driver, s.general, s.owner_id, "!stats setup members bans")
    assert "Counter channels made in **📊 Server Stats**" in answer
    g = await _guild(env, s.guild_id)
    [category] = [c for c in g["channels"] if c["name"] == "📊 Server Stats"]
    assert category["type"] == 4
    made = {c["name"].split(":")[0]: c for c in g["channels"] if c["parent_id"] == category["id"]}
    assert set(made) == {"Members", "Bans"}
    members, bans = made["Members"], made["Bans"]
    start = await member_count(env, s.guild_id)
    assert members["name"] == f"Members: {start:,}" and members["type"] == 2
    banned = int(bans["name"].split(": ")[1])
    for made_id in (category["id"], members["id"], bans["id"]):  # @everyone can't join
        ch = await discord(env, "GET", f"/channels/{made_id}")
        everyone = next(o for o in ch["permission_overwrites"] if int(o["id"]) == s.guild_id)
        assert int(everyone["deny"]) & (1 << 20)  # CONNECT
    assert f"<#{members['id']}>" in answer and f"<#{bans['id']}>" in answer
    present = {int(m["id"]) for m in g["members"]}
    victim = next(u for u in s.members[2:] if u in present)
    for i in range(2):
        await control(
            env,
            "POST",
            "/_sandbox/events",
            {"kind": "member_add", "guild_id": str(s.guild_id), "username": f"setup-new{i}"},
        )
    await control(
        env,
        "POST",
        "/_sandbox/events",
        {
            "kind": "ban",
            "guild_id": str(s.guild_id),
            "user_id": str(victim),
            "moderator_id": str(s.owner_id),
            "reason": "spam",
        },
    )
    want = (f"Members: {start + 2 - 1:,}", f"Bans: {banned + 1}")  # two joins, a ban (a leave)

    async def moved() -> bool:
        got = (
            await channel_name(env, s.guild_id, int(members["id"])),
            await channel_name(env, s.guild_id, int(bans["id"])),
        )
        return got == want

    await until("the new counters show the join and the ban", moved, within=3 * RENAME_WINDOW + 30)
    # Text counters: locked for writing instead.
    t = env.servers[1]
    answer = await ask(driver, t.general, t.owner_id, "!stats setup text members")
    assert "Counter channels made" in answer
    g = await _guild(env, t.guild_id)
    [category] = [c for c in g["channels"] if c["name"] == "📊 Server Stats"]
    [counter] = [c for c in g["channels"] if c["parent_id"] == category["id"]]
    assert counter["type"] == 0
    assert counter["name"] == f"Members: {await member_count(env, t.guild_id):,}"
    counter = await discord(env, "GET", f"/channels/{counter['id']}")
    everyone = next(o for o in counter["permission_overwrites"] if int(o["id"]) == t.guild_id)
    assert int(everyone["deny"]) & (1 << 11)  # SEND_MESSAGES


async def test_the_rotating_presence_is_set_on_every_shard_never_too_often(env: Env) -> None:
    """Every shard (one per cluster) shows the rotation's lines, the same line at the same
    time, moving on once a minute: within Discord's 5 updates per 20 s (the sandbox would
    close a shard with 4008 beyond it), so none refused and no 4008."""

    async def rotated() -> bool:
        shards = (await control(env, "GET", "/_sandbox/presence"))["shards"]
        return len(shards) == 2 and all(
            len({u["activities"][0]["name"] for u in s["updates"] if u["via"] == "update"}) >= 2
            for s in shards
        )

    try:
        await until("every shard's presence rotated once", rotated, within=150)
    finally:
        seen = await control(env, "GET", "/_sandbox/presence")
        print("the sandbox's presences:", seen)  # captured; shown when the test fails
    guilds = len((await control(env, "GET", "/_sandbox/world"))["guilds"])
    lines = {(3, f"{guilds:,} servers"), (2, "/help")}  # watching, listening
    for s in seen["shards"]:
        assert s["refused"] == 0
        ups = [u for u in s["updates"] if u["via"] == "update"]
        assert {(u["activities"][0]["type"], u["activities"][0]["name"]) for u in ups} == lines
        times = [u["at"] for u in ups]
        assert all(sum(1 for u in times if t <= u < t + 20) <= 5 for t in times)
        # A new line at most once a minute (the same line may be set again on a reconnect).
        moved = [b["at"] for a, b in itertools.pairwise(ups) if a["activities"] != b["activities"]]
        assert all(later - earlier >= 55 for earlier, later in itertools.pairwise(moved))
    stats = await control(env, "GET", "/_sandbox/stats")
    assert "4008" not in stats["close_codes"]
