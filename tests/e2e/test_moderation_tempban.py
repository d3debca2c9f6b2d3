"""Tempbans end exactly once with two clusters (also when the worker holding the end's claim is
SIGKILLed), and bans made in Discord's own UI become cases (ban sync). The real bot, two worker
processes over four shards, against the sandbox.

The clock is injected: every worker's job runner keeps the time of a clock the test moves
(tests/e2e/clock_cog.py, loaded first). A tempban of one minute is made as a user would; the test
then moves the clock 61 seconds on, and the end is due, without waiting a minute."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis
from e2e_harness import Driver, SandboxProc, start_cluster, world_of
from waits import until

from bot.db.pool import connect
from cluster.workers import Supervisor
from ipc.client import Keys

EXTENSIONS = ("clock_cog", "bot.cogs.general", "bot.cogs.admin", "bot.cogs.moderation")
SHARDS, CLUSTERS = 4, 2
UNBAN_ROUTE = "DELETE /guilds/{guild_id}/bans/{user_id}"

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]


@dataclass
class Server:
    guild_id: int
    cluster: int
    general: int
    owner_id: int
    mod_id: int
    members: list[int]


@dataclass
class Env:
    supervisor: Supervisor
    dsn: str
    redis_url: str
    keys: Keys
    control: str
    servers: list[Server]
    offset: float = 0.0  # how far the test moved the workers' clock (seconds)

    def on(self, cluster: int) -> Server:
        return next(s for s in self.servers if s.cluster == cluster)


@pytest.fixture(scope="module")
async def env(sandbox: SandboxProc, bot_db: str, redis_url: str) -> AsyncIterator[Env]:
    world = await world_of(sandbox)
    servers = []
    for g in world["guilds"]:
        gid = int(g["id"])
        shard = (gid >> 22) % SHARDS
        general = next(int(c["id"]) for c in g["channels"] if c["name"] == "general")
        mod_role = next(r["id"] for r in g["roles"] if r["name"] == "Moderators")
        mods = [int(m["id"]) for m in g["members"] if mod_role in m["roles"]]
        owner = int(g["owner_id"])
        plain = [int(m["id"]) for m in g["members"] if not m["roles"] and int(m["id"]) != owner]
        if mods and len(plain) >= 4:
            servers.append(Server(gid, shard * CLUSTERS // SHARDS, general, owner, mods[0], plain))
    assert {s.cluster for s in servers} == {0, 1}, "the test needs servers on both clusters"
    prefix = f"e2e:{uuid.uuid4().hex[:8]}:"
    sup = await start_cluster(
        sandbox,
        bot_db,
        redis_url,
        shards=SHARDS,
        clusters=CLUSTERS,
        owner_id=123456789012345678,
        prefix=prefix,
        adjust=lambda c: replace(c, extensions=EXTENSIONS),
    )
    try:
        yield Env(sup, bot_db, redis_url, Keys(prefix), sandbox.control, servers)
    finally:
        await sup.stop()


async def control(env: Env, path: str, body: dict[str, Any]) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{env.control}/_sandbox/{path}", json=body) as resp,
    ):
        assert resp.status < 300, await resp.text()
        return await resp.json()


async def route_count(env: Env, route: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"{env.control}/_sandbox/stats") as resp:
        stats = await resp.json()
    return int(stats["requests_per_route"].get(route, 0))


async def ask(driver: Driver, channel: int, author: int, text: str) -> str:
    await driver.drain(channel)
    await driver.say(channel, author, text)
    return await driver.reply_text(channel)


async def pass_time(env: Env, seconds: float = 61) -> None:
    """Move every worker's clock on (clock_cog): what was due within `seconds` is due now."""
    env.offset += seconds
    redis = aioredis.Redis.from_url(env.redis_url)
    try:
        await redis.set(env.keys("test", "clock"), str(env.offset))
        await redis.publish(env.keys("test", "clock"), str(env.offset))
    finally:
        await redis.aclose()


async def value_of(
    what: str, conn: asyncpg.Connection, query: str, *args: Any, within: float = 60
) -> Any:
    """The query's value once it has one (neither NULL nor 0 nor false): waits for `what`."""
    value = None

    async def there() -> bool:
        nonlocal value
        value = await conn.fetchval(query, *args)
        return bool(value)

    await until(what, there, within=within)
    return value


async def tempban(env: Env, driver: Driver, s: Server, target: int) -> tuple[int, str]:
    text = await ask(driver, s.general, s.owner_id, f"!ban <@{target}> cool off --duration 1m")
    assert "banned" in text and "for 1m" in text, text
    number = int(text.split()[1].rstrip(":"))
    return number, f"{s.guild_id}:{target}:{number}"


