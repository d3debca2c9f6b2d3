"""The worker bot's framework, end to end: prefix and slash commands, per-guild prefix, errors,
help, permission levels, settings and the audit log, with two worker processes."""

from __future__ import annotations

import asyncio
import contextlib
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
    plain_members,
    running_cluster,
    text_channels,
    text_of,
    until,
    world_of,
)

from bot.db.pool import create_pool
from bot.guild_settings import GuildSettingsStore
from cluster.workers import Supervisor
from ipc.client import Keys

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SHARDS, CLUSTERS = 4, 2


@dataclass
class Place:
    guild_id: int
    channel_id: int
    owner_id: int  # the guild's owner: admin level
    member_id: int  # a member with no special permissions
    cluster: int


def places(world: dict[str, Any]) -> list[Place]:
    out = []
    for g in world["guilds"]:
        texts, plain = text_channels(g), plain_members(g)
        if texts and plain:
            cluster = cluster_of(int(g["id"]), SHARDS, CLUSTERS)
            out.append(Place(int(g["id"]), texts[0], int(g["owner_id"]), plain[0], cluster))
    return out


@dataclass
class Env:
    supervisor: Supervisor
    dsn: str
    redis_url: str
    prefix: str
    owner_id: int
    places: list[Place]

    def on_cluster(self, cluster: int) -> Place:
        return next(p for p in self.places if p.cluster == cluster)


@pytest.fixture(scope="module")
async def env(sandbox: SandboxProc, bot_db: str, redis_url: str) -> AsyncIterator[Env]:
    found = places(await world_of(sandbox))
    assert {p.cluster for p in found} == {0, 1}, "the test world needs guilds on both clusters"
    owner = found[0].owner_id  # also the bot's owner, for owner-level commands
    prefix = new_prefix()
    async with running_cluster(
        sandbox, bot_db, redis_url, shards=SHARDS, clusters=CLUSTERS, owner_id=owner, prefix=prefix
    ) as sup:
        yield Env(sup, bot_db, redis_url, prefix, owner, found)


async def test_prefix_command_answers(env: Env, driver: Driver) -> None:
    p = env.on_cluster(0)
    await driver.drain(p.channel_id)
    await driver.say(p.channel_id, p.member_id, "!ping")
    assert "Pong!" in await driver.reply_text(p.channel_id)


async def test_mention_works_as_prefix(env: Env, driver: Driver) -> None:
    p = env.on_cluster(1)
    bot_id = int((driver.world.get("bot") or driver.world.get("bot_user"))["id"])
    await driver.drain(p.channel_id)
    await driver.say(p.channel_id, p.member_id, f"<@{bot_id}> about")
    text = await driver.reply_text(p.channel_id)
    assert "Cluster" in text and "2 of 2" in text
    # The cluster-wide figures come from every cluster over the IPC bus.
    assert "6 guilds, 2 clusters, 4 shards ready" in text


async def test_slash_and_prefix_give_the_same_answer(env: Env, driver: Driver) -> None:
    p = env.on_cluster(0)
    await driver.drain(p.channel_id)
    await driver.say(p.channel_id, p.member_id, "!help ping")
    prefix_text = await driver.reply_text(p.channel_id)
    await driver.slash(
        p.channel_id, p.member_id, "help", [{"name": "command", "type": 3, "value": "ping"}]
    )
    slash_text = await driver.reply_text(p.channel_id)
    assert "Show this shard's gateway latency" in prefix_text
    assert prefix_text.replace("!ping", "/ping") == slash_text


async def test_help_lists_only_what_the_caller_may_use(env: Env, driver: Driver) -> None:
    p = env.on_cluster(0)
    await driver.drain(p.channel_id)
    await driver.say(p.channel_id, p.member_id, "!help")
    member_view = await driver.reply_text(p.channel_id)
    await driver.say(p.channel_id, p.owner_id, "!help")
    admin_view = await driver.reply_text(p.channel_id)
    assert "`!ping`" in member_view and "`!settings`" not in member_view
    assert "`!audit`" not in member_view
    # The admin's list runs to more pages than its first: it is longer than the member's, and
    # an admin command is explained to the admin, not to the member.
    assert len(admin_view) > len(member_view) or "Page 1 of" in admin_view
    await driver.say(p.channel_id, p.owner_id, "!help settings")
    assert "Show this server's settings" in await driver.reply_text(p.channel_id)
    await driver.say(p.channel_id, p.member_id, "!help settings")
    assert await driver.reply_text(p.channel_id) == (
        "No command called `settings` that you can use."
    )


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("!settings", "This command is for admins."),
        ("!audit", "This command is for moderators."),
        ("!sync", "This command is for the bot's owners."),
    ],
)
async def test_permission_denial_per_level(
    env: Env, driver: Driver, command: str, expected: str
) -> None:
    p = env.on_cluster(1)
    await driver.drain(p.channel_id)
    await driver.say(p.channel_id, p.member_id, command)
    assert await driver.reply_text(p.channel_id) == expected


