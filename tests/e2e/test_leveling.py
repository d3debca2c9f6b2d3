"""Leveling end to end: two worker processes against the sandbox, real Postgres and Redis.

XP earned on two clusters adds up globally; the cooldown holds; level-ups are announced and
rewarded with a role (and a role the bot may not give is logged, not fatal); the boards are the
same after Redis loses them (rebuilt by the CLI, and by the bot itself); a worker killed with
SIGKILL during a burst of messages loses no XP that was counted.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from e2e_harness import (
    Driver,
    SandboxProc,
    cluster_of,
    new_prefix,
    running_cluster,
    text_of,
    until,
    world_of,
)

from cluster.workers import Supervisor
from ipc.client import Keys
from ipc.leaderboard import PERIODS, Leaderboard

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SHARDS, CLUSTERS = 4, 2


@dataclass
class Place:
    guild_id: int
    channel_id: int
    owner_id: int
    plain: list[int]  # members with no role and not the owner
    mod_role: int
    bot_role: int
    cluster: int


def places(world: dict[str, Any]) -> list[Place]:
    out = []
    bot_id = int(world["bot"]["id"])
    for g in world["guilds"]:
        texts = [c for c in g["channels"] if int(c.get("type", 0)) == 0]
        owner = int(g["owner_id"])
        plain = sorted(
            int(m["id"])
            for m in g["members"]
            if not m["roles"] and int(m["id"]) not in (owner, bot_id)
        )
        roles = {r["name"]: int(r["id"]) for r in g["roles"]}
        out.append(
            Place(
                int(g["id"]),
                int(texts[0]["id"]),
                owner,
                plain,
                roles["Moderators"],
                roles["Guildhouse"],
                cluster_of(int(g["id"]), SHARDS, CLUSTERS),
            )
        )
    return out


@dataclass
class Env:
    supervisor: Supervisor
    dsn: str
    redis_url: str
    prefix: str
    places: list[Place]
    redis: aioredis.Redis
    board: Leaderboard
    used: set[int]

    def on(self, cluster: int) -> list[Place]:
        return [p for p in self.places if p.cluster == cluster]

    def fresh_user(self, p: Place) -> int:
        """A plain member of `p` no other test of this module used."""
        user = next(u for u in p.plain if u not in self.used)
        self.used.add(user)
        return user


@pytest.fixture(scope="module")
async def env(sandbox: SandboxProc, bot_db: str, redis_url: str) -> AsyncIterator[Env]:
    found = places(await world_of(sandbox))
    assert {p.cluster for p in found} == {0, 1}
    prefix = new_prefix()
    async with running_cluster(
        sandbox,
        bot_db,
        redis_url,
        shards=SHARDS,
        clusters=CLUSTERS,
        owner_id=found[0].owner_id,
        prefix=prefix,
    ) as sup:
        redis = aioredis.Redis.from_url(redis_url)
        try:
            yield Env(
                sup,
                bot_db,
                redis_url,
                prefix,
                found,
                redis,
                Leaderboard(redis, Keys(prefix)),
                set(),
            )
        finally:
            await redis.aclose()


async def command(driver: Driver, p: Place, text: str, expect: str) -> str:
    await driver.drain(p.channel_id)
    await driver.say(p.channel_id, p.owner_id, text)
    reply = await driver.reply_text(p.channel_id)
    assert expect in reply, reply
    return reply


async def configure(driver: Driver, p: Place, *, rate: int, cooldown: int) -> None:
    await command(driver, p, f"!xp rate {rate} {rate}", f"{rate}-{rate} XP")
    await command(driver, p, f"!xp cooldown {cooldown}", f"cooldown is now {cooldown}s")


async def pg_scores(env: Env, guild_id: int) -> dict[int, float]:
    conn = await asyncpg.connect(env.dsn)
    try:
        rows = await conn.fetch(
            "SELECT user_id, xp FROM xp_totals WHERE guild_id = $1 AND xp > 0", guild_id
        )
    finally:
        await conn.close()
    return {r["user_id"]: float(r["xp"]) for r in rows}


async def redis_scores(env: Env, guild_id: int | None, period: str = "alltime") -> dict[int, float]:
    return {e.user_id: e.score for e in await env.board.top(guild_id, period, limit=10_000)}


async def all_boards(env: Env) -> dict[tuple[int | None, str], dict[int, float]]:
    return {
        (g, period): await redis_scores(env, g, period)
        for g in [*(p.guild_id for p in env.places), None]
        for period in PERIODS
    }


async def flushed(env: Env) -> bool:
    for p in env.places:
        if await pg_scores(env, p.guild_id) != await redis_scores(env, p.guild_id):
            return False
    return True


async def test_xp_from_two_clusters_adds_up_globally(env: Env, driver: Driver) -> None:
    a, b = env.on(0)[0], env.on(1)[0]
    both = sorted((set(a.plain) & set(b.plain)) - env.used)
    assert both, "the test world needs a plain member in a guild on each cluster"
    user = both[0]
    env.used.add(user)
    for p in (a, b):
        await configure(driver, p, rate=10, cooldown=0)
    for i in range(3):
        await driver.say(a.channel_id, user, f"hello from cluster 0, {i}")
    for i in range(2):
        await driver.say(b.channel_id, user, f"hello from cluster 1, {i}")

    async def counted() -> bool:
        return await env.board.score(None, "alltime", user) == 50

    await until("50 XP on the global board", counted, within=45)
    assert await env.board.score(a.guild_id, "alltime", user) == 30
    assert await env.board.score(b.guild_id, "alltime", user) == 20
    assert await env.board.score(None, "day", user) == 50
    name = (await env.board.profiles([user]))[user].name
    text = await command(driver, a, "!top alltime global", "Top of every server, all time")
    assert f"{name}: level 0, 50 XP" in text
    await driver.say(b.channel_id, user, "!rank")
    text = await driver.reply_text(b.channel_id)
    assert "XP 20" in text and "Global rank #" in text and "Server rank #" in text
    assert "20/100 to level 1" in text
    # The same as slash commands.
    await driver.slash(b.channel_id, user, "rank")
    assert await driver.reply_text(b.channel_id) == text
    await driver.slash(
        a.channel_id,
        user,
        "top",
        [
            {"name": "period", "type": 3, "value": "day"},
            {"name": "scope", "type": 3, "value": "global"},
        ],
    )
    text = await driver.reply_text(a.channel_id)
    assert "Top of every server, today" in text and f"{name}: 50 XP" in text


async def test_cooldown_holds(env: Env, driver: Driver) -> None:
    p = env.on(1)[-1]
    await configure(driver, p, rate=10, cooldown=600)
    user, sentinel = env.fresh_user(p), env.fresh_user(p)
    await driver.say(p.channel_id, user, "first")
    await until("the first message's XP", lambda: _score_is(env, p.guild_id, user, 10), within=45)
    await driver.say(p.channel_id, user, "second, within the cooldown")
    await driver.say(p.channel_id, user, "third, within the cooldown")
    await driver.say(p.channel_id, sentinel, "after them")
    await until("the sentinel's XP", lambda: _score_is(env, p.guild_id, sentinel, 10), within=45)
    assert await env.board.score(p.guild_id, "alltime", user) == 10
    ttl = await env.redis.pttl(env.board.cooldown_key(p.guild_id, user))
    assert 0 < ttl <= 600_000
    await configure(driver, p, rate=10, cooldown=0)


async def _score_is(env: Env, guild_id: int, user: int, value: float) -> bool:
    return await env.board.score(guild_id, "alltime", user) == value


async def _roles(driver: Driver, guild_id: int, user: int) -> list[int]:
    async with driver.http.get(f"{driver.base}/_sandbox/world") as resp:
        world = await resp.json()
    guild = next(g for g in world["guilds"] if int(g["id"]) == guild_id)
    member = next(m for m in guild["members"] if int(m["id"]) == user)
    return [int(r) for r in member["roles"]]


async def test_level_up_is_announced_and_rewarded(env: Env, driver: Driver) -> None:
    p = env.on(0)[-1]
    await configure(driver, p, rate=100, cooldown=0)
    await command(driver, p, "!xp announce here", "in the channel of the message")
    await command(driver, p, f"!levelrole add 1 <@&{p.mod_role}>", "reaching level 1 get")
    await command(driver, p, f"!levelrole add 2 <@&{p.bot_role}>", "can't be given to members")
    user = env.fresh_user(p)
    await driver.drain(p.channel_id)
    await driver.say(p.channel_id, user, "my first words")
    text = await driver.reply_text(p.channel_id)
    assert text == f"<@{user}> reached **level 1**!"

    async def has_role() -> bool:
        return p.mod_role in await _roles(driver, p.guild_id, user)

    await until("the level 1 role", has_role, within=45)
    # A reward the bot may not give (its own role, above what it can assign): Discord answers
    # 50013; the level-up is still announced and the bot carries on.
    conn = await asyncpg.connect(env.dsn)
    try:
        await conn.execute(
            "INSERT INTO xp_role_rewards (guild_id, level, role_id) VALUES ($1, 2, $2)",
            p.guild_id,
            p.bot_role,
        )
    finally:
        await conn.close()
    await env.redis.publish(Keys(env.prefix)("events", "xp-settings"), str(p.guild_id))
    await driver.say(p.channel_id, user, "more words")  # 200 XP
    await driver.say(p.channel_id, user, "and more")  # 300 XP: level 2 (255)
    assert await driver.reply_text(p.channel_id) == f"<@{user}> reached **level 2**!"
    assert p.bot_role not in await _roles(driver, p.guild_id, user)
    await command(driver, p, "!rank", "level 0")  # the owner's rank: the bot still answers
    await command(driver, p, f"!achievements <@{user}>", "First words")


async def test_rebuild_after_wiping_redis_gives_the_same_ranks(env: Env, driver: Driver) -> None:
    p = env.on(1)[0]
    await configure(driver, p, rate=10, cooldown=0)
    user = env.fresh_user(p)
    await driver.say(p.channel_id, user, "something to rank")

    async def counted() -> bool:  # chat waits up to 50 ms for company before it is awarded
        return user in await redis_scores(env, p.guild_id)

    await until("the award on the board", counted, within=45)
    await until("every award in Postgres", lambda: flushed(env), within=45)
    before = await all_boards(env)
    assert before[(None, "alltime")], "earlier tests earned XP"

    async def wipe(pattern: str) -> None:
        async for key in env.redis.scan_iter(match=env.prefix + pattern, count=1000):
            await env.redis.delete(key)

    await wipe("lb:*")
    assert await env.board.top(None, "alltime") == []
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cluster.cli",
        "leaderboards",
        "rebuild",
        env=dict(
            os.environ, REDIS_URL=env.redis_url, REDIS_PREFIX=env.prefix, DATABASE_URL=env.dsn
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
    assert "rebuilt" in out.decode()
    assert await all_boards(env) == before
    # Everything of ours gone, stream included: the bot notices on the next award and rebuilds
    # by itself; the award that noticed is counted on top.
    await wipe("*")
    user = env.fresh_user(p)
    await driver.say(p.channel_id, user, "anyone here?")
    await until("the bot's own rebuild", env.board.is_ready, within=45)
    await until("the award after the wipe", lambda: _score_is(env, p.guild_id, user, 10), within=45)
    after = await all_boards(env)
    for key, scores in before.items():
        got = dict(after[key])
        if key[0] in (p.guild_id, None):
            assert got.pop(user) == 10
        assert got == scores, key


async def test_sigkill_during_a_burst_loses_no_counted_xp(env: Env, driver: Driver) -> None:
    p = env.on(1)[0]
    await configure(driver, p, rate=10, cooldown=0)
    users = [u for u in p.plain if u not in env.used][:4]
    assert users
    old_pid = env.supervisor.workers[1].pid

    async def burst(n: int) -> None:
        for i in range(n):
            await driver.say(p.channel_id, users[i % len(users)], f"burst {i}")

    before = sum((await redis_scores(env, p.guild_id)).values())
    sender = asyncio.create_task(burst(80))

    async def flowing() -> bool:
        return sum((await redis_scores(env, p.guild_id)).values()) >= before + 100

    await until("the burst's first awards counted", flowing, within=45)
    env.supervisor.kill(1)  # SIGKILL mid-burst: no shutdown flush, entries left pending
    await sender  # the rest reach the dying worker, or nobody
    await until("worker 1 restarted and READY", lambda: _restarted(env, old_pid), within=90)
    counted = await redis_scores(env, p.guild_id)
    assert sum(counted.values()) >= before + 100
    await until("Postgres caught up with what was counted", lambda: flushed(env), within=60)
    assert await pg_scores(env, p.guild_id) == await redis_scores(env, p.guild_id)
    assert await redis_scores(env, p.guild_id) == counted


async def _restarted(env: Env, old_pid: int | None) -> bool:
    w = env.supervisor.workers[1]
    return w.pid != old_pid and env.supervisor.ready()


async def test_admin_xp_changes_are_audited_and_ranked(env: Env, driver: Driver) -> None:
    p = env.on(0)[0]
    user = env.fresh_user(p)
    base = await env.board.score(None, "alltime", user)
    await command(driver, p, f"!xp give <@{user}> 0", "`amount` must be between 1 and 1,000,000.")
    await command(driver, p, f"!xp give <@{user}> 500", "Gave 500 XP")
    assert await env.board.score(p.guild_id, "alltime", user) == 500
    assert await env.board.score(None, "alltime", user) == base + 500
    assert await env.board.score(p.guild_id, "week", user) == 500
    await command(driver, p, f"!xp take <@{user}> 200", "now 300 XP")
    await command(driver, p, f"!xp reset <@{user}>", "XP is now 0")
    await command(driver, p, f"!xp reset <@{user}>", "has no XP to reset")
    assert await env.board.rank(p.guild_id, "alltime", user) is None  # at 0: off the board
    conn = await asyncpg.connect(env.dsn)
    try:
        rows = await conn.fetch(
            "SELECT action, before, after FROM audit_log WHERE guild_id = $1 AND target_id = $2 "
            "ORDER BY id",
            p.guild_id,
            user,
        )
        total = await conn.fetchval(
            "SELECT xp FROM xp_totals WHERE guild_id = $1 AND user_id = $2", p.guild_id, user
        )
    finally:
        await conn.close()
    assert [r["action"] for r in rows] == ["xp.give", "xp.take", "xp.reset"]
    changes = [(json.loads(r["before"])["xp"], json.loads(r["after"])["xp"]) for r in rows]
    assert changes == [(0, 500), (500, 300), (300, 0)]
    assert total == 0
    # A no-XP channel earns nothing; the settings show it.
    await command(driver, p, f"!xp channel <#{p.channel_id}> off", "no XP")
    try:
        await configure(driver, p, rate=10, cooldown=0)
        await driver.say(p.channel_id, user, "chatting in a no-XP channel")
        sentinel = env.fresh_user(p)
        other = next(c for c in await _text_channels(driver, p.guild_id) if c != p.channel_id)
        await driver.say(other, sentinel, "chatting in another channel of the server")
        await until("the XP elsewhere", lambda: _score_is(env, p.guild_id, sentinel, 10), within=45)
        assert await env.board.rank(p.guild_id, "alltime", user) is None
        await command(driver, p, "!xp", "no XP")
    finally:
        await command(driver, p, f"!xp channel <#{p.channel_id}> default", "(default)")


async def _text_channels(driver: Driver, guild_id: int) -> list[int]:
    async with driver.http.get(f"{driver.base}/_sandbox/world") as resp:
        world = await resp.json()
    guild = next(g for g in world["guilds"] if int(g["id"]) == guild_id)
    return [int(c["id"]) for c in guild["channels"] if int(c.get("type", 0)) == 0]


async def test_a_big_dice_roll_unlocks_an_achievement(env: Env, driver: Driver) -> None:
    p = env.on(1)[-1]
    await command(driver, p, "!xp achievements here", "Achievements: in the channel")
    try:
        user = env.fresh_user(p)
        await driver.drain(p.channel_id)
        # 30 Shadowrun dice against 2: each succeeds 5 times in 6; fewer than 10 successes
        # has a chance below 1e-9.
        await driver.say(p.channel_id, user, "!roll 30! tn2")
        found = await driver.replies(p.channel_id, count=2)
        texts = [text_of(e) for e in found]
        assert any("unlocked" in t and "Critical mass" in t for t in texts), texts
        await driver.say(p.channel_id, user, "!achievements")
        text = await driver.reply_text(p.channel_id)
        assert "🏆 **Critical mass**" in text and "Achievements of" in text
        assert "▫️ **First words**" in text  # commands earn no XP, so not unlocked yet
    finally:
        await command(driver, p, "!xp achievements dm", "Achievements: by DM")


async def test_an_admin_cannot_reward_a_role_above_their_own(env: Env, driver: Driver) -> None:
    p = env.on(1)[0]
    guild = next(g for g in driver.world["guilds"] if int(g["id"]) == p.guild_id)
    mod = next(int(m["id"]) for m in guild["members"] if str(p.mod_role) in map(str, m["roles"]))
    # The moderators' role is made an admin role: its members are admins here, but the role is
    # their highest, so they may not hand it out as a reward.
    await command(driver, p, f"!settings adminrole add <@&{p.mod_role}>", "added to the admin")
    try:
        await driver.drain(p.channel_id)
        await driver.say(p.channel_id, mod, f"!levelrole add 3 <@&{p.mod_role}>")
        assert "not below your highest role" in await driver.reply_text(p.channel_id)
        conn = await asyncpg.connect(env.dsn)
        try:
            rewards = await conn.fetch(
                "SELECT level FROM xp_role_rewards WHERE guild_id = $1 AND level = 3", p.guild_id
            )
        finally:
            await conn.close()
        assert rewards == []
    finally:
        await command(driver, p, f"!settings adminrole remove <@&{p.mod_role}>", "removed from")


async def test_the_admin_commands_are_for_admins(env: Env, driver: Driver) -> None:
    """One check covers every admin command, prefix and slash, subcommands too."""
    p = env.on(0)[-1]
    user = env.fresh_user(p)
    await driver.drain(p.channel_id)
    for text in (f"!xp give <@{user}> 5", "!xp", f"!levelrole add 3 <@&{p.mod_role}>"):
        await driver.say(p.channel_id, user, text)
        assert await driver.reply_text(p.channel_id) == "This command is for admins."
    give = [
        {"name": "member", "type": 6, "value": str(user)},
        {"name": "amount", "type": 4, "value": 5},
    ]
    await driver.slash(p.channel_id, user, "xp", [{"name": "give", "type": 1, "options": give}])
    assert await driver.reply_text(p.channel_id) == "This command is for admins."
    assert await env.board.rank(p.guild_id, "alltime", user) is None