async def unban_cases(conn: asyncpg.Connection, s: Server, target: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT number, moderator_id, cites FROM mod_cases "
        "WHERE guild_id = $1 AND target_id = $2 AND action = 'unban'",
        s.guild_id,
        target,
    )


async def test_a_tempban_ends_once_with_two_clusters(env: Env, driver: Driver) -> None:
    conn = await connect(env.dsn)
    try:
        ends = []
        for cluster in (0, 1):
            s = env.on(cluster)
            number, key = await tempban(env, driver, s, s.members[0])
            job = await conn.fetchrow("SELECT state, due_at FROM jobs WHERE key = $1", key)
            assert job["state"] == "pending"
            ends.append((s, number, key))
        before = await route_count(env, UNBAN_ROUTE)
        await pass_time(env)
        for s, number, key in ends:
            state = await value_of(
                "the tempban's end done",
                conn,
                "SELECT state FROM jobs WHERE key = $1 AND state = 'done'",
                key,
            )
            assert state == "done"
            claimed = await conn.fetchval("SELECT claimed_by FROM jobs WHERE key = $1", key)
            assert claimed.startswith(f"c{s.cluster}:")  # the cluster that has the server
            cases = await unban_cases(conn, s, s.members[0])
            assert [list(c["cites"]) for c in cases] == [[number]]
        assert await route_count(env, UNBAN_ROUTE) - before == 2  # one unban each
        for s, _, _ in ends:
            status = await driver_ban_status(env, s, s.members[0])
            assert status == 404
    finally:
        await conn.close()


async def driver_ban_status(env: Env, s: Server, user: int) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"{env.control}/_sandbox/world") as resp:
        world = await resp.json()
    token = world["token"]
    api = world["api_url"]
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{api}/guilds/{s.guild_id}/bans/{user}", headers={"Authorization": f"Bot {token}"}
        ) as resp,
    ):
        return resp.status


async def test_a_tempban_ends_once_when_its_claimer_is_sigkilled(env: Env, driver: Driver) -> None:
    s = env.on(1)
    target = s.members[1]
    conn = await connect(env.dsn)
    try:
        number, key = await tempban(env, driver, s, target)
        # The unban is answered with a 429 once, so the claimer holds its claim while it waits.
        await control(
            env, "faults", {"kind": "ratelimit", "route": UNBAN_ROUTE, "retry_after": 8.0}
        )
        old_pid = env.supervisor.workers[s.cluster].pid
        await pass_time(env)
        held = await value_of(
            "the tempban's end claimed",
            conn,
            "SELECT claimed_by FROM jobs WHERE key = $1 AND state = 'running'",
            key,
        )
        assert held and held.startswith(f"c{s.cluster}:")
        env.supervisor.kill(s.cluster)  # SIGKILL, holding the claim
        state = await value_of(
            "the tempban's end done by the restarted worker",
            conn,
            "SELECT state FROM jobs WHERE key = $1 AND state = 'done'",
            key,
            within=90,
        )
        assert state == "done"
        row = await conn.fetchrow("SELECT attempts, claimed_by FROM jobs WHERE key = $1", key)
        assert row["attempts"] == 2 and row["claimed_by"] != held  # the restarted worker's
        assert env.supervisor.workers[s.cluster].pid != old_pid
        cases = await unban_cases(conn, s, target)
        assert [list(c["cites"]) for c in cases] == [[number]]  # ended once
        assert await driver_ban_status(env, s, target) == 404
    finally:
        await conn.close()
    # Leave the cluster whole for what runs next.
    await until("every worker ready again", env.supervisor.ready, within=90)


async def test_a_ban_made_in_discord_is_a_case(env: Env, driver: Driver) -> None:
    s = env.on(0)
    target = s.members[2]
    await control(
        env,
        "events",
        {
            "kind": "ban",
            "guild_id": str(s.guild_id),
            "user_id": str(target),
            "moderator_id": str(s.owner_id),
            "reason": "raid bot",
        },
    )
    conn = await connect(env.dsn)
    try:
        number = await value_of(
            "a case for the ban made in Discord",
            conn,
            "SELECT number FROM mod_cases WHERE guild_id = $1 AND target_id = $2 "
            "AND action = 'ban'",
            s.guild_id,
            target,
        )
        assert number
        case = await conn.fetchrow(
            "SELECT moderator_id, reason, details FROM mod_cases WHERE guild_id = $1 "
            "AND number = $2",
            s.guild_id,
            number,
        )
        assert case["moderator_id"] == s.owner_id  # from the audit log
        assert case["reason"] == "raid bot" and case["details"]["outside"] is True
        await control(
            env,
            "events",
            {
                "kind": "unban",
                "guild_id": str(s.guild_id),
                "user_id": str(target),
                "moderator_id": str(s.owner_id),
            },
        )
        lifted = await value_of(
            "a case for the unban made in Discord",
            conn,
            "SELECT count(*) FROM mod_cases WHERE guild_id = $1 AND target_id = $2 "
            "AND action = 'unban'",
            s.guild_id,
            target,
        )
        assert lifted == 1
        # The bot's own ban is one case, not two: its GUILD_BAN_ADD is expected, and only
        # recorded among the known bans (which happens after the event arrived).
        other = s.members[3]
        await ask(driver, s.general, s.owner_id, f"!ban <@{other}> spam")
        known = await value_of(
            "the bot's own ban among the known bans",
            conn,
            "SELECT count(*) FROM mod_bans WHERE guild_id = $1 AND user_id = $2",
            s.guild_id,
            other,
        )
        assert known == 1
        count = await conn.fetchval(
            "SELECT count(*) FROM mod_cases WHERE guild_id = $1 AND target_id = $2",
            s.guild_id,
            other,
        )
        assert count == 1
    finally:
        await conn.close()


