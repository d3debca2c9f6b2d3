"""Moderation end to end: the real bot (one worker, two shards) against the sandbox, acting on
the sandbox's members through Discord's REST routes, checked both in what the bot answers and
in what Discord (the sandbox) then holds, and in the cases and audit rows in PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import pytest
from e2e_harness import Driver, SandboxProc, start_cluster, text_of, world_of

from bot.db.pool import connect
from cluster.workers import Supervisor

# What moderation needs (the admin cog has `settings` and the log channel), and no more.
EXTENSIONS = ("bot.cogs.general", "bot.cogs.admin", "bot.cogs.moderation")

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]


@dataclass
class Server:
    guild_id: int
    general: int
    mod_log: int
    owner_id: int  # an admin
    mod_id: int  # the one member with the Moderators role
    mod_role: int
    members: list[int]  # plain members, no roles


@dataclass
class Env:
    supervisor: Supervisor
    dsn: str
    servers: list[Server]
    api: str
    token: str


@pytest.fixture(scope="module")
async def env(sandbox: SandboxProc, bot_db: str, redis_url: str) -> AsyncIterator[Env]:
    world = await world_of(sandbox)
    servers = []
    for g in world["guilds"]:
        channels = {c["name"]: int(c["id"]) for c in g["channels"]}
        mod_role = next(int(r["id"]) for r in g["roles"] if r["name"] == "Moderators")
        owner = int(g["owner_id"])
        mods = [int(m["id"]) for m in g["members"] if str(mod_role) in m["roles"]]
        plain = [int(m["id"]) for m in g["members"] if not m["roles"] and int(m["id"]) != owner]
        if len(plain) >= 8 and mods:
            servers.append(
                Server(
                    int(g["id"]),
                    channels["general"],
                    channels["mod-log"],
                    owner,
                    mods[0],
                    mod_role,
                    plain,
                )
            )
    assert len(servers) >= 2, "the test world needs two guilds with a few plain members"
    sup = await start_cluster(
        sandbox,
        bot_db,
        redis_url,
        shards=2,
        clusters=1,
        owner_id=123456789012345678,
        prefix=f"e2e:{uuid.uuid4().hex[:8]}:",
        adjust=lambda c: replace(c, extensions=EXTENSIONS),
    )
    try:
        yield Env(sup, bot_db, servers, sandbox.info["api_url"], sandbox.info["token"])
    finally:
        await sup.stop()


async def discord(env: Env, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """Ask Discord (the sandbox's REST API) as the bot: what it holds now."""
    headers = {"Authorization": f"Bot {env.token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, env.api + path, json=body, headers=headers) as resp,
    ):
        data = await resp.json(content_type=None) if resp.status != 204 else None
        return resp.status, data


async def ask(driver: Driver, channel: int, author: int, text: str) -> str:
    """The bot's answer: the first thing it says (deletions and reactions are not answers)."""
    await driver.drain(channel)
    await driver.say(channel, author, text)
    for _ in range(20):
        for entry in await driver.replies(channel, wait=15):
            if entry.get("kind") not in ("delete", "reaction"):
                return text_of(entry)
    raise AssertionError(f"no answer to {text!r}")


async def cases_of(env: Env, guild_id: int, target: int) -> list[asyncpg.Record]:
    conn = await connect(env.dsn)
    try:
        return await conn.fetch(
            """
            SELECT c.number, c.action, c.moderator_id, c.reason, c.cites, c.expires_at,
                   a.action AS audit_action, a.after
            FROM mod_cases c JOIN audit_log a ON a.id = c.audit_id
            WHERE c.guild_id = $1 AND c.target_id = $2 ORDER BY c.number
            """,
            guild_id,
            target,
        )
    finally:
        await conn.close()


async def test_plain_member_is_refused_by_level(env: Env, driver: Driver) -> None:
    s = env.servers[0]
    for command in (f"!warn <@{s.members[1]}> hi", f"!ban <@{s.members[1]}>", "!cases"):
        assert await ask(driver, s.general, s.members[0], command) == (
            "This command is for moderators."
        )
    assert await ask(driver, s.general, s.mod_id, "!settings warnexpiry 30d") == (
        "This command is for admins."
    )
    assert await cases_of(env, s.guild_id, s.members[1]) == []


async def test_hierarchy_refusals_name_the_rule(env: Env, driver: Driver) -> None:
    s = env.servers[0]
    text = await ask(driver, s.general, s.mod_id, f"!kick <@{s.owner_id}>")
    assert "server owner can't be kicked" in text
    text = await ask(driver, s.general, s.mod_id, f"!ban <@{s.mod_id}>")
    assert text == "You can't ban yourself."
    status, _ = await discord(env, "GET", f"/guilds/{s.guild_id}/members/{s.owner_id}")
    assert status == 200  # still there


async def test_warn_kick_and_the_mod_log(env: Env, driver: Driver) -> None:
    s = env.servers[0]
    target = s.members[2]
    await ask(driver, s.general, s.owner_id, f"!settings logchannel <#{s.mod_log}>")
    await driver.drain(s.mod_log)
    text = await ask(driver, s.general, s.mod_id, f"!warn <@{target}> spamming links")
    assert text.startswith("Case ") and "warned" in text and "1 active warning" in text
    posted = await driver.replies(s.mod_log, wait=10)
    assert posted and "Warn" in text_of(posted[0]) and "spamming links" in text_of(posted[0])
    text = await ask(driver, s.general, s.mod_id, f"!kick <@{target}> ignoring the warning")
    assert "kicked" in text
    status, _ = await discord(env, "GET", f"/guilds/{s.guild_id}/members/{target}")
    assert status == 404
    rows = await cases_of(env, s.guild_id, target)
    assert [r["action"] for r in rows] == ["warn", "kick"]
    assert [r["audit_action"] for r in rows] == ["moderation.warn", "moderation.kick"]
    assert rows[1]["after"]["case"] == rows[1]["number"]
    assert rows[0]["moderator_id"] == s.mod_id


async def test_ban_unban_and_slash(env: Env, driver: Driver) -> None:
    s = env.servers[0]
    target = s.members[3]
    text = await ask(driver, s.general, s.mod_id, f"!ban <@{target}> raiding --days 1")
    assert "banned" in text
    status, ban = await discord(env, "GET", f"/guilds/{s.guild_id}/bans/{target}")
    assert status == 200 and "raiding" in (ban["reason"] or "")
    await driver.drain(s.general)
    await driver.slash(
        s.general,
        s.mod_id,
        "unban",
        [
            {"name": "user", "type": 6, "value": str(target)},
            {"name": "reason", "type": 3, "value": "appeal"},
        ],
    )
    assert "unbanned" in await driver.reply_text(s.general)
    status, _ = await discord(env, "GET", f"/guilds/{s.guild_id}/bans/{target}")
    assert status == 404
    text = await ask(driver, s.general, s.mod_id, f"!unban {target}")
    assert text == "Can't unban them: they are not banned here."
    rows = await cases_of(env, s.guild_id, target)
    assert [r["action"] for r in rows] == ["ban", "unban"]
    assert rows[0]["reason"] == "raiding" and rows[1]["reason"] == "appeal"


async def test_timeout_and_untimeout(env: Env, driver: Driver) -> None:
    s = env.servers[1]
    target = s.members[0]
    text = await ask(driver, s.general, s.mod_id, f"!timeout <@{target}> 29d too long")
    assert "at most 4w" in text
    text = await ask(driver, s.general, s.mod_id, f"!timeout <@{target}> 1h cool down")
    assert "timed out" in text and "1h" in text
    _, member = await discord(env, "GET", f"/guilds/{s.guild_id}/members/{target}")
    until = datetime.fromisoformat(member["communication_disabled_until"])
    assert until > datetime.now(UTC)
    text = await ask(driver, s.general, s.mod_id, f"!untimeout <@{target}>")
    assert "timeout is over" in text
    _, member = await discord(env, "GET", f"/guilds/{s.guild_id}/members/{target}")
    assert member["communication_disabled_until"] is None
    assert [r["action"] for r in await cases_of(env, s.guild_id, target)] == [
        "timeout",
        "untimeout",
    ]


async def test_three_warnings_reach_a_timeout_threshold(env: Env, driver: Driver) -> None:
    s = env.servers[1]
    target = s.members[1]
    text = await ask(driver, s.general, s.owner_id, "!settings warnthreshold 3 timeout 1h")
    assert "3 warnings → timeout 1h" in text
    for i in range(2):
        text = await ask(driver, s.general, s.mod_id, f"!warn <@{target}> number {i + 1}")
        assert "Threshold" not in text
    text = await ask(driver, s.general, s.mod_id, f"!warn <@{target}> number 3")
    assert "Threshold reached (3 warnings → timeout 1h)" in text
    rows = await cases_of(env, s.guild_id, target)
    assert [r["action"] for r in rows] == ["warn", "warn", "warn", "timeout"]
    warns = [r["number"] for r in rows[:3]]
    assert list(rows[3]["cites"]) == warns
    assert rows[3]["after"]["cites"] == warns
    assert rows[3]["moderator_id"] != s.mod_id  # the bot applied it
    _, member = await discord(env, "GET", f"/guilds/{s.guild_id}/members/{target}")
    assert member["communication_disabled_until"] is not None


async def test_case_reason_cases_and_notes(env: Env, driver: Driver) -> None:
    s = env.servers[1]
    target = s.members[2]
    text = await ask(driver, s.general, s.mod_id, f"!warn <@{target}> first")
    number = int(text.split()[1].rstrip(":"))
    text = await ask(driver, s.general, s.mod_id, f"!case {number} reason was rude in #dice")
    assert "reason is now: was rude in #dice" in text
    text = await ask(driver, s.general, s.mod_id, f"!case {number}")
    assert f"Case {number}" in text and "was rude in #dice" in text
    text = await ask(driver, s.general, s.mod_id, f"!cases <@{target}>")
    assert f"**{number}**" in text and "warn" in text
    text = await ask(driver, s.general, s.mod_id, "!case 99999")
    assert "There is no case 99999" in text
    await ask(driver, s.general, s.mod_id, f"!notes <@{target}> seems to be a second account")
    text = await ask(driver, s.general, s.mod_id, f"!notes <@{target}>")
    assert "seems to be a second account" in text


async def test_softban_clears_messages_and_leaves_no_ban(env: Env, driver: Driver) -> None:
    s = env.servers[0]
    target = s.members[4]
    said = await driver.say(s.general, target, "buy cheap gold")
    text = await ask(driver, s.general, s.mod_id, f"!softban <@{target}> spam bot")
    assert "softbanned" in text and "1 day(s) of messages deleted" in text
    status, _ = await discord(env, "GET", f"/channels/{s.general}/messages/{said}")
    assert status == 404  # their message went with the ban
    status, _ = await discord(env, "GET", f"/guilds/{s.guild_id}/bans/{target}")
    assert status == 404  # and the ban was lifted at once
    status, _ = await discord(env, "GET", f"/guilds/{s.guild_id}/members/{target}")
    assert status == 404
    assert [r["action"] for r in await cases_of(env, s.guild_id, target)] == ["softban"]


async def test_warnings_expire(env: Env, driver: Driver) -> None:
    s = env.servers[1]
    target = s.members[3]
    text = await ask(driver, s.general, s.owner_id, "!settings warnexpiry 30d")
    assert text == "Warnings now count for 4w 2d."
    text = await ask(driver, s.general, s.owner_id, "!settings warnexpiry x")
    assert "`x` can't be read as a length of time for the expiry" in text
    await ask(driver, s.general, s.mod_id, f"!warn <@{target}> old one")
    conn = await connect(env.dsn)
    try:
        await conn.execute(
            "UPDATE mod_cases SET created_at = now() - interval '31 days' "
            "WHERE guild_id = $1 AND target_id = $2",
            s.guild_id,
            target,
        )
    finally:
        await conn.close()
    text = await ask(driver, s.general, s.mod_id, f"!warn <@{target}> new one")
    assert "(1 active warning(s))" in text
    await ask(driver, s.general, s.owner_id, "!settings warnexpiry off")
    text = await ask(driver, s.general, s.mod_id, f"!warn <@{target}> third")
    assert "(3 active warning(s))" in text


async def test_slash_ban_with_options_and_a_bad_duration(env: Env, driver: Driver) -> None:
    s = env.servers[1]
    target = s.members[4]
    await driver.drain(s.general)
    await driver.slash(
        s.general,
        s.mod_id,
        "ban",
        [
            {"name": "user", "type": 6, "value": str(target)},
            {"name": "duration", "type": 3, "value": "soon"},
        ],
    )
    assert "`soon` can't be read as a length of time" in await driver.reply_text(s.general)
    await driver.slash(
        s.general,
        s.mod_id,
        "ban",
        [
            {"name": "user", "type": 6, "value": str(target)},
            {"name": "reason", "type": 3, "value": "alt account"},
            {"name": "days", "type": 4, "value": 2},
            {"name": "duration", "type": 3, "value": "2d"},
        ],
    )
    text = await driver.reply_text(s.general)
    assert "banned" in text and "for 2d" in text
    rows = await cases_of(env, s.guild_id, target)
    assert [r["action"] for r in rows] == ["tempban"] and rows[0]["after"]["deleted_days"] == 2


async def test_slash_settings_subcommand_and_case(env: Env, driver: Driver) -> None:
    s = env.servers[1]
    await driver.drain(s.general)
    options = [
        {"name": "count", "type": 4, "value": 9},
        {"name": "action", "type": 3, "value": "kick"},
    ]
    await driver.slash(
        s.general,
        s.owner_id,
        "settings",
        [{"name": "warnthreshold", "type": 1, "options": options}],
    )
    assert "9 warnings → kick" in await driver.reply_text(s.general)
    await driver.slash(
        s.general, s.mod_id, "settings", [{"name": "warnthreshold", "type": 1, "options": options}]
    )
    assert "This command is for admins." in await driver.reply_text(s.general)
    await driver.slash(s.general, s.mod_id, "case", [{"name": "number", "type": 4, "value": 1}])
    assert "Case 1" in await driver.reply_text(s.general)


async def test_help_and_bad_options_show_the_usage(env: Env, driver: Driver) -> None:
    s = env.servers[0]
    text = await ask(driver, s.general, s.mod_id, "!help ban")
    assert "!ban <user> [reason] [--days 0-7] [--duration 3d]" in text
    assert "tempban" in text and "ban @Ann cool off --duration 3d" in text
    text = await ask(driver, s.general, s.mod_id, f"!ban <@{s.members[5]}> spam --days 9")
    assert "days" in text and "!ban <user> [reason] [--days 0-7] [--duration 3d]" in text
    assert await cases_of(env, s.guild_id, s.members[5]) == []
