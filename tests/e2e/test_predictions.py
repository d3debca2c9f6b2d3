"""Points and predictions end to end: two worker processes (one shard each) against the sandbox.

Members claim their daily points, a moderator opens a prediction, three members bet through the
option buttons and the amount form, the window ends (the clock injected: `closes_at` and its
close job's due time moved into the past in PostgreSQL, the one clock every worker reads), the
job and both workers' backstop clocks race to close it and it is closed once; it is resolved
and the balances are as computed by hand below. Also: a vote with the minimum decides; void
refunds; an unresolved prediction is refunded 120 hours after its close (its refund job made
due); `points top` is right after its Redis board is wiped. The ledger's invariants hold at
the end of each test.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from e2e_harness import (
    Driver,
    SandboxProc,
    arrange,
    cluster_of,
    new_prefix,
    plain_members,
    start_cluster,
    text_channels,
    text_of,
    world_of,
)
from waits import until

from bot.points import ledger
from cluster.workers import Supervisor
from ipc.client import Keys

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SHARDS, CLUSTERS = 2, 2


@dataclass
class Place:
    guild_id: int
    channel_id: int
    owner_id: int  # the guild's owner: an admin
    members: list[int]  # three plain members
    cluster: int
    log: int  # another text channel: the audit log's


@dataclass
class Env:
    sandbox: SandboxProc
    supervisor: Supervisor
    dsn: str
    redis_url: str
    prefix: str
    places: list[Place]

    def on(self, cluster: int) -> Place:
        return next(p for p in self.places if p.cluster == cluster)


@pytest.fixture(scope="module")
async def env(sandbox: SandboxProc, bot_db: str, redis_url: str) -> AsyncIterator[Env]:
    places = []
    for g in (await world_of(sandbox))["guilds"]:
        texts, plain = text_channels(g), plain_members(g)
        if len(texts) >= 2 and len(plain) >= 3:
            cluster = cluster_of(int(g["id"]), SHARDS, CLUSTERS)
            owner = int(g["owner_id"])
            places.append(Place(int(g["id"]), texts[0], owner, plain[:3], cluster, texts[1]))
    assert {p.cluster for p in places} == {0, 1}, "the world needs a guild on each worker"
    prefix = new_prefix()
    sup = await start_cluster(
        sandbox,
        bot_db,
        redis_url,
        shards=SHARDS,
        clusters=CLUSTERS,
        owner_id=123456789012345678,
        prefix=prefix,
    )
    env = Env(sandbox, sup, bot_db, redis_url, prefix, places)
    ENVS.update({p.guild_id: env for p in places})
    try:
        yield env
    finally:
        await sup.stop()


@pytest.fixture
async def db(env: Env) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(env.dsn)
    try:
        yield conn
        assert await ledger.check(conn) == []
    finally:
        await conn.close()


def controls(entry: dict[str, Any]) -> dict[str, str]:
    rows = entry.get("components") or []
    return {
        str(c.get("label")): c["custom_id"]
        for row in rows
        for c in row.get("components", [])
        if "custom_id" in c
    }


async def interact(driver: Driver, body: dict[str, Any]) -> None:
    async with driver.http.post(f"{driver.base}/_sandbox/interactions", json=body) as resp:
        assert resp.status == 200, await resp.text()


async def ask(driver: Driver, p: Place, user: int, text: str) -> dict[str, Any]:
    await driver.drain(p.channel_id)
    await driver.say(p.channel_id, user, text)
    (entry,) = await driver.replies(p.channel_id)
    return entry


async def say_until(driver: Driver, p: Place, user: int, text: str, expect: str) -> str:
    """Say it; the first of the bot's next messages that contains `expect`."""
    await driver.drain(p.channel_id)
    await driver.say(p.channel_id, user, text)
    return await wait_for(driver, p, expect)


async def wait_for(driver: Driver, p: Place, expect: str, within: float = 30.0) -> str:
    """The first of the bot's next messages that contains `expect` (those before it are read
    and dropped)."""
    return await wait_in(driver, p.channel_id, expect, within)


