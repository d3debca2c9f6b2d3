"""The control API's side of moderation: arranging roles, positions, a member's (and the
bot's) roles, the owner and closed DMs; joins (one, a new account, a raid), leaves, and kicks,
bans and unbans done "in Discord's own UI" by a moderator, with their gateway events and
audit-log entries; every wrong input a 400 naming the field."""

from __future__ import annotations

import random
from typing import Any

import pytest
from moderation_kit import GUILD_MEMBERS, GUILD_MODERATION, GUILDS, Kit, kit

pytestmark = pytest.mark.timeout(60)
__all__ = ["kit"]


def ids(kit: Kit) -> dict[str, Any]:
    guild = next(iter(kit.sb.world.guilds.values()))
    mod_role = next(r.id for r in guild.roles.values() if r.name == "Moderators")
    moderator = next(u for u, m in guild.members.items() if mod_role in m.roles)
    plain = [
        u
        for u, m in guild.members.items()
        if not m.roles and u not in (guild.owner_id, kit.sb.world.bot.id)
    ]
    return {
        "guild": guild,
        "g": str(guild.id),
        "owner": str(guild.owner_id),
        "moderator": str(moderator),
        "plain": [str(u) for u in plain],
        "mod_role": str(mod_role),
    }


async def test_kick_ban_unban_from_discords_ui(kit: Kit) -> None:
    w = ids(kit)
    listener = await kit.listen(GUILDS | GUILD_MEMBERS | GUILD_MODERATION)
    kick = {"kind": "kick", "guild_id": w["g"], "user_id": w["plain"][0]}
    status, entry = await kit.ctl(
        "POST", "/_sandbox/events", {**kick, "moderator_id": w["moderator"], "reason": "rude"}
    )
    assert status == 200 and entry["action_type"] == 20 and entry["user_id"] == w["moderator"]
    assert (await listener.next("GUILD_MEMBER_REMOVE"))["user"]["id"] == w["plain"][0]
    # The moderator's role has no Ban Members: refused as Discord's UI would.
    ban = {"kind": "ban", "guild_id": w["g"], "user_id": w["plain"][1]}
    status, body = await kit.ctl(
        "POST", "/_sandbox/events", {**ban, "moderator_id": w["moderator"]}
    )
    assert status == 403 and body["code"] == 50013
    status, entry = await kit.ctl(
        "POST", "/_sandbox/events", {**ban, "moderator_id": w["owner"], "reason": "raid"}
    )
    assert status == 200 and entry["action_type"] == 22 and entry["reason"] == "raid"
    assert (await listener.next("GUILD_BAN_ADD"))["user"]["id"] == w["plain"][1]
    # A banned user can't join again.
    join = {"kind": "member_add", "guild_id": w["g"], "user_id": w["plain"][1]}
    assert (await kit.ctl("POST", "/_sandbox/events", join))[1]["code"] == 40007
    status, entry = await kit.ctl(
        "POST",
        "/_sandbox/events",
        {"kind": "unban", "guild_id": w["g"], "user_id": w["plain"][1], "moderator_id": w["owner"]},
    )
    assert status == 200 and entry["action_type"] == 23
    assert (await listener.next("GUILD_BAN_REMOVE"))["user"]["id"] == w["plain"][1]
    assert (await kit.ctl("POST", "/_sandbox/events", join))[0] == 200
    # The bot reads the same entries in the audit log, the moderator as who acted.
    status, log = await kit.rest(
        "GET", f"guilds/{w['g']}/audit-logs", params={"user_id": w["moderator"]}
    )
    assert [e["action_type"] for e in log["audit_log_entries"]] == [20]
    assert w["moderator"] in {u["id"] for u in log["users"]}
    # Nobody kicks the owner, nor someone at or above their own highest role.
    for target, who in [(w["owner"], w["moderator"]), (w["moderator"], w["moderator"])]:
        status, body = await kit.ctl(
            "POST",
            "/_sandbox/events",
            {"kind": "kick", "guild_id": w["g"], "user_id": target, "moderator_id": who},
        )
        assert status == 403 and body["code"] == 50013


