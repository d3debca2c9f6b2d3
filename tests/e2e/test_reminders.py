"""Reminders end to end: the real bot (two worker processes, four shards) against the sandbox.
Created by prefix and by slash, delivered in the channel and by DM, listed and cancelled,
timezones; and with a worker killed while reminders fall due, each fires exactly once."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
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

from cluster.workers import Supervisor

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SHARDS, CLUSTERS = 4, 2
_SET = re.compile(r"Reminder #(\d+) set")
_FOOTER = re.compile(r"Reminder #(\d+) · ([0-9a-f]+)")


@dataclass
class Place:
    guild_id: int
    channel_id: int
    owner_id: int  # admin: skips throttles, may cancel others' reminders
    members: list[int]  # no special rights
    cluster: int


@dataclass
class Env:
    supervisor: Supervisor
    dsn: str
    sandbox: SandboxProc
    places: list[Place]
    redis_url: str
    prefix: str

    def on_cluster(self, cluster: int) -> Place:
        return next(p for p in self.places if p.cluster == cluster)


def places(world: dict[str, Any]) -> list[Place]:
    out = []
    for g in world["guilds"]:
        texts, plain = text_channels(g), plain_members(g)
        if texts and len(plain) >= 2:
            cluster = cluster_of(int(g["id"]), SHARDS, CLUSTERS)
            out.append(Place(int(g["id"]), texts[0], int(g["owner_id"]), plain, cluster))
    return out


@pytest.fixture(scope="module")
async def env(sandbox: SandboxProc, bot_db: str, redis_url: str) -> AsyncIterator[Env]:
    found = places(await world_of(sandbox))
    assert {p.cluster for p in found} == {0, 1}, "the test world needs guilds on both clusters"
    prefix = new_prefix()
    async with running_cluster(
        sandbox,
        bot_db,
        redis_url,
        shards=SHARDS,
        clusters=CLUSTERS,
        owner_id=123456789012345678,
        prefix=prefix,
    ) as sup:
        yield Env(sup, bot_db, sandbox, found, redis_url, prefix)


async def ask(driver: Driver, p: Place, user: int, text: str) -> str:
    """The bot's answer to a command (reminders being delivered meanwhile are skipped)."""
    await driver.say(p.channel_id, user, text)
    for _ in range(10):
        for entry in await driver.replies(p.channel_id, wait=10):
            if entry.get("kind") != "edit" and footer_of(entry) is None:
                return text_of(entry)
    raise AssertionError(f"no answer to {text!r}")


async def create(driver: Driver, p: Place, user: int, text: str) -> int:
    reply = await ask(driver, p, user, text)
    m = _SET.search(reply)
    assert m, reply
    return int(m.group(1))


def footer_of(entry: dict[str, Any]) -> tuple[int, str] | None:
    for embed in entry.get("embeds") or []:
        m = _FOOTER.fullmatch(str((embed.get("footer") or {}).get("text") or ""))
        if m:
            return int(m.group(1)), m.group(2)
    return None


async def dm_channel(env: Env, user_id: int) -> int:
    """The DM channel between the bot and a user, as the bot would open it."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{env.sandbox.info['api_url']}/users/@me/channels",
            json={"recipient_id": str(user_id)},
            headers={"Authorization": f"Bot {env.sandbox.info['token']}"},
        ) as resp,
    ):
        assert resp.status == 200, await resp.text()
        return int((await resp.json())["id"])


async def reminder_in(driver: Driver, channel_id: int, reminder_id: int) -> dict[str, Any]:
    """The reminder's message in a channel (waits for it; skips other messages)."""
    for _ in range(10):
        for entry in await driver.replies(channel_id, wait=15):
            found = footer_of(entry)
            if entry.get("kind") == "message" and found and found[0] == reminder_id:
                return entry
    raise AssertionError(f"reminder #{reminder_id} did not arrive in {channel_id}")


async def outbox(driver: Driver, after: int) -> list[dict[str, Any]]:
    async with driver.http.get(
        f"{driver.base}/_sandbox/outbox", params={"after": str(after), "wait": "0"}
    ) as resp:
        data = await resp.json()
    return data if isinstance(data, list) else []


async def test_prefix_reminder_arrives_in_the_channel(env: Env, driver: Driver) -> None:
    p = env.on_cluster(0)
    author = p.members[0]
    await driver.drain(p.channel_id)
    rid = await create(driver, p, author, "!remind in 2s Roll for initiative")
    entry = await reminder_in(driver, p.channel_id, rid)
    assert entry["content"] == f"⏰ <@{author}>"
    assert "Roll for initiative" in text_of(entry)
    allowed = entry.get("allowed_mentions") or {}
    assert [str(u) for u in allowed.get("users") or []] == [str(author)]
    assert not allowed.get("parse")