async def wait_in(driver: Driver, channel_id: int, expect: str, within: float = 30.0) -> str:
    seen: list[str] = []
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        for entry in await driver.replies(channel_id, wait=left, count=1):
            seen.append(text_of(entry))
            if expect in seen[-1]:
                return seen[-1]
    raise AssertionError(f"no {expect!r} in {seen}")


async def daily(driver: Driver, p: Place) -> None:
    for member in p.members:
        text = await say_until(driver, p, member, "!daily", "Balance")
        assert "+**100** points" in text


async def create(driver: Driver, p: Place, spec: str) -> tuple[int, dict[str, Any]]:
    # A window longer than the test: the clock is injected (close_now).
    entry = await ask(driver, p, p.owner_id, f"!predict create 1h {spec}")
    found = re.search(r"Prediction #(\d+)", text_of(entry))
    assert found, text_of(entry)
    return int(found.group(1)), entry


async def bet(
    driver: Driver, p: Place, user: int, message: dict[str, Any], label: str, *, amount: int
) -> str:
    await driver.drain(p.channel_id)
    body = {"channel_id": str(p.channel_id), "user_id": str(user)}
    click = {**body, "message_id": message["message_id"], "custom_id": controls(message)[label]}
    await interact(driver, click)
    (form,) = await driver.replies(p.channel_id)
    assert form["kind"] == "modal" and form["title"] == "Place a bet"
    (field,) = form["inputs"]
    await interact(driver, {**body, "fields": {field["custom_id"]: str(amount)}})
    text = await wait_for(driver, p, "Bet placed")
    return text


async def close_now(
    driver: Driver, db: asyncpg.Connection, p: Place, pid: int, message: dict[str, Any]
) -> dict[str, Any]:
    """The injected clock: the window ends now (the prediction's time and its close job's);
    the job runners are woken as a new job would wake them. Two workers run jobs and the
    clock's backstop; the close is announced once. Returns the prediction message as the
    close left it."""
    await db.execute(
        "UPDATE predictions SET closes_at = now() - interval '1 second' WHERE id = $1", pid
    )
    await due_now(db, env_of(p), f"close:{pid}")
    latest: dict[str, Any] | None = None
    deadline = time.monotonic() + 30
    closing = 0
    while not closing and (left := deadline - time.monotonic()) > 0:
        for entry in await driver.replies(p.channel_id, wait=left, count=1):
            if entry.get("kind") == "edit" and entry["message_id"] == message["message_id"]:
                latest = entry
            closing += f"Betting on prediction #{pid} is closed" in text_of(entry)
    assert closing == 1 and latest is not None
    more = await driver.replies(p.channel_id, wait=5, count=1000)  # two clocks, one close
    assert not [e for e in more if "is closed" in text_of(e)]
    return latest


ENVS: dict[int, Env] = {}


def env_of(p: Place) -> Env:
    return ENVS[p.guild_id]


async def due_now(db: asyncpg.Connection, env: Env, key: str) -> None:
    """A job of ours due now, and every runner told to look."""
    moved = await db.execute(
        "UPDATE jobs SET due_at = now() - interval '1 second' WHERE key = $1 AND state = 'pending'",
        key,
    )
    assert moved == "UPDATE 1", f"no pending job {key}"
    redis = aioredis.from_url(env.redis_url)
    try:
        await redis.publish(Keys(env.prefix)("jobs", "wake"), b"new")
    finally:
        await redis.aclose()


async def dm_channel(driver: Driver, env: Env, user_id: int) -> int:
    """The DM channel between the bot and a user, as the bot would open it."""
    async with driver.http.post(
        f"{env.sandbox.info['api_url']}/users/@me/channels",
        json={"recipient_id": str(user_id)},
        headers={"Authorization": f"Bot {env.sandbox.info['token']}"},
    ) as resp:
        assert resp.status == 200, await resp.text()
        return int((await resp.json())["id"])