async def test_error_messages_name_the_problem(env: Env, driver: Driver) -> None:
    p = env.on_cluster(0)
    await driver.drain(p.channel_id)
    await driver.say(p.channel_id, p.owner_id, "!settings prefix")
    assert await driver.reply_text(p.channel_id) == (
        "Missing `prefix`. Usage: `!settings prefix <prefix>`"
    )
    await driver.say(p.channel_id, p.owner_id, "!settings modrole add no-such-role")
    text = await driver.reply_text(p.channel_id)
    assert text.startswith("Bad value for `role`:") and "!settings modrole" in text
    await driver.say(p.channel_id, p.owner_id, "!settings prefix has space")
    assert await driver.reply_text(p.channel_id) == "The prefix can't contain spaces or backticks."


async def test_unknown_command_is_silent(env: Env, driver: Driver) -> None:
    p = env.on_cluster(0)
    await driver.drain(p.channel_id)
    await driver.say(p.channel_id, p.member_id, "!definitely-not-a-command")
    assert await driver.replies(p.channel_id, wait=2) == []


async def test_echoed_input_cannot_mention(env: Env, driver: Driver) -> None:
    p = env.on_cluster(0)
    await driver.drain(p.channel_id)
    await driver.say(p.channel_id, p.member_id, "!help @everyone")
    (entry,) = await driver.replies(p.channel_id)
    text = text_of(entry)
    assert "No command called" in text and "@everyone" not in text
    allowed = entry.get("allowed_mentions") or (entry.get("data") or {}).get("allowed_mentions")
    if allowed is not None:
        assert allowed.get("parse") in ([], None)


async def test_prefix_change_is_audited_and_immediate(env: Env, driver: Driver) -> None:
    p = env.on_cluster(1)
    await driver.drain(p.channel_id)
    await driver.say(p.channel_id, p.owner_id, "!settings prefix ?")
    assert "Prefix is now `?`" in await driver.reply_text(p.channel_id)
    await driver.say(p.channel_id, p.member_id, "?ping")
    assert "Pong!" in await driver.reply_text(p.channel_id)
    await driver.say(p.channel_id, p.member_id, "!ping")
    assert await driver.replies(p.channel_id, wait=1.5) == []
    conn = await asyncpg.connect(env.dsn)
    try:
        row = await conn.fetchrow(
            "SELECT actor_id, action, before, after FROM audit_log WHERE guild_id = $1 "
            "ORDER BY id DESC LIMIT 1",
            p.guild_id,
        )
    finally:
        await conn.close()
    assert row["actor_id"] == p.owner_id and row["action"] == "settings.prefix"
    assert '"prefix": "!"' in row["before"] and '"prefix": "?"' in row["after"]
    # Back to the default, also through the bot.
    await driver.say(p.channel_id, p.owner_id, "?settings prefix !")
    assert "Prefix is now `!`" in await driver.reply_text(p.channel_id)


async def test_change_from_another_process_is_seen_on_the_next_message(
    env: Env, driver: Driver
) -> None:
    """A settings change written by another process (another worker, the CLI) reaches the
    worker serving the guild through Redis, before its next message."""
    p = env.on_cluster(0)
    await driver.drain(p.channel_id)
    await driver.say(p.channel_id, p.member_id, "!ping")  # the worker now has it cached
    assert "Pong!" in await driver.reply_text(p.channel_id)
    pool = await create_pool(env.dsn, min_size=1, max_size=1)
    redis = aioredis.Redis.from_url(env.redis_url)
    try:
        store = GuildSettingsStore(pool, redis, Keys(env.prefix))
        new = (await store.get(p.guild_id)).with_changes(prefix="$")
        async with pool.acquire() as conn:
            await store.save(conn, new)
        await store.announce(p.guild_id)
        await driver.say(p.channel_id, p.member_id, "$ping")
        assert "Pong!" in await driver.reply_text(p.channel_id)
        async with pool.acquire() as conn:
            await store.save(conn, new.with_changes(prefix="!"))
        await store.announce(p.guild_id)
    finally:
        await pool.close()
        await redis.aclose()