async def test_a_ban_made_while_the_bot_was_away_is_a_case_at_start(
    env: Env, driver: Driver
) -> None:
    s = env.on(1)
    own, outside = s.members[2], s.members[3]
    conn = await connect(env.dsn)
    try:
        # A ban of the bot's own: the server's ban list is read (the starting point).
        await ask(driver, s.general, s.owner_id, f"!ban <@{own}> spam")
        assert await value_of(
            "the bot's own ban among the known bans",
            conn,
            "SELECT count(*) FROM mod_bans WHERE guild_id = $1 AND user_id = $2",
            s.guild_id,
            own,
        )
        old_pid = env.supervisor.workers[s.cluster].pid
        env.supervisor.kill(s.cluster)  # the bot is away ...
        await control(  # ... while a moderator bans someone in Discord
            env,
            "events",
            {
                "kind": "ban",
                "guild_id": str(s.guild_id),
                "user_id": str(outside),
                "moderator_id": str(s.owner_id),
                "reason": "while you were out",
            },
        )
        number = await value_of(
            "a case for the ban made while the bot was away",
            conn,
            "SELECT number FROM mod_cases WHERE guild_id = $1 AND target_id = $2 "
            "AND action = 'ban'",
            s.guild_id,
            outside,
            within=90,
        )
        assert number
        assert env.supervisor.workers[s.cluster].pid != old_pid
        case = await conn.fetchrow(
            "SELECT moderator_id, reason FROM mod_cases WHERE guild_id = $1 AND number = $2",
            s.guild_id,
            number,
        )
        assert case["moderator_id"] == s.owner_id and case["reason"] == "while you were out"
        await until("every worker ready again", env.supervisor.ready, within=90)
        count = await conn.fetchval(
            "SELECT count(*) FROM mod_cases WHERE guild_id = $1 AND target_id = $2",
            s.guild_id,
            outside,
        )
        assert count == 1
    finally:
        await conn.close()


async def test_a_tempban_due_while_the_bot_was_down_ends_on_its_first_attempt(
    env: Env, driver: Driver
) -> None:
    """The end needs the guild cache: it is claimed once the restarted worker is ready (not
    before, to be retried a minute later), so it ends on its first attempt. The server is on
    the cluster's second shard, which IDENTIFYs a turn after the first: before the fix the
    restarted worker claimed the end before that shard's GUILD_CREATE and retried."""
    last = SHARDS // CLUSTERS - 1  # cluster 0's last shard
    s = next(x for x in env.servers if x.cluster == 0 and (x.guild_id >> 22) % SHARDS == last)
    # The other tests here ban members 0, 2 and 3 of env.on(0) and 0 to 3 of env.on(1).
    target = s.members[1] if s is env.on(0) else s.members[0]
    conn = await connect(env.dsn)
    try:
        number, key = await tempban(env, driver, s, target)
        old_pid = env.supervisor.workers[s.cluster].pid
        env.supervisor.kill(s.cluster)  # the bot is down ...
        await pass_time(env)  # ... when the end falls due
        state = await value_of(
            "the tempban's end done after the restart",
            conn,
            "SELECT state FROM jobs WHERE key = $1 AND state = 'done'",
            key,
            within=90,
        )
        assert state == "done"
        row = await conn.fetchrow(
            "SELECT attempts, error, claimed_by FROM jobs WHERE key = $1", key
        )
        assert env.supervisor.workers[s.cluster].pid != old_pid
        assert row["claimed_by"].startswith(f"c{s.cluster}:")
        assert row["attempts"] == 1 and row["error"] is None  # no retry
        cases = await unban_cases(conn, s, target)
        assert [list(c["cites"]) for c in cases] == [[number]]
        assert await driver_ban_status(env, s, target) == 404
    finally:
        await conn.close()
    await until("every worker ready again", env.supervisor.ready, within=90)