async def balances(db: asyncpg.Connection, p: Place) -> list[int]:
    return [await ledger.balance(db, p.guild_id, ledger.member(m)) for m in p.members]


async def test_bet_close_resolve_pays_as_computed_by_hand(
    env: Env, driver: Driver, db: asyncpg.Connection
) -> None:
    p = env.on(0)
    a, b, c = p.members
    await daily(driver, p)
    pid, message = await create(driver, p, "Who wins Saturday? | Red | Blue --category matches")
    assert "1. Red" in controls(message) and "2. Blue" in controls(message)
    text = await bet(driver, p, a, message, "1. Red", amount=60)
    assert "your stake on **Red**" in text and "60 points" in text and "Balance: 40" in text
    await bet(driver, p, b, message, "1. Red", amount=30)
    text = await bet(driver, p, c, message, "2. Blue", amount=50)
    # pool 140, 50 on Blue: odds 2.80x, and c's 50 would get 140
    assert "Odds now 2.80x" in text and "**140**" in text
    await close_now(driver, db, p, pid, message)
    text = await say_until(driver, p, p.owner_id, f"!predict resolve {pid} 1", "is resolved")
    # pool 140 to Red's 60 and 30: 93.33 and 46.67 -> 93 + 46, the point left to the larger
    # fraction (b's .67): 93 and 47.
    assert "**Red**" in text and "2 winners shared 140 points" in text
    assert await balances(db, p) == [100 - 60 + 93, 100 - 30 + 47, 100 - 50]
    assert await db.fetchval("SELECT status FROM predictions WHERE id = $1", pid) == "resolved"
    actions = await db.fetch(
        "SELECT action FROM audit_log WHERE guild_id = $1 AND action LIKE 'predict.%' ORDER BY id",
        p.guild_id,
    )
    assert [r["action"] for r in actions] == ["predict.create", "predict.close", "predict.resolve"]
    # `points top` after its Redis board is gone: rebuilt from the ledger
    redis = aioredis.from_url(env.redis_url)
    try:
        gone = [k async for k in redis.scan_iter(match=f"{env.prefix}points:top*")]
        assert gone and await redis.delete(*gone)
    finally:
        await redis.aclose()
    top = text_of(await ask(driver, p, a, "!points top"))
    ranks = [int(u) for u in re.findall(r"<@(\d+)> · ", top)]
    assert ranks[:3] == [a, b, c], top
    assert "133" in text_of(await ask(driver, p, a, "!points"))
    # the lists, one prediction, a member's bets and ledger lines
    for which in ("closed", "matches", "mine"):
        listed = text_of(await ask(driver, p, a, f"!predict {which}"))
        assert f"`#{pid}` Who wins Saturday?" in listed and "won by **Red**" in listed, which
    assert f"`#{pid}`" not in text_of(await ask(driver, p, a, "!predict open"))
    shown = text_of(await ask(driver, p, c, f"!predict show {pid}"))
    assert "Resolved" in shown and "140 points from 3 bettors" in shown and "✅ 1. Red" in shown
    mine = text_of(await ask(driver, p, b, "!predict history"))
    assert f"`#{pid}`" in mine and "30 on **Red** · got 47" in mine
    lines = text_of(await ask(driver, p, a, "!points history"))
    assert "**+93** payout" in lines and "**-60** bet" in lines and "**+100** daily claim" in lines
    refused = text_of(await ask(driver, p, a, f"!points history <@{b}>"))
    assert "moderators" in refused