async def test_slash_reminder_arrives_by_dm(env: Env, driver: Driver) -> None:
    p = env.on_cluster(1)
    await driver.drain(p.channel_id)
    options = [
        {"name": "when", "type": 3, "value": "in 2s"},
        {"name": "message", "type": 3, "value": "Bring the character sheets"},
        {"name": "via", "type": 3, "value": "dm"},
    ]
    await driver.slash(
        p.channel_id, p.owner_id, "remind", [{"name": "create", "type": 1, "options": options}]
    )
    (answer,) = await driver.replies(p.channel_id)
    assert answer["kind"] == "interaction_response"
    m = _SET.search(text_of(answer))
    assert m and "by DM" in text_of(answer), text_of(answer)
    dm = await dm_channel(env, p.owner_id)
    entry = await reminder_in(driver, dm, int(m.group(1)))
    assert entry["content"] == f"⏰ Reminder (set in <#{p.channel_id}>)"
    assert "Bring the character sheets" in text_of(entry)


async def test_prefix_dm_and_lead_time(env: Env, driver: Driver) -> None:
    p = env.on_cluster(0)
    await driver.drain(p.channel_id)
    rid = await create(driver, p, p.owner_id, "!remind in 1m 3s Session --before 1m --dm")
    entry = await reminder_in(driver, await dm_channel(env, p.owner_id), rid)
    text = text_of(entry)
    assert "In 1m" in text and "Session" in text


async def test_players_target_mentions_the_table(env: Env, driver: Driver) -> None:
    p = env.on_cluster(1)
    gm, players = p.owner_id, p.members[:2]
    conn = await asyncpg.connect(env.dsn)
    try:  # the tabletop cog's player list, as `init` commands would leave it
        await conn.execute(
            "INSERT INTO tabletop_tables (channel_id, guild_id, gm_id) VALUES ($1, $2, $3) "
            "ON CONFLICT (channel_id) DO UPDATE SET gm_id = EXCLUDED.gm_id",
            p.channel_id,
            p.guild_id,
            gm,
        )
        for i, user in enumerate(players):
            await conn.execute(
                "INSERT INTO tabletop_combatants (channel_id, name, user_id) VALUES ($1, $2, $3) "
                "ON CONFLICT DO NOTHING",
                p.channel_id,
                f"pc{i}",
                user,
            )
    finally:
        await conn.close()
    await driver.drain(p.channel_id)
    rid = await create(driver, p, gm, "!remind in 2s The run starts --to players")
    entry = await reminder_in(driver, p.channel_id, rid)
    mentioned = set(re.findall(r"<@(\d+)>", entry["content"]))
    assert mentioned == {str(u) for u in [gm, *players]}
    allowed = (entry.get("allowed_mentions") or {}).get("users") or []
    assert {str(u) for u in allowed} == mentioned


async def test_missed_reminder_is_sent_marked_late(env: Env, driver: Driver) -> None:
    """As if the bot had been down when it was due: its time (and its job's) is moved two hours
    back, and the job runners are woken over Redis as a new reminder would wake them."""
    p = env.on_cluster(1)
    await driver.drain(p.channel_id)
    rid = await create(driver, p, p.owner_id, "!remind in 1h Missed session")
    conn = await asyncpg.connect(env.dsn)
    try:
        await conn.execute(
            "UPDATE reminder_deliveries SET fire_at = now() - interval '2 hours 5 minutes', "
            "event_at = now() - interval '2 hours 5 minutes' WHERE reminder_id = $1",
            rid,
        )
        await conn.execute(
            "UPDATE jobs SET due_at = d.fire_at FROM reminder_deliveries d "
            "WHERE d.reminder_id = $1 AND jobs.kind = 'reminders.deliver' "
            "AND jobs.key = 'delivery:' || d.id",
            rid,
        )
    finally:
        await conn.close()
    redis = aioredis.Redis.from_url(env.redis_url)
    try:
        await redis.publish(f"{env.prefix}jobs:wake", b"test")
    finally:
        await redis.aclose()
    entry = await reminder_in(driver, p.channel_id, rid)
    assert entry["content"] == f"⏰ <@{p.owner_id}> (late by 2h 5m)"


