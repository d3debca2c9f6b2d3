"""The moderation endpoints, as Discord has them: bulk delete, timeouts, nicks and roles, kicks,
bans (with the purge of recent messages and paginated lists), channel overwrites, slowmode,
the role hierarchy, closed DMs; their gateway events (only to sessions with the intent) and
the audit log with X-Audit-Log-Reason. Shapes are checked against Discord's OpenAPI
description when it is at hand."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from moderation_kit import (
    GUILD_MEMBERS,
    GUILD_MESSAGES,
    GUILD_MODERATION,
    GUILDS,
    Kit,
    conforms,
    kit,
    load_openapi,
)

from sandbox.world import SEND_MESSAGES, Guild

pytestmark = pytest.mark.timeout(60)
__all__ = ["kit"]
OPENAPI = load_openapi()
SPEC = pytest.mark.skipif(OPENAPI is None, reason="Discord's OpenAPI description is not here")


def guild_of(kit: Kit) -> Guild:
    return next(iter(kit.sb.world.guilds.values()))


def people(kit: Kit) -> tuple[Guild, int, int, list[int]]:
    """The guild, its owner, its moderator and its plain members."""
    guild = guild_of(kit)
    mod_role = next(r.id for r in guild.roles.values() if r.name == "Moderators")
    moderator = next(u for u, m in guild.members.items() if mod_role in m.roles)
    plain = [
        u
        for u, m in guild.members.items()
        if not m.roles and u not in (guild.owner_id, kit.sb.world.bot.id)
    ]
    return guild, guild.owner_id, moderator, plain


def general(guild: Guild) -> int:
    return next(c.id for c in guild.channels.values() if c.name == "general")


def in_days(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


async def audit(kit: Kit, guild: Guild, **query: Any) -> list[dict[str, Any]]:
    params = {k: str(v) for k, v in query.items()}
    status, body = await kit.rest("GET", f"guilds/{guild.id}/audit-logs", params=params)
    assert status == 200, body
    assert conforms(OPENAPI, "GuildAuditLogResponse", body) == []
    entries: list[dict[str, Any]] = body["audit_log_entries"]
    return entries


async def test_bulk_delete(kit: Kit) -> None:
    guild, _, _, plain = people(kit)
    ch = general(guild)
    listener = await kit.listen(GUILDS | GUILD_MESSAGES)
    fresh = [(await kit.sb.send_message(ch, plain[0], f"m{i}"))["id"] for i in range(3)]
    old = (await kit.sb.send_message(ch, plain[0], "old", age=15 * 86400))["id"]
    path = f"channels/{ch}/messages/bulk-delete"
    for wrong, why in [
        ([fresh[0]], "BASE_TYPE_BAD_LENGTH"),
        ([str(i + 1) for i in range(101)], "BASE_TYPE_BAD_LENGTH"),
        ([fresh[0], fresh[0]], "BASE_TYPE_DUPLICATES"),
        ([fresh[0], "abc"], None),
    ]:
        status, body = await kit.rest("POST", path, {"messages": wrong})
        assert status == 400 and body["code"] == 50035 and "messages" in body["errors"], body
        if why:
            assert body["errors"]["messages"]["_errors"][0]["code"] == why
    status, body = await kit.rest("POST", path, {"messages": [fresh[0], old]})
    assert status == 400 and body["code"] == 50034, body
    assert int(fresh[0]) in kit.sb.rest.messages[ch]  # nothing went
    headers = {"X-Audit-Log-Reason": "spam%20wave"}
    status, _ = await kit.rest("POST", path, {"messages": fresh[:2]}, headers=headers)
    assert status == 204
    event = await listener.next("MESSAGE_DELETE_BULK")
    assert sorted(event["ids"]) == sorted(fresh[:2]) and event["channel_id"] == str(ch)
    assert {int(i) for i in fresh[:2]}.isdisjoint(kit.sb.rest.messages[ch])
    [entry] = await audit(kit, guild, action_type=73)
    assert entry["reason"] == "spam wave" and entry["options"]["count"] == "2"
    assert entry["target_id"] == str(ch)
    # Without Manage Messages in the channel: 50013.
    bot_role = next(r for r in guild.roles.values() if r.managed)
    await kit.rest(
        "PUT",
        f"channels/{ch}/permissions/{bot_role.id}",
        {"type": 0, "deny": str(1 << 13)},
    )
    status, body = await kit.rest("POST", path, {"messages": [fresh[2], old]})
    assert status == 403 and body["code"] == 50013


async def test_timeouts_nicks_and_the_hierarchy(kit: Kit) -> None:
    guild, owner, moderator, plain = people(kit)
    listener = await kit.listen(GUILDS | GUILD_MEMBERS)
    target = plain[0]
    path = f"guilds/{guild.id}/members/{target}"
    status, member = await kit.rest(
        "PATCH", path, {"communication_disabled_until": in_days(1), "nick": "Quiet"},
        headers={"X-Audit-Log-Reason": "cool down"},
    )  # fmt: skip
    assert status == 200 and member["nick"] == "Quiet", member
    assert member["communication_disabled_until"] is not None
    assert conforms(OPENAPI, "GuildMemberResponse", member) == []
    update = await listener.next("GUILD_MEMBER_UPDATE")
    assert update["user"]["id"] == str(target) and update["communication_disabled_until"]
    [entry] = await audit(kit, guild, action_type=24, target_id=target)
    assert {c["key"] for c in entry["changes"]} == {"communication_disabled_until", "nick"}
    assert entry["reason"] == "cool down" and entry["user_id"] == str(kit.sb.world.bot.id)
    # A timed-out member can't speak.
    status, body = await kit.ctl(
        "POST", "/_sandbox/messages",
        {"channel_id": str(general(guild)), "author_id": str(target), "content": "hi"},
    )  # fmt: skip
    assert status == 403 and body["code"] == 50013
    for value, code in [(in_days(28.5), "BASE_TYPE_BAD_TIME"), ("soon", "DATE_TYPE_PARSE")]:
        status, body = await kit.rest("PATCH", path, {"communication_disabled_until": value})
        assert status == 400 and body["code"] == 50035, body
        assert body["errors"]["communication_disabled_until"]["_errors"][0]["code"] == code
    status, me = await kit.rest("PATCH", f"guilds/{guild.id}/members/@me", {"nick": "Warden"})
    assert status == 200 and me["nick"] == "Warden" and me["user"]["id"] == str(kit.sb.world.bot.id)
    status, body = await kit.rest("PATCH", path, {"nick": "x" * 33})
    assert status == 400 and "nick" in body["errors"]
    # Nobody times out the owner; nor a member whose highest role is not below the bot's.
    status, body = await kit.rest(
        "PATCH", f"guilds/{guild.id}/members/{owner}", {"communication_disabled_until": in_days(1)}
    )
    assert status == 403 and body["code"] == 50013
    mod_role = next(r for r in guild.roles.values() if r.name == "Moderators")
    bot_role = next(r for r in guild.roles.values() if r.managed)
    move = {"guild_id": str(guild.id), "role_id": str(mod_role.id), "position": 2}
    status, moved = await kit.ctl("PATCH", "/_sandbox/roles", move)
    assert status == 200 and moved["position"] == 2
    assert mod_role.position > bot_role.position
    for method, sub, body_ in [
        ("PATCH", "", {"communication_disabled_until": in_days(1)}),
        ("PATCH", "", {"nick": "Boss"}),
        ("DELETE", "", None),
        ("PUT", f"/roles/{mod_role.id}", None),
    ]:
        status, body = await kit.rest(method, f"guilds/{guild.id}/members/{moderator}{sub}", body_)
        assert status == 403 and body["code"] == 50013, (method, sub, body)
    # The bot's own roles decide: with a second role above the moderators', it may act again.
    status, top = await kit.ctl(
        "POST", "/_sandbox/roles", {"guild_id": str(guild.id), "name": "Top", "position": 3}
    )
    assert status == 200 and top["position"] == 3
    status, _ = await kit.ctl(
        "PATCH",
        "/_sandbox/members",
        {
            "guild_id": str(guild.id),
            "user_id": str(kit.sb.world.bot.id),
            "roles": [str(bot_role.id), top["id"]],
        },
    )
    assert status == 200
    status, body = await kit.rest(
        "PATCH", f"guilds/{guild.id}/members/{moderator}", {"communication_disabled_until": None}
    )
    assert status == 200, body


async def test_roles_and_kicks(kit: Kit) -> None:
    guild, owner, _, plain = people(kit)
    listener = await kit.listen(GUILDS | GUILD_MEMBERS)
    status, role = await kit.ctl(
        "POST", "/_sandbox/roles", {"guild_id": str(guild.id), "name": "Raider", "position": 1}
    )
    assert status == 200 and role["position"] == 1
    base = f"guilds/{guild.id}/members/{plain[0]}"
    assert (await kit.rest("PUT", f"{base}/roles/{role['id']}"))[0] == 204
    assert int(role["id"]) in guild.members[plain[0]].roles
    assert (await listener.next("GUILD_MEMBER_UPDATE"))["roles"] == [role["id"]]
    [entry] = await audit(kit, guild, action_type=25)
    assert entry["changes"] == [
        {"key": "$add", "new_value": [{"id": role["id"], "name": "Raider"}]}
    ]
    assert (await kit.rest("DELETE", f"{base}/roles/{role['id']}"))[0] == 204
    assert guild.members[plain[0]].roles == []
    status, body = await kit.rest("PUT", f"{base}/roles/1")
    assert status == 404 and body["code"] == 10011
    status, member = await kit.rest("PATCH", base, {"roles": [role["id"]]})
    assert status == 200 and member["roles"] == [role["id"]]
    status, body = await kit.rest("PATCH", base, {"roles": "all"})
    assert status == 400 and body["errors"]["roles"]["_errors"][0]["code"] == "BASE_TYPE_ARRAY"
    # Kick: GUILD_MEMBER_REMOVE and an audit entry with the reason; never the owner.
    status, _ = await kit.rest("DELETE", base, headers={"X-Audit-Log-Reason": "bye"})
    assert status == 204 and plain[0] not in guild.members
    assert (await listener.next("GUILD_MEMBER_REMOVE"))["user"]["id"] == str(plain[0])
    [entry] = await audit(kit, guild, action_type=20)
    assert entry["target_id"] == str(plain[0]) and entry["reason"] == "bye"
    status, body = await kit.rest("DELETE", f"guilds/{guild.id}/members/{owner}")
    assert status == 403 and body["code"] == 50013
    status, body = await kit.rest("DELETE", base)
    assert status == 404 and body["code"] == 10007


async def test_bans_purge_and_pagination(kit: Kit) -> None:
    guild, owner, _, plain = people(kit)
    ch = general(guild)
    banned_session = await kit.listen(GUILDS | GUILD_MODERATION | GUILD_MESSAGES)
    no_intent = await kit.listen(GUILDS | GUILD_MESSAGES)
    recent = await kit.sb.send_message(ch, plain[0], "buy now")
    earlier = await kit.sb.send_message(ch, plain[0], "hello", age=2 * 3600)
    path = f"guilds/{guild.id}/bans/{plain[0]}"
    status, body = await kit.rest("PUT", path, {"delete_message_seconds": 604801})
    assert status == 400 and "delete_message_seconds" in body["errors"]
    status, _ = await kit.rest(
        "PUT", path, {"delete_message_seconds": 3600}, headers={"X-Audit-Log-Reason": "spam"}
    )
    assert status == 204 and plain[0] not in guild.members
    event = await banned_session.next("GUILD_BAN_ADD")
    assert event["user"]["id"] == str(plain[0])
    deleted = await banned_session.next("MESSAGE_DELETE")
    assert deleted["id"] == recent["id"]
    assert int(earlier["id"]) in kit.sb.rest.messages[ch]  # older than the hour: kept
    status, ban = await kit.rest("GET", path)
    assert status == 200 and ban["reason"] == "spam"
    assert conforms(OPENAPI, "GuildBanResponse", ban) == []
    # A session without GUILD_MODERATION hears of no ban.
    assert "GUILD_BAN_ADD" not in await no_intent.before("MESSAGE_DELETE")
    for user in plain[1:4]:
        assert (await kit.rest("PUT", f"guilds/{guild.id}/bans/{user}"))[0] == 204
    ids = sorted([plain[0], *plain[1:4]])

    async def page(**query: Any) -> list[int]:
        status, body = await kit.rest(
            "GET", f"guilds/{guild.id}/bans", params={k: str(v) for k, v in query.items()}
        )
        assert status == 200, body
        return [int(b["user"]["id"]) for b in body]

    assert await page() == ids
    assert await page(limit=2) == ids[:2]
    assert await page(after=ids[1], limit=1) == [ids[2]]
    assert await page(before=ids[3], limit=2) == ids[1:3]
    assert await page(before=ids[1], after=ids[0]) == [ids[0]]  # before wins
    for query in ({"limit": "1001"}, {"limit": "0"}, {"after": "x"}):
        status, body = await kit.rest("GET", f"guilds/{guild.id}/bans", params=query)
        assert status == 400 and body["code"] == 50035, (query, body)
    status, _ = await kit.rest("DELETE", path, headers={"X-Audit-Log-Reason": "appeal"})
    assert status == 204
    assert (await banned_session.next("GUILD_BAN_REMOVE"))["user"]["id"] == str(plain[0])
    status, body = await kit.rest("GET", path)
    assert status == 404 and body["code"] == 10026
    assert [e["reason"] for e in await audit(kit, guild, action_type=23)] == ["appeal"]
    assert len(await audit(kit, guild, action_type=22)) == 4
    assert len(await audit(kit, guild, action_type=22, limit=2)) == 2
    status, body = await kit.rest("PUT", f"guilds/{guild.id}/bans/{owner}")
    assert status == 403 and body["code"] == 50013


async def test_overwrites_slowmode_and_closed_dms(kit: Kit) -> None:
    guild, _, _, plain = people(kit)
    ch = general(guild)
    listener = await kit.listen(GUILDS)
    path = f"channels/{ch}/permissions/{guild.id}"
    status, body = await kit.rest("PUT", path, {"deny": str(SEND_MESSAGES)})
    assert status == 400 and "type" in body["errors"]
    status, _ = await kit.rest("PUT", path, {"type": 0, "deny": str(SEND_MESSAGES)})
    assert status == 204
    channel = await listener.next("CHANNEL_UPDATE")
    assert {"id": str(guild.id), "type": 0, "allow": "0", "deny": str(SEND_MESSAGES)} in channel[
        "permission_overwrites"
    ]
    say = {"channel_id": str(ch), "author_id": str(plain[0]), "content": "hi"}
    assert (await kit.ctl("POST", "/_sandbox/messages", say))[0] == 403
    assert (await kit.rest("DELETE", path))[0] == 204
    assert (await kit.ctl("POST", "/_sandbox/messages", say))[0] == 200
    status, body = await kit.rest("DELETE", path)
    assert status == 404 and body["code"] == 10009
    # A bot can't grant what it doesn't have (Administrator).
    status, body = await kit.rest("PUT", path, {"type": 0, "allow": str(1 << 3)})
    assert status == 403 and body["code"] == 50013
    assert [e["action_type"] for e in await audit(kit, guild)] == [15, 13]
    # Slowmode: 0 to 21600 seconds.
    status, body = await kit.rest("PATCH", f"channels/{ch}", {"rate_limit_per_user": 21601})
    assert status == 400 and "rate_limit_per_user" in body["errors"]
    status, body = await kit.rest("PATCH", f"channels/{ch}", {"rate_limit_per_user": 30})
    assert status == 200 and body["rate_limit_per_user"] == 30
    assert conforms(OPENAPI, "GuildChannelResponse", body) == []
    # A member who closed their DMs: 50007.
    status, dm = await kit.rest("POST", "users/@me/channels", {"recipient_id": str(plain[0])})
    assert status == 200
    assert (await kit.rest("POST", f"channels/{dm['id']}/messages", {"content": "hi"}))[0] == 200
    status, _ = await kit.ctl(
        "PATCH", "/_sandbox/users", {"user_id": str(plain[0]), "dms_closed": True}
    )
    assert status == 200
    status, body = await kit.rest("POST", f"channels/{dm['id']}/messages", {"content": "hi"})
    assert status == 403 and body["code"] == 50007


async def test_audit_log_filters_and_permission(kit: Kit) -> None:
    guild, _, _, plain = people(kit)
    for user in plain[:3]:
        await kit.rest("PUT", f"guilds/{guild.id}/bans/{user}")
    entries = await audit(kit, guild)
    assert [e["target_id"] for e in entries] == [str(u) for u in reversed(plain[:3])]
    assert [e["target_id"] for e in await audit(kit, guild, before=entries[0]["id"])] == [
        str(plain[1]),
        str(plain[0]),
    ]
    assert await audit(kit, guild, user_id=plain[0]) == []
    for query in ({"limit": "101"}, {"action_type": "x"}, {"user_id": "-1"}):
        status, body = await kit.rest("GET", f"guilds/{guild.id}/audit-logs", params=query)
        assert status == 400 and body["code"] == 50035
    bot_role = next(r for r in guild.roles.values() if r.managed)
    bot_role.permissions &= ~(1 << 7)
    status, body = await kit.rest("GET", f"guilds/{guild.id}/audit-logs")
    assert status == 403 and body["code"] == 50013


@SPEC
async def test_guild_with_and_without_counts(kit: Kit) -> None:
    guild = guild_of(kit)
    status, plain = await kit.rest("GET", f"guilds/{guild.id}")
    assert status == 200 and "approximate_member_count" not in plain
    assert conforms(OPENAPI, "GuildResponse", plain) == []
    await kit.sb.event("presence", {"guild_id": str(guild.id), "user_id": str(guild.owner_id)})
    status, counted = await kit.rest("GET", f"guilds/{guild.id}", params={"with_counts": "true"})
    assert counted["approximate_member_count"] == len(guild.members)
    assert counted["approximate_presence_count"] == 2  # the owner, and the bot
    assert conforms(OPENAPI, "GuildWithCountsResponse", counted) == []
    status, body = await kit.rest("GET", f"guilds/{guild.id}", params={"with_counts": "maybe"})
    assert status == 400 and body["code"] == 50035
    assert time.time() > 0


async def test_slowmode_holds_members_back_not_moderators(kit: Kit) -> None:
    guild, _, moderator, plain = people(kit)
    ch = general(guild)
    status, _ = await kit.rest("PATCH", f"channels/{ch}", {"rate_limit_per_user": 600})
    assert status == 200
    say = {"channel_id": str(ch), "author_id": str(plain[0]), "content": "first"}
    assert (await kit.ctl("POST", "/_sandbox/messages", say))[0] == 200
    status, body = await kit.ctl("POST", "/_sandbox/messages", {**say, "content": "second"})
    assert status == 429 and body["code"] == 20016
    # Another member, a moderator (Manage Messages) and the bot are not held back.
    assert (await kit.ctl("POST", "/_sandbox/messages", {**say, "author_id": str(plain[1])}))[
        0
    ] == 200
    for _ in range(2):
        mod_say = {**say, "author_id": str(moderator)}
        assert (await kit.ctl("POST", "/_sandbox/messages", mod_say))[0] == 200
        assert (await kit.rest("POST", f"channels/{ch}/messages", {"content": "bot"}))[0] == 200
    # Slowmode off: the member may post again.
    await kit.rest("PATCH", f"channels/{ch}", {"rate_limit_per_user": 0})
    assert (await kit.ctl("POST", "/_sandbox/messages", say))[0] == 200


async def test_history_pages_as_discord_does(kit: Kit) -> None:
    guild, _, _, plain = people(kit)
    ch = general(guild)
    ids = [int((await kit.sb.send_message(ch, plain[0], f"m{i}"))["id"]) for i in range(10)]

    async def page(**query: Any) -> list[int]:
        status, body = await kit.rest(
            "GET", f"channels/{ch}/messages", params={k: str(v) for k, v in query.items()}
        )
        assert status == 200, body
        assert all(conforms(OPENAPI, "MessageResponse", m) == [] for m in body[:1])
        return [int(m["id"]) for m in body]

    newest_first = list(reversed(ids))
    assert await page() == newest_first
    assert await page(limit=3) == newest_first[:3]
    assert await page(before=ids[5], limit=2) == [ids[4], ids[3]]
    assert await page(after=ids[5], limit=2) == [ids[7], ids[6]]
    assert await page(around=ids[5], limit=4) == [ids[6], ids[5], ids[4], ids[3]]
    assert await page(around=ids[5], limit=1) == [ids[5]]
    for query in ({"limit": "101"}, {"before": "x"}, {"around": "-1"}):
        status, body = await kit.rest("GET", f"channels/{ch}/messages", params=query)
        assert status == 400 and body["code"] == 50035, (query, body)


async def test_listing_members(kit: Kit) -> None:
    guild = guild_of(kit)
    everyone = sorted(guild.members)
    status, first = await kit.rest("GET", f"guilds/{guild.id}/members")
    assert status == 200 and [m["user"]["id"] for m in first] == [str(everyone[0])]
    params = {"limit": "3", "after": str(everyone[0])}
    status, page = await kit.rest("GET", f"guilds/{guild.id}/members", params=params)
    assert [int(m["user"]["id"]) for m in page] == everyone[1:4]
    assert all(conforms(OPENAPI, "GuildMemberResponse", m) == [] for m in page)
    status, body = await kit.rest("GET", f"guilds/{guild.id}/members", params={"limit": "1001"})
    assert status == 400 and body["code"] == 50035
    kit.sb.config.allowed_privileged = 0
    status, body = await kit.rest("GET", f"guilds/{guild.id}/members")
    assert status == 403 and body["code"] == 50001


async def test_audit_log_entries_are_dispatched(kit: Kit) -> None:
    guild, _, _, plain = people(kit)
    with_intent = await kit.listen(GUILDS | GUILD_MODERATION)
    headers = {"X-Audit-Log-Reason": "bye"}
    assert (await kit.rest("DELETE", f"guilds/{guild.id}/members/{plain[0]}", headers=headers))[
        0
    ] == 204
    entry = await with_intent.next("GUILD_AUDIT_LOG_ENTRY_CREATE")
    assert entry["action_type"] == 20 and entry["target_id"] == str(plain[0])
    assert entry["guild_id"] == str(guild.id) and entry["reason"] == "bye"
    # Without View Audit Log, none (the entry is still kept).
    bot_role = next(r for r in guild.roles.values() if r.managed)
    bot_role.permissions &= ~(1 << 7)
    await kit.rest("DELETE", f"guilds/{guild.id}/members/{plain[1]}")
    await kit.rest("PATCH", f"channels/{general(guild)}", {"topic": "later"})
    assert "GUILD_AUDIT_LOG_ENTRY_CREATE" not in await with_intent.before("CHANNEL_UPDATE")
    assert len(kit.sb.rest.state.audit_logs[guild.id]) == 3  # two kicks, the topic