async def test_a_vote_with_the_minimum_decides(
    env: Env, driver: Driver, db: asyncpg.Connection
) -> None:
    p = env.on(1)
    a, b, c = p.members
    await say_until(driver, p, p.owner_id, "!points settings vote_enabled on", "vote_enabled on")
    await daily(driver, p)
    pid, message = await create(driver, p, "Will it rain? | Yes | No")
    await bet(driver, p, a, message, "1. Yes", amount=40)
    await bet(driver, p, b, message, "2. No", amount=40)
    await bet(driver, p, c, message, "2. No", amount=20)
    closed = await close_now(driver, db, p, pid, message)
    assert "Vote: 2. No" in controls(closed)
    body = {"channel_id": str(p.channel_id), "message_id": closed["message_id"]}
    custom = controls(closed)["Vote: 2. No"]
    await interact(driver, {**body, "user_id": str(b), "custom_id": custom})
    assert "needs 2 votes" in await wait_for(driver, p, "Vote counted")
    await interact(driver, {**body, "user_id": str(c), "custom_id": custom})
    text = await wait_for(driver, p, "is resolved")
    assert "**No**" in text
    # pool 100 to No's 40 and 20: 66.67 and 33.33 -> 66 + 33, the point left to b (.67)
    assert await balances(db, p) == [60, 100 - 40 + 67, 100 - 20 + 33]


async def test_void_and_the_auto_refund_give_every_stake_back(
    env: Env, driver: Driver, db: asyncpg.Connection
) -> None:
    p = env.on(0)
    a, b, _ = p.members
    before = await balances(db, p)
    pid, message = await create(driver, p, "Heads or tails? | Heads | Tails")
    await bet(driver, p, a, message, "1. Heads", amount=10)
    await bet(driver, p, b, message, "2. Tails", amount=20)
    assert await balances(db, p) == [before[0] - 10, before[1] - 20, before[2]]
    await say_until(driver, p, p.owner_id, f"!settings logchannel <#{p.log}>", "Audit entries")
    await driver.drain(p.log)
    text = await say_until(driver, p, a, "!predict notify on", "DM")
    assert "You'll get a DM" in text
    dm_a, dm_b = [await dm_channel(driver, env, u) for u in (a, b)]
    for dm in (dm_a, dm_b):
        await driver.drain(dm)
    text = await say_until(driver, p, p.owner_id, f"!predict void {pid}", "went back")
    assert "Cancelled" in text and "30 points went back to 2 bettors" in text
    assert await balances(db, p) == before
    # a DM to the member who asked for them, none to the other
    told = await wait_in(driver, dm_a, f"Prediction #{pid}")
    assert "You staked 10 and got 10 points back" in told
    assert not await driver.replies(dm_b, wait=1)  # (b never asked: not on the list at all)
    await say_until(driver, p, a, "!predict notify off", "No more DMs")
    assert "**predict.void**" in await wait_in(driver, p.log, "Audit: predict.void")
    # not resolved within 120 hours of its close: refunded by a clock, once
    pid, message = await create(driver, p, "Odd or even? | Odd | Even")
    await bet(driver, p, a, message, "2. Even", amount=15)
    await close_now(driver, db, p, pid, message)
    await db.execute(
        "UPDATE predictions SET closed_at = now() - interval '121 hours' WHERE id = $1", pid
    )
    await due_now(db, env, f"refund:{pid}")
    text = await wait_for(driver, p, "went back")
    assert "Not resolved in time" in text and "15 points went back to 1 bettor." in text
    assert await balances(db, p) == before
    assert "**predict.refund**" in await wait_in(driver, p.log, "Audit: predict.refund")
    await say_until(driver, p, p.owner_id, "!settings logchannel", "no longer posted")
    refunds = await db.fetchval(
        "SELECT count(*) FROM points_tx WHERE guild_id = $1 AND key = $2",
        p.guild_id,
        f"refund:{pid}",
    )
    assert refunds == 1
    await until(
        "the refund's announcement",
        lambda: db.fetchval("SELECT announced FROM predictions WHERE id = $1", pid),
    )


