"""Moderation end to end, the channel tools and the rules around members: purge (with messages
older than 14 days skipped and counted), slowmode, lock/unlock, nick, role add/remove; refusals
by hierarchy where the sandbox arranges the roles (a member above the bot, two moderators of one
rank), Discord's own 50013 in words, and the DM before a kick (sent, or closed: not an error)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import pytest
from e2e_harness import Driver, SandboxProc, arrange, start_cluster, text_of, world_of
from waits import until

from bot.db.pool import connect
from cluster.workers import Supervisor

EXTENSIONS = ("bot.cogs.general", "bot.cogs.admin", "bot.cogs.moderation")
DAY = 86400
SEND_MESSAGES = 1 << 11

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]


@dataclass
class Env:
    supervisor: Supervisor
    dsn: str
    control: str
    api: str
    token: str
    guild: dict[str, Any]
    channels: dict[str, int]
    roles: dict[str, int]
    owner: int
    mod: int
    members: list[int]
    bot_id: int


@pytest.fixture(scope="module")
async def env(sandbox: SandboxProc, bot_db: str, redis_url: str) -> AsyncIterator[Env]:
    world = await world_of(sandbox)
    guild = max(world["guilds"], key=lambda g: len(g["members"]))
    roles = {r["name"]: int(r["id"]) for r in guild["roles"]}
    owner = int(guild["owner_id"])
    mod = next(int(m["id"]) for m in guild["members"] if str(roles["Moderators"]) in m["roles"])
    plain = [int(m["id"]) for m in guild["members"] if not m["roles"] and int(m["id"]) != owner]
    assert len(plain) >= 14
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
        yield Env(
            sup,
            bot_db,
            sandbox.control,
            sandbox.info["api_url"],
            sandbox.info["token"],
            guild,
            {c["name"]: int(c["id"]) for c in guild["channels"]},
            roles,
            owner,
            mod,
            plain,
            int(world["bot"]["id"]),
        )
    finally:
        await sup.stop()


async def discord(env: Env, method: str, path: str, body: Any = None) -> Any:
    headers = {"Authorization": f"Bot {env.token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, env.api + path, json=body, headers=headers) as resp,
    ):
        assert resp.status < 300, await resp.text()
        return await resp.json(content_type=None)


async def ask(driver: Driver, channel: int, author: int, text: str) -> str:
    """The bot's answer: the first thing it says (deletions and reactions are not answers)."""
    await driver.drain(channel)
    await driver.say(channel, author, text)
    for _ in range(20):
        for entry in await driver.replies(channel, wait=15):
            if entry.get("kind") not in ("delete", "reaction"):
                return text_of(entry)
    raise AssertionError(f"no answer to {text!r}")


async def actions(env: Env, target: int) -> list[str]:
    conn = await connect(env.dsn)
    try:
        rows = await conn.fetch(
            "SELECT action FROM mod_cases WHERE guild_id = $1 AND target_id = $2 ORDER BY number",
            int(env.guild["id"]),
            target,
        )
        return [r["action"] for r in rows]
    finally:
        await conn.close()


async def test_purge_skips_and_counts_messages_older_than_14_days(env: Env, driver: Driver) -> None:
    dice = env.channels["dice"]
    author, other = env.members[0], env.members[1]
    old = []
    for i in range(3):  # said 15-17 days ago: in the history, too old to bulk delete
        body = {
            "channel_id": str(dice),
            "author_id": str(author),
            "content": f"old {i}",
            "age": (15 + i) * DAY,
        }
        old.append((await arrange(env.control, "POST", "messages", body))["id"])
    young = [await driver.say(dice, author, f"spam {i}") for i in range(6)]
    keep = await driver.say(dice, other, "a real question")
    text = await ask(driver, dice, env.mod, f"!purge 20 --user <@{author}>")
    assert "deleted 6 message(s)" in text
    assert "Skipped 3 older than 14 days" in text
    left = {m["id"] for m in await discord(env, "GET", f"/channels/{dice}/messages?limit=100")}
    assert not left & set(young)
    assert set(old) <= left and keep in left
    assert await actions(env, dice) == ["purge"]


async def test_purge_filters_and_limits(env: Env, driver: Driver) -> None:
    dice = env.channels["dice"]
    said = [await driver.say(dice, env.members[2], f"free nitro {i}") for i in range(3)]
    plain = await driver.say(dice, env.members[2], "hello")
    text = await ask(driver, dice, env.mod, "!purge 2 --contains FREE NITRO")
    assert "deleted 2 message(s)" in text
    left = {m["id"] for m in await discord(env, "GET", f"/channels/{dice}/messages?limit=100")}
    assert said[0] in left and not {said[1], said[2]} & left and plain in left
    text = await ask(driver, dice, env.mod, "!purge 1001")
    assert "1001" in text or "1000" in text  # the range is named
    assert "deleted" not in text