async def test_joins_new_accounts_roles_and_a_raid(kit: Kit) -> None:
    w = ids(kit)
    guild = w["guild"]
    listener = await kit.listen(GUILDS | GUILD_MEMBERS)
    status, joined = await kit.ctl(
        "POST",
        "/_sandbox/events",
        {"kind": "member_add", "guild_id": w["g"], "username": "newbie", "roles": [w["mod_role"]]},
    )
    assert status == 200 and joined["user"]["username"] == "newbie"
    assert joined["roles"] == [w["mod_role"]]
    event = await listener.next("GUILD_MEMBER_ADD")
    assert event["user"]["id"] == joined["user"]["id"] and event["guild_id"] == w["g"]
    before = len(guild.members)
    status, raid = await kit.ctl(
        "POST", "/_sandbox/events", {"kind": "raid", "guild_id": w["g"], "count": 25}
    )
    assert status == 200 and len(set(raid["user_ids"])) == 25
    assert len(guild.members) == before + 25
    arrived = [(await listener.next("GUILD_MEMBER_ADD"))["user"]["id"] for _ in range(25)]
    assert arrived == raid["user_ids"]
    status, _ = await kit.ctl(
        "POST",
        "/_sandbox/events",
        {"kind": "member_remove", "guild_id": w["g"], "user_id": arrived[0]},
    )
    assert status == 200 and int(arrived[0]) not in guild.members
    assert (await listener.next("GUILD_MEMBER_REMOVE"))["user"]["id"] == arrived[0]
    status, counted = await kit.rest("GET", f"guilds/{w['g']}", params={"with_counts": "true"})
    assert counted["approximate_member_count"] == len(guild.members)


async def test_arranging_roles_members_owner_and_dms(kit: Kit) -> None:
    w = ids(kit)
    guild = w["guild"]
    listener = await kit.listen(GUILDS | GUILD_MEMBERS)
    status, role = await kit.ctl(
        "POST",
        "/_sandbox/roles",
        {"guild_id": w["g"], "name": "Veteran", "permissions": str(1 << 1), "position": 1},
    )
    assert status == 200 and role["permissions"] == "2" and role["position"] == 1
    assert (await listener.next("GUILD_ROLE_CREATE"))["role"]["id"] == role["id"]
    positions = sorted(r.position for r in guild.roles.values())
    assert positions == list(range(len(guild.roles)))  # still 0..n-1, no two alike
    status, member = await kit.ctl(
        "PATCH",
        "/_sandbox/members",
        {"guild_id": w["g"], "user_id": w["plain"][0], "roles": [role["id"]], "nick": "Vet"},
    )
    assert status == 200 and member["roles"] == [role["id"]] and member["nick"] == "Vet"
    assert (await listener.next("GUILD_MEMBER_UPDATE"))["nick"] == "Vet"
    status, _ = await kit.ctl(
        "PATCH", "/_sandbox/guilds", {"guild_id": w["g"], "owner_id": w["plain"][0]}
    )
    assert status == 200 and guild.owner_id == int(w["plain"][0])
    assert (await listener.next("GUILD_UPDATE"))["owner_id"] == w["plain"][0]
    status, user = await kit.ctl(
        "PATCH", "/_sandbox/users", {"user_id": w["plain"][1], "dms_closed": True}
    )
    assert status == 200 and user["dms_closed"] is True
    assert int(w["plain"][1]) in kit.sb.world.closed_dms