async def test_disabled_command(env: Env, driver: Driver) -> None:
    p = env.on_cluster(0)
    await driver.drain(p.channel_id)
    await driver.say(p.channel_id, p.owner_id, "!settings disable ping")
    assert "`ping` is now disabled" in await driver.reply_text(p.channel_id)
    await driver.say(p.channel_id, p.member_id, "!ping")
    assert await driver.reply_text(p.channel_id) == "`ping` is disabled in this server."
    await driver.say(p.channel_id, p.owner_id, "!settings disable settings")
    assert "can't be disabled" in await driver.reply_text(p.channel_id)
    await driver.say(p.channel_id, p.owner_id, "!settings enable ping")
    assert "`ping` is now enabled" in await driver.reply_text(p.channel_id)


async def test_audit_command_pages(env: Env, driver: Driver) -> None:
    p = env.on_cluster(1)
    await driver.drain(p.channel_id)
    for i in range(6):  # 12 audited changes: more than one page of 10
        await driver.say(p.channel_id, p.owner_id, f"!settings prefix p{i}")
        await driver.reply_text(p.channel_id)
        await driver.say(p.channel_id, p.owner_id, f"p{i}settings prefix !")
        await driver.reply_text(p.channel_id)
    await driver.say(p.channel_id, p.owner_id, "!audit")
    (entry,) = await driver.replies(p.channel_id)
    text = text_of(entry)
    assert "settings.prefix" in text and "Page 1 of 2" in text
    components = entry.get("components") or (entry.get("data") or {}).get("components") or []
    buttons = {b["label"]: b["custom_id"] for row in components for b in row["components"]}
    assert set(buttons) == {"«", "‹", "›", "»"}, "a multi-page answer comes with buttons"
    # Only whoever asked may turn the pages; anyone else is told so, privately.
    (refusal,) = await driver.first_click(
        p.channel_id, p.member_id, entry["message_id"], buttons["›"]
    )
    assert refusal["kind"] == "interaction_response" and refusal["ephemeral"]
    assert "belong to whoever asked" in text_of(refusal)
    await driver.click(p.channel_id, p.owner_id, entry["message_id"], buttons["›"])
    (turned,) = await driver.replies(p.channel_id)
    assert turned["kind"] == "edit" and "Page 2 of 2" in text_of(turned)


async def test_unexpected_error_gets_an_id_and_no_details(env: Env, driver: Driver) -> None:
    p = env.on_cluster(0)
    await driver.drain(p.channel_id)
    await driver.say(p.channel_id, p.member_id, "!boom")
    text = await driver.reply_text(p.channel_id)
    assert text.startswith("Something went wrong on our side (error id `")
    assert "Traceback" not in text and "RuntimeError" not in text and "secret" not in text


async def test_worker_killed_is_restarted(env: Env, driver: Driver) -> None:
    p = env.on_cluster(1)
    other = env.on_cluster(0)
    old_pid, other_pid = env.supervisor.workers[1].pid, env.supervisor.workers[0].pid
    env.supervisor.kill(1)
    # The other cluster keeps serving while cluster 1 is down.
    await driver.drain(other.channel_id)
    await driver.say(other.channel_id, other.member_id, "!ping")
    assert "Pong!" in await driver.reply_text(other.channel_id)
    await until(
        "cluster 1 restarted and READY",
        lambda: env.supervisor.workers[1].pid != old_pid and env.supervisor.ready(),
        within=60,
    )
    assert env.supervisor.workers[1].restarts >= 1 and env.supervisor.ready()
    assert env.supervisor.workers[0].pid == other_pid  # untouched
    assert env.supervisor.workers[0].restarts == 0
    await driver.drain(p.channel_id)
    await driver.say(p.channel_id, p.member_id, "!ping")
    assert "Pong!" in await driver.reply_text(p.channel_id)