async def test_slowmode_and_lock(env: Env, driver: Driver) -> None:
    general = env.channels["general"]
    text = await ask(driver, general, env.mod, "!slowmode 10s")
    assert "slowmode in" in text and "10s" in text
    assert (await discord(env, "GET", f"/channels/{general}"))["rate_limit_per_user"] == 10
    text = await ask(driver, general, env.mod, "!slowmode 7h")
    assert "at most 6h" in text
    await ask(driver, general, env.mod, "!slowmode off")
    assert (await discord(env, "GET", f"/channels/{general}"))["rate_limit_per_user"] == 0

    text = await ask(driver, general, env.mod, "!lock raid")
    assert "is locked" in text
    overwrites = (await discord(env, "GET", f"/channels/{general}"))["permission_overwrites"]
    everyone = next(o for o in overwrites if int(o["id"]) == int(env.guild["id"]))
    assert int(everyone["deny"]) & SEND_MESSAGES
    assert "already locked" in await ask(driver, general, env.mod, "!lock")
    text = await ask(driver, general, env.mod, "!unlock")  # the bot still answers there
    assert "is unlocked" in text
    overwrites = (await discord(env, "GET", f"/channels/{general}"))["permission_overwrites"]
    everyone = next(o for o in overwrites if int(o["id"]) == int(env.guild["id"]))
    assert not int(everyone["deny"]) & SEND_MESSAGES
    assert await actions(env, general) == ["slowmode", "slowmode", "lock", "unlock"]


async def test_nick_and_roles(env: Env, driver: Driver) -> None:
    general = env.channels["general"]
    gid = env.guild["id"]
    target = env.members[3]
    text = await ask(driver, general, env.mod, f"!nick <@{target}> Sir Spamalot")
    assert "nickname is now **Sir Spamalot**" in text
    assert (await discord(env, "GET", f"/guilds/{gid}/members/{target}"))["nick"] == "Sir Spamalot"
    players = await arrange(
        env.control, "POST", "roles", {"guild_id": gid, "name": "Players", "position": 1}
    )
    text = await ask(driver, general, env.owner, f"!role add <@{target}> <@&{players['id']}>")
    assert "now has" in text
    member = await discord(env, "GET", f"/guilds/{gid}/members/{target}")
    assert players["id"] in member["roles"]
    text = await ask(driver, general, env.owner, f"!role add <@{target}> <@&{players['id']}>")
    assert "already has" in text
    # The moderator's own highest role (Moderators) is not above a role at its height.
    text = await ask(
        driver, general, env.mod, f"!role add <@{target}> <@&{env.roles['Moderators']}>"
    )
    assert "must be below your highest role" in text
    text = await ask(driver, general, env.owner, f"!role remove <@{target}> <@&{players['id']}>")
    assert "no longer has" in text
    assert await actions(env, target) == ["nick", "role_add", "role_remove"]


async def test_hierarchy_refusals_with_arranged_roles(env: Env, driver: Driver) -> None:
    general = env.channels["general"]
    gid = env.guild["id"]
    peer, veteran = env.members[4], env.members[5]
    # A second moderator, of the same rank as the first.
    await arrange(
        env.control,
        "PATCH",
        "members",
        {"guild_id": gid, "user_id": str(peer), "roles": [str(env.roles["Moderators"])]},
    )
    text = await ask(driver, general, env.mod, f"!kick <@{peer}>")
    assert "Your highest role must be above" in text
    # A member whose role ranks above the bot's: even the owner's command is refused, by the
    # bot's rule.
    top = await arrange(env.control, "POST", "roles", {"guild_id": gid, "name": "Veterans"})
    await arrange(
        env.control,
        "PATCH",
        "members",
        {"guild_id": gid, "user_id": str(veteran), "roles": [top["id"]]},
    )
    text = await ask(driver, general, env.owner, f"!timeout <@{veteran}> 1h")
    assert "My highest role must be above" in text
    assert await actions(env, peer) == [] and await actions(env, veteran) == []


async def test_discord_refusal_50013_is_a_clear_message(env: Env, driver: Driver) -> None:
    general = env.channels["general"]
    gid = env.guild["id"]
    bot_role = env.roles["Guildhouse"]
    role = next(
        r for r in await discord(env, "GET", f"/guilds/{gid}/roles") if int(r["id"]) == bot_role
    )
    without_ban = int(role["permissions"]) & ~(1 << 2)
    await arrange(
        env.control,
        "PATCH",
        "roles",
        {"guild_id": gid, "role_id": str(bot_role), "permissions": str(without_ban)},
    )
    try:
        text = await ask(driver, general, env.owner, f"!ban <@{env.members[6]}> spam")
        assert "Discord refused to ban them" in text and "50013" in text
        assert await actions(env, env.members[6]) == []
    finally:
        await arrange(
            env.control,
            "PATCH",
            "roles",
            {"guild_id": gid, "role_id": str(bot_role), "permissions": role["permissions"]},
        )