async def test_chat_points_once_per_cooldown(
    env: Env, driver: Driver, db: asyncpg.Connection
) -> None:
    p = env.on(1)
    member = p.members[0]
    await say_until(driver, p, p.owner_id, "!points settings chat_points 5", "chat_points 5")
    before = await ledger.balance(db, p.guild_id, ledger.member(member))
    first = await driver.say(p.channel_id, member, "hello there")
    await until(
        "the chat message's points",
        lambda: db.fetchval(
            "SELECT 1 FROM points_tx WHERE guild_id = $1 AND key = $2",
            p.guild_id,
            f"chat:{first}",
        ),
    )
    second = await driver.say(p.channel_id, member, "and again, within the cooldown")
    third = await driver.say(p.channel_id, p.members[1], "someone else")
    await until(
        "the other member's points",
        lambda: db.fetchval(
            "SELECT 1 FROM points_tx WHERE guild_id = $1 AND key = $2",
            p.guild_id,
            f"chat:{third}",
        ),
    )
    # the second message was taken in before the third (one queue per worker): not counted
    assert not await db.fetchval(
        "SELECT 1 FROM points_tx WHERE guild_id = $1 AND key = $2", p.guild_id, f"chat:{second}"
    )
    assert await ledger.balance(db, p.guild_id, ledger.member(member)) == before + 5


async def test_members_are_refused_what_is_for_moderators_and_admins(
    env: Env, driver: Driver, db: asyncpg.Connection
) -> None:
    p = env.on(0)
    member = p.members[2]
    made = await db.fetchval("SELECT count(*) FROM predictions")
    text = await say_until(driver, p, member, "!predict create 1h Rain? | Yes | No", "moderators")
    assert "Creating predictions is for moderators" in text
    text = await say_until(driver, p, member, f"!points give <@{member}> 1000", "admins")
    assert "This command is for admins" in text
    assert await db.fetchval("SELECT count(*) FROM predictions") == made
    text = await say_until(
        driver, p, p.owner_id, "!predict create 1h Rain? | Yes | yes", "different"
    )
    assert "The options must all be different" in text
    text = await say_until(driver, p, p.owner_id, "!predict create 45d Rain? | Yes | No", "window")
    assert "1 minute to 30 days" in text
    text = await say_until(driver, p, p.owner_id, "!points settings max_bet lots", "whole")
    assert "`max_bet` takes a whole number, not `lots`." in text


async def test_the_creator_role_lets_its_members_create_and_no_one_else(
    env: Env, driver: Driver, db: asyncpg.Connection
) -> None:
    p = env.on(0)
    host, other = p.members[1], p.members[2]
    hosts = await arrange(
        env.sandbox.control, "POST", "roles", {"guild_id": str(p.guild_id), "name": "Hosts"}
    )
    await arrange(
        env.sandbox.control,
        "PATCH",
        "members",
        {"guild_id": str(p.guild_id), "user_id": str(host), "roles": [hosts["id"]]},
    )
    spec = "!predict create 1h Who hosts next? | Ann | Bo"
    text = await say_until(driver, p, host, spec, "moderators")
    assert "Creating predictions is for moderators" in text  # no role chosen yet
    text = await say_until(driver, p, host, f"!predict role <@&{hosts['id']}>", "admins")
    assert "for admins" in text  # choosing it is an admin's
    text = await say_until(driver, p, p.owner_id, f"!predict role <@&{hosts['id']}>", "create")
    assert f"Moderators and <@&{hosts['id']}>" in text
    try:
        text = await say_until(driver, p, host, spec, "Prediction #")
        found = re.search(r"Prediction #(\d+)", text)
        assert found, text
        pid = int(found.group(1))
        assert await db.fetchval("SELECT creator_id FROM predictions WHERE id = $1", pid) == host
        text = await say_until(driver, p, other, spec, "moderators")  # without the role
        assert "Creating predictions is for moderators" in text
        await say_until(driver, p, host, f"!predict void {pid}", "cancelled")
    finally:
        text = await say_until(driver, p, p.owner_id, "!predict role", "create")
    assert "Only moderators" in text
    text = await say_until(driver, p, host, spec, "moderators")  # the role no longer counts
    assert "Creating predictions is for moderators" in text
    audit = await db.fetch(
        "SELECT action FROM audit_log WHERE guild_id = $1 AND action = 'predict.role'", p.guild_id
    )
    assert len(audit) == 2