async def test_guilds_table_follows_the_gateway(env: Env, driver: Driver) -> None:
    conn = await asyncpg.connect(env.dsn)
    try:
        rows = await conn.fetch("SELECT id, left_at FROM guilds")
    finally:
        await conn.close()
    known = {int(g["id"]) for g in driver.world["guilds"]}
    assert {r["id"] for r in rows} == known  # every guild of every shard, from GUILD_CREATE
    assert all(r["left_at"] is None for r in rows)


async def _cli(env: Env, *args: str) -> asyncio.subprocess.Process:
    """`guildhouse ARGS` against this module's Redis and database."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cluster.cli",
        *args,
        env=dict(
            os.environ, REDIS_URL=env.redis_url, REDIS_PREFIX=env.prefix, DATABASE_URL=env.dsn
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def _status(env: Env, *args: str) -> tuple[int, str]:
    proc = await _cli(env, "status", *args)
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_status_shows_every_cluster_and_shard(env: Env) -> None:
    clusters: list[dict[str, Any]] = []

    async def every_cluster_ready() -> bool:
        nonlocal clusters
        code, out = await _status(env, "--json")
        assert code == 0, out
        clusters = json.loads(out)
        return len(clusters) == CLUSTERS and all(c["state"] == "ready" for c in clusters)

    # Workers publish every 2 s; each look starts the CLI, so not too often.
    await until("every cluster ready in `guildhouse status`", every_cluster_ready, every=0.2)
    assert [c["cluster_id"] for c in clusters] == [0, 1]
    assert sorted(int(s) for c in clusters for s in c["shards"]) == list(range(SHARDS))
    assert all(s["state"] == "ready" for c in clusters for s in c["shards"].values())
    assert sum(c["guilds"] for c in clusters) == 6  # the sandbox fixture's world
    code, table = await _status(env)
    assert code == 0 and "CLUSTER" in table and "SHARD" in table and "ready" in table


async def test_rolling_restart_keeps_all_but_one_cluster_serving(env: Env) -> None:
    from cluster.rolling import control_loop

    redis = aioredis.Redis.from_url(env.redis_url)
    control = asyncio.create_task(control_loop(redis, Keys(env.prefix), env.supervisor))
    before = {cid: w.pid for cid, w in env.supervisor.workers.items()}
    try:
        channel = Keys(env.prefix)("control", "launchers")

        async def subscribed() -> bool:
            return bool((await redis.pubsub_numsub(channel))[0][1])

        await until("the control loop subscribed", subscribed, within=10)
        proc = await _cli(env, "restart", "--rolling")
        least_ready = CLUSTERS
        while proc.returncode is None:
            ready = sum(env.supervisor.worker_ready(w) for w in env.supervisor.workers.values())
            least_ready = min(least_ready, ready)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 0.05)
        out = (await proc.stdout.read()).decode() if proc.stdout else ""
    finally:
        control.cancel()
        await redis.aclose()
    assert proc.returncode == 0, out
    assert "cluster 0: ready" in out and "cluster 1: ready" in out
    assert least_ready >= CLUSTERS - 1  # never more than one cluster down
    after = {cid: w.pid for cid, w in env.supervisor.workers.items()}
    assert all(after[c] != before[c] for c in before)
    assert env.supervisor.ready()


async def test_owner_rpcs_reach_every_cluster(env: Env, driver: Driver) -> None:
    owner = env.owner_id  # the bot's owner speaks in the guild they own
    p = next(x for x in env.places if x.owner_id == owner)
    await driver.drain(p.channel_id)
    await driver.say(p.channel_id, owner, "!presence idle Rolling dice")
    assert await driver.reply_text(p.channel_id) == "Presence set on 2 cluster(s)."
    await driver.say(p.channel_id, owner, "!reload bot.cogs.general")
    assert await driver.reply_text(p.channel_id) == "Reloaded `bot.cogs.general` on 2 cluster(s)."
    await driver.say(p.channel_id, owner, "!reload os")
    text = await driver.reply_text(p.channel_id)
    assert text.startswith("Reloaded `os` on 0 cluster(s). Failed on 2:")
    await driver.say(p.channel_id, p.member_id, "!reload bot.cogs.general")
    assert await driver.reply_text(p.channel_id) == "This command is for the bot's owners."


def _plain_in(guild: dict[str, Any]) -> set[int]:
    owner = int(guild["owner_id"])
    return {int(m["id"]) for m in guild["members"] if not m["roles"] and int(m["id"]) != owner}


async def _set_throttle(driver: Driver, p: Place, rule: str, scope: str = "command") -> None:
    await driver.say(p.channel_id, p.owner_id, f"!settings throttle ping {scope} {rule}")
    assert "`ping`" in await driver.reply_text(p.channel_id)


async def test_a_users_throttle_is_shared_across_clusters(env: Env, driver: Driver) -> None:
    a, b = env.on_cluster(0), env.on_cluster(1)
    guilds = {int(g["id"]): g for g in driver.world["guilds"]}
    both = _plain_in(guilds[a.guild_id]) & _plain_in(guilds[b.guild_id])
    both -= {a.member_id, b.member_id}
    assert both, "the test world needs a plain member in a guild on each cluster"
    user = min(both)
    for p in (a, b):
        await driver.drain(p.channel_id)
        await _set_throttle(driver, p, "4/1m")
    try:
        # Four calls, alternating clusters and prefix/slash: one budget of four.
        await driver.slash(a.channel_id, user, "ping")
        assert "Pong!" in await driver.reply_text(a.channel_id)
        await driver.say(b.channel_id, user, "!ping")
        assert "Pong!" in await driver.reply_text(b.channel_id)
        await driver.slash(a.channel_id, user, "ping")  # a slash call counts once, not twice
        assert "Pong!" in await driver.reply_text(a.channel_id)
        await driver.say(b.channel_id, user, "!ping")
        assert "Pong!" in await driver.reply_text(b.channel_id)
        # The fifth, on either cluster, is refused with the wait; the ones after it are
        # dropped without a word (no spam back at a spammer).
        await driver.say(a.channel_id, user, "!ping")
        text = await driver.reply_text(a.channel_id)
        assert text.startswith("Slow down: try again in "), text
        await driver.say(b.channel_id, user, "!ping")
        await driver.say(a.channel_id, user, "!ping")
        assert await driver.replies(b.channel_id, wait=1.5) == []
        assert await driver.replies(a.channel_id, wait=0.5) == []
        # Another member of the same guild has a budget of their own.
        await driver.say(a.channel_id, a.member_id, "!ping")
        assert "Pong!" in await driver.reply_text(a.channel_id)
    finally:
        for p in (a, b):
            await _set_throttle(driver, p, "default")


async def test_moderators_skip_throttles_unless_the_guild_says_no(env: Env, driver: Driver) -> None:
    p = env.on_cluster(1)
    guild = next(g for g in driver.world["guilds"] if int(g["id"]) == p.guild_id)
    mod = next(int(m["id"]) for m in guild["members"] if m["roles"] and int(m["id"]) != p.owner_id)
    await driver.drain(p.channel_id)
    await _set_throttle(driver, p, "1/1m")
    try:
        for _ in range(3):
            await driver.say(p.channel_id, mod, "!ping")
            assert "Pong!" in await driver.reply_text(p.channel_id)
        await driver.say(p.channel_id, p.owner_id, "!settings throttleexempt no")
        assert "throttled like everyone" in await driver.reply_text(p.channel_id)
        await driver.say(p.channel_id, mod, "!ping")
        assert "Pong!" in await driver.reply_text(p.channel_id)
        await driver.say(p.channel_id, mod, "!ping")
        assert (await driver.reply_text(p.channel_id)).startswith("Slow down")
        await driver.say(p.channel_id, p.owner_id, "!settings")
        assert "ping` command 1/1m" in await driver.reply_text(p.channel_id)
    finally:
        await driver.say(p.channel_id, p.owner_id, "!settings throttleexempt default")
        assert "skip command throttles" in await driver.reply_text(p.channel_id)
        await _set_throttle(driver, p, "default")


async def test_bad_throttle_rule_is_named(env: Env, driver: Driver) -> None:
    p = env.on_cluster(0)
    await driver.drain(p.channel_id)
    await driver.say(p.channel_id, p.owner_id, "!settings throttle ping command lots")
    text = await driver.reply_text(p.channel_id)
    assert text.startswith("Bad `rule`:") and "'lots'" in text and "5/10s" in text