BAD = [
    ("POST", "/_sandbox/roles", {"name": "x"}, "guild_id"),
    ("POST", "/_sandbox/roles", {"guild_id": "{g}"}, "name"),
    ("POST", "/_sandbox/roles", {"guild_id": "{g}", "name": "x", "position": 0}, "position"),
    (
        "POST",
        "/_sandbox/roles",
        {"guild_id": "{g}", "name": "x", "permissions": "a"},
        "permissions",
    ),
    ("POST", "/_sandbox/roles", {"guild_id": "{g}", "name": ""}, "name"),
    ("PATCH", "/_sandbox/roles", {"guild_id": "{g}", "role_id": "1"}, "role_id"),
    ("PATCH", "/_sandbox/roles", {"guild_id": "{g}", "role_id": "{g}", "position": 1}, "position"),
    ("PATCH", "/_sandbox/members", {"guild_id": "{g}", "user_id": "1"}, "user_id"),
    ("PATCH", "/_sandbox/members", {"guild_id": "{g}", "user_id": "{p}", "roles": "x"}, "roles"),
    (
        "PATCH",
        "/_sandbox/members",
        {"guild_id": "{g}", "user_id": "{p}", "roles": ["1"]},
        "roles.0",
    ),
    ("PATCH", "/_sandbox/members", {"guild_id": "{g}", "user_id": "{p}", "nick": 5}, "nick"),
    ("PATCH", "/_sandbox/guilds", {"guild_id": "{g}", "owner_id": "1"}, "owner_id"),
    ("PATCH", "/_sandbox/guilds", {"guild_id": "1", "owner_id": "{p}"}, "guild_id"),
    ("PATCH", "/_sandbox/users", {"user_id": "1", "dms_closed": True}, "user_id"),
    ("PATCH", "/_sandbox/users", {"user_id": "{p}", "dms_closed": "yes"}, "dms_closed"),
    ("POST", "/_sandbox/events", {"kind": "raid", "guild_id": "{g}", "count": 0}, "count"),
    ("POST", "/_sandbox/events", {"kind": "member_add", "guild_id": "{g}"}, "user_id"),
    (
        "POST",
        "/_sandbox/events",
        {"kind": "member_add", "guild_id": "{g}", "username": "x"},
        "username",
    ),
    (
        "POST",
        "/_sandbox/events",
        {"kind": "member_add", "guild_id": "{g}", "username": "ab", "roles": ["{g}"]},
        "roles.0",
    ),
    (
        "POST",
        "/_sandbox/events",
        {"kind": "kick", "guild_id": "{g}", "user_id": "{p}"},
        "moderator_id",
    ),
    (
        "POST",
        "/_sandbox/events",
        {"kind": "ban", "guild_id": "{g}", "user_id": "1", "moderator_id": "{o}"},
        "user_id",
    ),
    (
        "POST",
        "/_sandbox/events",
        {
            "kind": "ban",
            "guild_id": "{g}",
            "user_id": "{p}",
            "moderator_id": "{o}",
            "delete_message_seconds": -1,
        },
        "delete_message_seconds",
    ),
    (
        "POST",
        "/_sandbox/events",
        {"kind": "unban", "guild_id": "{g}", "user_id": "{p}", "moderator_id": "{o}"},
        "user_id",
    ),
    (
        "POST",
        "/_sandbox/messages",
        {"channel_id": "{c}", "author_id": "{p}", "content": "x", "age": -1},
        "age",
    ),
]


async def test_every_wrong_input_is_a_400_naming_the_field(kit: Kit) -> None:
    w = ids(kit)
    general = next(c.id for c in w["guild"].channels.values() if c.name == "general")
    fill = {"{g}": w["g"], "{p}": w["plain"][0], "{o}": w["owner"], "{c}": str(general)}

    def filled(value: Any) -> Any:
        if isinstance(value, str):
            return fill.get(value, value)
        if isinstance(value, list):
            return [filled(v) for v in value]
        return {k: filled(v) for k, v in value.items()} if isinstance(value, dict) else value

    for method, path, body, field in BAD:
        status, answer = await kit.ctl(method, path, filled(body))
        assert status == 400, (path, body, answer)
        assert answer["message"].startswith(f"{field}: "), (path, body, answer)
    for path in ("/_sandbox/roles", "/_sandbox/members", "/_sandbox/guilds", "/_sandbox/users"):
        async with kit.control.patch(path, data=b"{nope") as resp:
            assert resp.status == 400 and (await resp.json())["code"] == 50109
        async with kit.control.patch(path, data=b"[]") as resp:
            assert resp.status == 400 and (await resp.json())["message"].startswith("body")


