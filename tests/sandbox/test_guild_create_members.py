"""GUILD_CREATE's members and presences as Discord's documentation (Gateway Events, Guild
Create) says: without GUILD_PRESENCES, or over 75k members, only the bot (and users in voice
channels, which the sandbox has none of); with it, only online members of a large guild (over
IDENTIFY's large_threshold), every member of a small one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from sandbox import Sandbox, SandboxConfig
from sandbox.world import Member, User

pytestmark = pytest.mark.timeout(120)

GUILDS, GUILD_MEMBERS, GUILD_PRESENCES = 1 << 0, 1 << 1, 1 << 8


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    config = SandboxConfig(guilds=1, members=6, identify_interval=0, heartbeat_ms=30000)
    async with Sandbox(config) as s:
        yield s


async def guild_create(sb: Sandbox, intents: int, **extra: Any) -> dict[str, Any]:
    """IDENTIFY with these intents (and extra fields); the one GUILD_CREATE's data."""
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{sb.gateway_url}?v=10&encoding=json") as ws,
    ):
        await ws.receive()  # HELLO
        identify = {"token": sb.token, "intents": intents, "shard": [0, 1], "properties": {}}
        await ws.send_str(orjson.dumps({"op": 2, "d": {**identify, **extra}}).decode())
        while True:
            msg = await ws.receive(timeout=30)
            assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, ws.close_code)
            payload = orjson.loads(msg.data)
            if payload.get("t") == "GUILD_CREATE":
                return dict(payload["d"])


def the_guild(sb: Sandbox) -> Any:
    return next(iter(sb.world.guilds.values()))


def add_members(sb: Sandbox, count: int) -> list[int]:
    guild = the_guild(sb)
    ids = []
    for i in range(count):
        user = User(sb.world.ids.now(), f"many{i}")
        sb.world.users[user.id] = user
        guild.members[user.id] = Member(user.id, [], 1_600_000_000.0)
        ids.append(user.id)
    return ids


def member_ids(create: dict[str, Any]) -> list[int]:
    return [int(m["user"]["id"]) for m in create["members"]]


async def test_without_the_presences_intent_only_the_bot(sb: Sandbox) -> None:
    add_members(sb, 10)  # a small guild, and GUILD_MEMBERS does not change it
    create = await guild_create(sb, GUILDS | GUILD_MEMBERS)
    assert member_ids(create) == [sb.world.bot.id]
    assert create["presences"] == [] and create["member_count"] == len(the_guild(sb).members)


async def test_a_small_guild_with_presences_sends_every_member(sb: Sandbox) -> None:
    guild = the_guild(sb)
    someone = next(u for u in guild.members if u != sb.world.bot.id)
    await sb.event("presence", {"guild_id": guild.id, "user_id": someone, "status": "idle"})
    create = await guild_create(sb, GUILDS | GUILD_PRESENCES)
    assert not create["large"]
    assert sorted(member_ids(create)) == sorted(guild.members)
    assert [(p["user"]["id"], p["status"]) for p in create["presences"]] == [(str(someone), "idle")]


async def test_a_large_guild_with_presences_sends_only_online_members(sb: Sandbox) -> None:
    guild = the_guild(sb)
    crowd = add_members(sb, 300)  # over any large_threshold
    online = crowd[::100]
    for user_id in online:
        await sb.event("presence", {"guild_id": guild.id, "user_id": user_id, "status": "online"})
    create = await guild_create(sb, GUILDS | GUILD_MEMBERS | GUILD_PRESENCES)
    assert create["large"] and create["member_count"] == len(guild.members)
    assert sorted(member_ids(create)) == sorted([sb.world.bot.id, *online])
    assert sorted(int(p["user"]["id"]) for p in create["presences"]) == sorted(online)


@pytest.mark.parametrize(("threshold", "large"), [(None, True), (50, True), (250, False)])
async def test_large_follows_identifys_large_threshold(
    sb: Sandbox, threshold: int | None, large: bool
) -> None:
    add_members(sb, 100 - len(the_guild(sb).members))  # large over the default 50, not 250
    extra = {} if threshold is None else {"large_threshold": threshold}
    create = await guild_create(sb, GUILDS | GUILD_PRESENCES, **extra)
    assert create["large"] is large
    assert len(create["members"]) == (1 if large else 100)  # nobody else is online


async def test_over_75k_members_only_the_bot_even_with_presences(sb: Sandbox) -> None:
    guild = the_guild(sb)
    crowd = add_members(sb, 75_000)
    await sb.event("presence", {"guild_id": guild.id, "user_id": crowd[0], "status": "online"})
    create = await guild_create(sb, GUILDS | GUILD_MEMBERS | GUILD_PRESENCES)
    assert create["member_count"] == len(guild.members) > 75_000
    assert member_ids(create) == [sb.world.bot.id] and create["presences"] == []
