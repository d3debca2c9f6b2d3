"""Creating channels (`POST /guilds/{id}/channels`) as Discord's "Create Guild Channel" has
it: a category, then voice and text channels in it with overwrites and positions; the body's
problems as one "Invalid Form Body"; 50013 without Manage Channels or for an overwrite that
grants what the bot lacks; CHANNEL_CREATE to a GUILDS session; the audit log's entry; the bot
sees the new channels as discord.py builds them (the shapes against Discord's OpenAPI
description when it is at hand)."""

from __future__ import annotations

import pytest
from moderation_kit import GUILDS, Kit, conforms, kit, load_openapi

from sandbox.world import (
    ADMINISTRATOR,
    CONNECT,
    MANAGE_CHANNELS,
    MANAGE_ROLES,
    SEND_MESSAGES,
    VIEW_CHANNEL,
    Guild,
)

pytestmark = pytest.mark.timeout(60)
__all__ = ["kit"]
OPENAPI = load_openapi()


def guild_of(kit: Kit) -> Guild:
    return next(iter(kit.sb.world.guilds.values()))


async def test_a_category_then_locked_voice_and_text_channels_in_it(kit: Kit) -> None:
    guild = guild_of(kit)
    listener = await kit.listen(GUILDS)
    locked = [{"id": str(guild.id), "type": 0, "deny": str(CONNECT | SEND_MESSAGES)}]
    status, category = await kit.rest(
        "POST",
        f"guilds/{guild.id}/channels",
        {"name": "📊 Server stats", "type": 4, "permission_overwrites": locked},
        headers={"X-Audit-Log-Reason": "stats setup"},
    )
    assert status == 200, category
    assert category["type"] == 4 and category["parent_id"] is None
    assert category["permission_overwrites"] == [
        {"id": str(guild.id), "type": 0, "allow": "0", "deny": str(CONNECT | SEND_MESSAGES)}
    ]
    event = await listener.next("CHANNEL_CREATE")
    assert event == category and event["guild_id"] == str(guild.id)
    status, voice = await kit.rest(
        "POST",
        f"guilds/{guild.id}/channels",
        {
            "name": "Members: 12",
            "type": 2,
            "parent_id": category["id"],
            "permission_overwrites": locked,
        },
    )
    assert status == 200 and voice["parent_id"] == category["id"] and voice["type"] == 2
    status, text = await kit.rest(
        "POST",
        f"guilds/{guild.id}/channels",
        {"name": "Bans: 0", "parent_id": category["id"], "position": 7, "topic": "counts"},
    )
    assert status == 200 and text["type"] == 0 and text["position"] == 7
    assert text["topic"] == "counts" and text["permission_overwrites"] == []
    assert [(await listener.next("CHANNEL_CREATE"))["id"] for _ in range(2)] == [
        voice["id"],
        text["id"],
    ]
    # The new channels are the world's: readable, and in the guild's channel list.
    status, read = await kit.rest("GET", f"channels/{voice['id']}")
    assert status == 200 and read == voice
    status, listed = await kit.rest("GET", f"guilds/{guild.id}/channels")
    assert {category["id"], voice["id"], text["id"]} <= {c["id"] for c in listed}
    # A voice channel without a position goes after the other voice channels.
    assert voice["position"] == 1 + max(
        c.position for c in guild.channels.values() if c.type == 2 and str(c.id) != voice["id"]
    )
    # Members can't join the locked voice channel.
    member = next(u for u, m in guild.members.items() if not m.roles and u != guild.owner_id)
    assert not guild.permissions(member, guild.channels[int(voice["id"])]) & CONNECT
    status, entries = await kit.rest("GET", f"guilds/{guild.id}/audit-logs")
    made = [e for e in entries["audit_log_entries"] if e["action_type"] == 10]
    assert [e["target_id"] for e in made] == [text["id"], voice["id"], category["id"]]
    assert made[-1]["reason"] == "stats setup"
    for ch in (category, voice, text):
        assert conforms(OPENAPI, "GuildChannelResponse", ch) == []


async def test_what_is_wrong_is_named(kit: Kit) -> None:
    guild = guild_of(kit)
    text_id = next(c.id for c in guild.channels.values() if c.type == 0)
    path = f"guilds/{guild.id}/channels"
    cases = [
        ({}, ["name"]),
        ({"name": ""}, ["name"]),
        ({"name": "x" * 101}, ["name"]),
        ({"name": "x", "type": 13}, ["type"]),
        ({"name": "x", "rate_limit_per_user": 21601}, ["rate_limit_per_user"]),
        ({"name": "x", "permission_overwrites": {}}, ["permission_overwrites"]),
        ({"name": "x", "permission_overwrites": [{"type": 0}]}, ["permission_overwrites", "0"]),
        (
            {"name": "x", "permission_overwrites": [{"id": "1", "type": 2, "allow": "x"}]},
            ["permission_overwrites", "0"],
        ),
        ({"name": "x", "parent_id": str(text_id)}, ["parent_id"]),  # not a category
        ({"name": "x", "type": 4, "parent_id": str(text_id)}, ["parent_id"]),
    ]
    for body, where in cases:
        status, answer = await kit.rest("POST", path, body)
        assert status == 400 and answer["code"] == 50035, (body, answer)
        node = answer["errors"]
        for key in where:
            node = node[key]
        assert node, (body, answer)
    status, answer = await kit.rest("POST", "guilds/1/channels", {"name": "x"})
    assert status == 404 and answer["code"] == 10004


async def test_manage_channels_and_what_an_overwrite_may_grant(kit: Kit) -> None:
    guild = guild_of(kit)
    path = f"guilds/{guild.id}/channels"
    before = len(guild.channels)
    # The bot can't grant what it lacks, nor Manage Roles in a channel unless an administrator.
    for bits in (ADMINISTRATOR, MANAGE_ROLES):
        grant = {"id": str(guild.id), "type": 0, "allow": str(bits)}
        body = {"name": "x", "permission_overwrites": [grant]}
        status, answer = await kit.rest("POST", path, body)
        assert status == 403 and answer["code"] == 50013, bits
    for kind, code in ((0, 10011), (1, 10013)):  # an unknown role or user
        body = {"name": "x", "permission_overwrites": [{"id": "1", "type": kind}]}
        status, answer = await kit.rest("POST", path, body)
        assert status == 404 and answer["code"] == code
    bot_role = next(r for r in guild.roles.values() if r.managed)
    bot_role.permissions &= ~MANAGE_CHANNELS
    status, answer = await kit.rest("POST", path, {"name": "x"})
    assert status == 403 and answer["code"] == 50013
    assert len(guild.channels) == before  # nothing made
    bot_role.permissions |= ADMINISTRATOR  # an administrator may do all of it
    status, made = await kit.rest(
        "POST",
        path,
        {
            "name": "x",
            "permission_overwrites": [
                {"id": str(guild.id), "type": 0, "deny": str(VIEW_CHANNEL | MANAGE_ROLES)}
            ],
        },
    )
    assert status == 200 and made["name"] == "x"