async def test_list_and_cancel(env: Env, driver: Driver) -> None:
    p = env.on_cluster(0)
    member, other = p.members[0], p.members[1]
    await driver.drain(p.channel_id)
    first = await create(driver, p, member, "!remind in 1h Buy dice")
    second = await create(driver, p, member, "!remind in 2h Prep the dungeon --repeat daily")
    listing = await ask(driver, p, member, "!remind list")
    assert f"`#{first}`" in listing and f"`#{second}`" in listing and "every day" in listing
    refused = await ask(driver, p, other, f"!remind cancel {first}")
    assert refused.startswith(f"Reminder #{first} isn't yours")
    assert await ask(driver, p, other, "!remind list server") == (
        "Only moderators can list everyone's reminders."
    )
    assert await ask(driver, p, member, f"!remind cancel #{second}") == (
        f"Reminder #{second} cancelled."
    )
    listing = await ask(driver, p, member, "!remind list")
    assert f"`#{first}`" in listing and f"`#{second}`" not in listing
    # A moderator (here the server's owner) may cancel anyone's, and it is audited.
    everyone = await ask(driver, p, p.owner_id, "!remind list server")
    assert f"`#{first}`" in everyone and f"<@{member}>" in everyone
    assert await ask(driver, p, p.owner_id, f"!remind cancel {first}") == (
        f"Reminder #{first} cancelled."
    )
    assert await ask(driver, p, member, f"!remind cancel {first}") == (
        f"There is no active reminder #{first}."
    )
    conn = await asyncpg.connect(env.dsn)
    try:
        row = await conn.fetchrow(
            "SELECT actor_id, target_id FROM audit_log WHERE action = 'reminders.cancel' "
            "AND guild_id = $1 ORDER BY id DESC LIMIT 1",
            p.guild_id,
        )
    finally:
        await conn.close()
    assert row is not None and (row["actor_id"], row["target_id"]) == (p.owner_id, member)


async def test_slash_list(env: Env, driver: Driver) -> None:
    p = env.on_cluster(1)
    await driver.drain(p.channel_id)
    rid = await create(driver, p, p.members[1], "!remind in 3h Slash listed")
    await driver.slash(p.channel_id, p.members[1], "remind", [{"name": "list", "type": 1}])
    (answer,) = await driver.replies(p.channel_id)
    assert answer["kind"] == "interaction_response" and f"`#{rid}`" in text_of(answer)


async def test_bad_input_is_named(env: Env, driver: Driver) -> None:
    p = env.on_cluster(1)
    user = p.members[0]
    await driver.drain(p.channel_id)
    assert await ask(driver, p, user, "!remind in 2h") == (
        "Missing the message: what should I remind you of?"
    )
    text = await ask(driver, p, user, "!remind in 2h Dinner --before 3h")
    assert text == "Lead time `3h` would be in the past: the time is only 2h away."
    text = await ask(driver, p, user, "!remind soonish Dinner")
    assert text.startswith("`soonish` is not a time I understand")
    text = await ask(driver, p, user, "!remind in 2h x --repeat 10m")
    assert text == "`10m` repeats too often; at least an hour apart."
    assert "`--loud`" in await ask(driver, p, user, "!remind in 2h x --loud")
    assert "`abc` is not a reminder number" in await ask(driver, p, user, "!remind cancel abc")


async def test_timezone_and_local_times(env: Env, driver: Driver) -> None:
    p = env.on_cluster(0)
    user = p.members[1]
    await driver.drain(p.channel_id)
    assert (await ask(driver, p, user, "!timezone")).startswith("You haven't set a timezone")
    text = await ask(driver, p, user, "!timezone set Mars/Olympus_Mons")
    assert text.startswith("`Mars/Olympus_Mons` is not a timezone I know.")
    text = await ask(driver, p, user, "!timezone set europe/berlin")
    assert text.startswith("Your timezone is now Europe/Berlin")
    assert (await ask(driver, p, user, "!timezone")).startswith("Your timezone is Europe/Berlin")
    berlin = ZoneInfo("Europe/Berlin")
    day = (datetime.now(berlin) + timedelta(days=20)).date()
    expected = int(datetime(day.year, day.month, day.day, 19, 30, tzinfo=berlin).timestamp())
    text = await ask(driver, p, user, f"!remind {day.isoformat()} 19:30 Session zero")
    assert f"<t:{expected}:F>" in text and "19:30 Europe/Berlin" in text
    # The next spring-forward night: 02:30 doesn't exist there.
    gap = next(
        d
        for d in (datetime.now(UTC).date() + timedelta(days=i) for i in range(1, 366))
        if datetime(d.year, d.month, d.day, 12, tzinfo=berlin).utcoffset()
        != datetime(d.year, d.month, d.day, 0, tzinfo=berlin).utcoffset()
        and d.month == 3
    )
    text = await ask(driver, p, user, f"!remind {gap.isoformat()} 02:30 Too early")
    assert text.startswith(f"`{gap.isoformat()} 02:30` doesn't exist in Europe/Berlin")


async def test_help_shows_the_syntax(env: Env, driver: Driver) -> None:
    p = env.on_cluster(0)
    await driver.drain(p.channel_id)
    text = await ask(driver, p, p.members[0], "!help remind")
    assert "--before 30m 6h 1d" in text and "!remind in 2h Check the oven" in text