async def test_the_traffic_generator_raids(kit: Kit) -> None:
    from sandbox.traffic import generate, raid

    w = ids(kit)
    listener = await kit.listen(GUILDS | GUILD_MEMBERS)
    without = await kit.listen(GUILDS)  # no GUILD_MEMBERS intent: no member events
    paced = await raid(kit.sb, 5, guild_id=w["guild"].id, rate=500.0)
    report = await generate(kit.sb, rate=50, duration=0.2, command_share=0.0, raid_joins=12)
    assert report.sent == 10 and len(report.raiders) == 12
    joined = [int((await listener.next("GUILD_MEMBER_ADD"))["user"]["id"]) for _ in range(17)]
    assert joined == paced + report.raiders
    assert set(joined) <= set(w["guild"].members)
    general = next(c.id for c in w["guild"].channels.values() if c.name == "general")
    await kit.rest("PATCH", f"channels/{general}", {"topic": "after the raid"})
    # Everything dispatched before the channel's update has arrived by then.
    assert "GUILD_MEMBER_ADD" not in await without.before("CHANNEL_UPDATE")
    with pytest.raises(ValueError, match="joins"):
        await raid(kit.sb, 0)


def junk(rng: random.Random, depth: int = 2) -> Any:
    pick = rng.randrange(9 if depth else 7)
    simple: list[Any] = [None, True, -1, 2**70, 1.5, "", "x" * 300]
    if pick < 7:
        return simple[pick]
    if pick == 7:
        return [junk(rng, depth - 1) for _ in range(rng.randrange(3))]
    return {rng.choice(["id", "name", "x"]): junk(rng, depth - 1)}


async def test_random_junk_in_the_new_control_routes_is_never_a_500(kit: Kit) -> None:
    """Seeded junk in one or two fields of valid requests: a 200, a 400 naming a field of
    the request, or Discord's own refusal (403, 429), never anything else."""
    w = ids(kit)
    rng = random.Random(29)
    valid = [
        ("POST", "/_sandbox/roles", {"guild_id": w["g"], "name": "R", "position": 1}),
        ("PATCH", "/_sandbox/roles", {"guild_id": w["g"], "role_id": w["mod_role"], "name": "M"}),
        ("PATCH", "/_sandbox/members", {"guild_id": w["g"], "user_id": w["plain"][0], "nick": "n"}),
        ("PATCH", "/_sandbox/guilds", {"guild_id": w["g"], "owner_id": w["owner"]}),
        ("PATCH", "/_sandbox/users", {"user_id": w["plain"][0], "dms_closed": False}),
        ("POST", "/_sandbox/events", {"kind": "raid", "guild_id": w["g"], "count": 2}),
        ("POST", "/_sandbox/events", {"kind": "member_add", "guild_id": w["g"], "username": "ab"}),
        (
            "POST",
            "/_sandbox/events",
            {
                "kind": "kick",
                "guild_id": w["g"],
                "user_id": w["plain"][1],
                "moderator_id": w["owner"],
            },
        ),
        (
            "POST",
            "/_sandbox/events",
            {
                "kind": "ban",
                "guild_id": w["g"],
                "user_id": w["plain"][2],
                "moderator_id": w["owner"],
            },
        ),
    ]
    for method, path, body in valid:
        names = [*body, "roles", "permissions", "reason", "delete_message_seconds", "extra"]
        for _ in range(60):
            sent = dict(body)
            for name in rng.sample(names, rng.randint(1, 2)):
                sent[name] = junk(rng)
            status, answer = await kit.ctl(method, path, sent)
            assert status in (200, 400, 403, 429), (path, sent, status, answer)
            if status == 400:
                field = answer["message"].split(":")[0].split(".")[0]
                assert field in (*names, "body", "user_id"), (path, sent, answer)