async def test_kick_dms_the_reason_first_and_closed_dms_are_no_error(
    env: Env, driver: Driver
) -> None:
    general = env.channels["general"]
    open_dm, closed_dm = env.members[7], env.members[8]
    dm = await discord(env, "POST", "/users/@me/channels", {"recipient_id": str(open_dm)})
    await driver.drain(int(dm["id"]))
    text = await ask(driver, general, env.mod, f"!kick <@{open_dm}> flooding")
    assert "kicked" in text and "told by DM" in text
    told = await driver.replies(int(dm["id"]), wait=5)
    assert told and "kicked from" in text_of(told[0]) and "flooding" in text_of(told[0])
    await arrange(env.control, "PATCH", "users", {"user_id": str(closed_dm), "dms_closed": True})
    text = await ask(driver, general, env.mod, f"!kick <@{closed_dm}> flooding")
    assert "kicked" in text and "told by DM" not in text
    assert await actions(env, closed_dm) == ["kick"]
    # Turned off: no DM at all.
    await ask(driver, general, env.owner, "!settings moddm off")
    quiet = env.members[9]
    text = await ask(driver, general, env.mod, f"!kick <@{quiet}>")
    assert "kicked" in text and "told by DM" not in text


async def message_status(env: Env, channel: int, message_id: str) -> int:
    headers = {"Authorization": f"Bot {env.token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{env.api}/channels/{channel}/messages/{message_id}", headers=headers) as resp,
    ):
        return resp.status


async def deleted(env: Env, channel: int, message_id: str) -> None:
    """Wait for automod to delete the message (a GET of it answers 404)."""

    async def gone() -> bool:
        return await message_status(env, channel, message_id) == 404

    await until(f"message {message_id} deleted", gone, within=10)


async def test_automod_is_for_admins(env: Env, driver: Driver) -> None:
    text = await ask(driver, env.channels["general"], env.mod, "!automod invites delete")
    assert text == "This command is for admins."


async def test_automod_deletes_invites_but_not_staffs(env: Env, driver: Driver) -> None:
    dice = env.channels["dice"]
    text = await ask(driver, dice, env.owner, "!automod invites delete")
    assert "invite links: delete" in text
    staff = await driver.say(dice, env.mod, "our partner server: discord.gg/partner")
    spam = await driver.say(dice, env.members[10], "join discord.gg/freestuff now")
    await deleted(env, dice, spam)
    assert await message_status(env, dice, staff) == 200  # moderators are exempt
    await ask(driver, dice, env.owner, "!automod invites off")


async def test_automod_times_out_mention_spam_as_a_case(env: Env, driver: Driver) -> None:
    dice = env.channels["dice"]
    spammer = env.members[11]
    text = await ask(driver, dice, env.owner, "!automod mentions 3 timeout 10m")
    assert "3+ mentions: delete and time out 10m" in text
    victims = " ".join(f"<@{m}>" for m in env.members[:3])
    await driver.drain(dice)
    spam = await driver.say(dice, spammer, f"hey {victims}")
    await deleted(env, dice, spam)
    notice = await ask_nothing(driver, dice)
    assert f"<@{spammer}>" in notice and "timed out (case" in notice
    member = await discord(env, "GET", f"/guilds/{env.guild['id']}/members/{spammer}")
    assert member["communication_disabled_until"] is not None
    assert await actions(env, spammer) == ["timeout"]


async def test_automod_word_list_warns(env: Env, driver: Driver) -> None:
    dice = env.channels["dice"]
    speaker = env.members[12]
    assert "1 word(s)" in await ask(driver, dice, env.owner, "!automod word add darn")
    assert "1 word(s): delete and warn" in await ask(
        driver, dice, env.owner, "!automod wordaction warn"
    )
    fine = await driver.say(dice, speaker, "darned good roll")
    await driver.drain(dice)
    bad = await driver.say(dice, speaker, "well, DARN.")
    await deleted(env, dice, bad)
    notice = await ask_nothing(driver, dice)
    assert "warned (case" in notice
    assert await message_status(env, dice, fine) == 200
    assert await actions(env, speaker) == ["warn"]


async def ask_nothing(driver: Driver, channel: int) -> str:
    """The next thing the bot says here, unprompted (deletions are not sayings)."""
    for _ in range(20):
        for entry in await driver.replies(channel, wait=15):
            if entry.get("kind") not in ("delete", "reaction"):
                return text_of(entry)
    raise AssertionError("the bot said nothing")