async def _is_sent(row: Awaitable[asyncpg.Record]) -> bool:
    return str((await row)["status"]) == "sent"


async def _at_least(count: Awaitable[int], n: int) -> bool:
    return await count >= n


async def wait_ready(env: Env, cluster: int, old_pid: int | None) -> None:
    await until(
        f"cluster {cluster} back",
        lambda: env.supervisor.workers[cluster].pid != old_pid and env.supervisor.ready(),
        within=60,
    )


async def test_killed_after_sending_before_marking_is_not_sent_again(
    env: Env, driver: Driver
) -> None:
    """The crash window itself: the worker has sent the reminder but is killed before it marks
    it sent. A lock the test holds on the reminder's row stops the worker right there (marking
    takes that lock first). The restarted worker reclaims the delivery, finds the message by
    its nonce in the channel, and marks it sent without sending it again."""
    one = env.on_cluster(1)
    await driver.drain(one.channel_id)
    rid = await create(driver, one, one.owner_id, "!remind in 3s Crash window")
    conn = await asyncpg.connect(env.dsn)
    try:
        lock = conn.transaction()
        await lock.start()
        await conn.execute("SELECT 1 FROM reminders WHERE id = $1 FOR UPDATE", rid)
        entry = await reminder_in(driver, one.channel_id, rid)  # sent; marking now waits
        old_pid = env.supervisor.workers[1].pid
        env.supervisor.kill(1)
        await lock.rollback()
        await wait_ready(env, 1, old_pid)

        async def delivery() -> asyncpg.Record:
            found = await conn.fetchrow(
                "SELECT status, attempts, message_id FROM reminder_deliveries "
                "WHERE reminder_id = $1",
                rid,
            )
            assert found is not None
            return found

        await until("the delivery marked sent", lambda: _is_sent(delivery()), within=60)
        row = await delivery()
    finally:
        await conn.close()
    assert (row["status"], row["attempts"]) == ("sent", 2)
    assert row["message_id"] == int(entry["message_id"])  # the first worker's message
    again = [
        e
        for e in await driver.replies(one.channel_id, wait=1, count=100)
        if (f := footer_of(e)) is not None and f[0] == rid
    ]
    assert again == []


async def test_every_reminder_fires_once_with_a_worker_killed(env: Env, driver: Driver) -> None:
    """Reminders on both clusters and by DM fall due over a few seconds; cluster 1's worker is
    killed with SIGKILL while they do, and restarted by the supervisor. Each fires once."""
    zero, one = env.on_cluster(0), env.on_cluster(1)
    await driver.drain(zero.channel_id)
    await driver.drain(one.channel_id)
    start = (await outbox(driver, 0) or [{"seq": 0}])[-1]["seq"]
    ids: list[int] = []
    for i, delay in enumerate((2, 3, 4, 5, 6, 7)):
        ids.append(await create(driver, one, one.owner_id, f"!remind in {delay}s one-{i}"))
    for i, delay in enumerate((2, 4, 6)):
        ids.append(await create(driver, zero, zero.owner_id, f"!remind in {delay}s zero-{i}"))
    for i, delay in enumerate((3, 5)):
        ids.append(await create(driver, one, one.owner_id, f"!remind in {delay}s dm-{i} --dm"))
    old_pid = env.supervisor.workers[1].pid
    conn = await asyncpg.connect(env.dsn)
    try:

        async def sent() -> int:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FROM reminder_deliveries "
                    "WHERE reminder_id = ANY($1::bigint[]) AND status = 'sent'",
                    ids,
                )
            )

        # Some have fired (those due in 2 s), some are due right now, some are still to come.
        await until("the first reminders sent", lambda: _at_least(sent(), 2), within=30)
        env.supervisor.kill(1)  # SIGKILL: no drain, no clean-up
        await until("every reminder sent", lambda: _at_least(sent(), len(ids)), within=90)
        rows = await conn.fetch(
            "SELECT reminder_id, status, attempts, nonce FROM reminder_deliveries "
            "WHERE reminder_id = ANY($1::bigint[])",
            ids,
        )
    finally:
        await conn.close()
    assert env.supervisor.workers[1].pid != old_pid  # it really was killed and restarted
    assert sorted(r["status"] for r in rows) == ["sent"] * len(ids)
    delivered = Counter(
        f
        for e in await outbox(driver, start)
        if e.get("kind") == "message" and (f := footer_of(e)) is not None and f[0] in ids
    )
    assert sorted(rid for rid, _ in delivered) == sorted(ids)  # every one arrived ...
    assert set(delivered.values()) == {1}  # ... exactly once
    assert {nonce for _, nonce in delivered} == {r["nonce"] for r in rows}
    await wait_ready(env, 1, old_pid)  # leave the cluster whole for whatever runs next
