"""A member given by name (`!rank Bob`, `!xp give Bob 5`): the bot has no member cache, so
discord.py's MemberConverter asks the gateway (REQUEST_GUILD_MEMBERS with a query). The
command answers, with the member or with a line naming who was not found, and the worker
stays up."""

from __future__ import annotations

from typing import Any

import pytest
from e2e_harness import Driver, SandboxProc, running_cluster, text_channels

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


async def rest_get(driver: Driver, sandbox: SandboxProc, path: str) -> dict[str, Any]:
    """Discord's REST API, as the bot sees it (the world summary carries no names)."""
    headers = {"Authorization": f"Bot {sandbox.info['token']}"}
    async with driver.http.get(f"{sandbox.info['api_url']}{path}", headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        data: dict[str, Any] = await resp.json()
        return data


async def test_members_by_name_are_found_or_named_as_missing(
    sandbox: SandboxProc, driver: Driver, bot_db: str, redis_url: str
) -> None:
    guild = driver.world["guilds"][0]
    channel = text_channels(guild)[0]
    owner = int(guild["owner_id"])
    bot_id = int(driver.world["bot"]["id"])
    target = next(int(m["id"]) for m in guild["members"] if int(m["id"]) not in (owner, bot_id))
    member = await rest_get(driver, sandbox, f"/guilds/{guild['id']}/members/{target}")
    name = member["user"]["username"]
    shown = member.get("nick") or member["user"].get("global_name") or name
    arg = f'"{name}"' if " " in name else name

    async with running_cluster(
        sandbox, bot_db, redis_url, shards=2, clusters=1, owner_id=owner
    ) as sup:
        worker = sup.workers[0]
        pid = worker.pid
        await driver.drain(channel)
        await driver.say(channel, owner, f"!xp give {arg} 5")
        assert await driver.reply_text(channel) == f"Gave 5 XP to <@{target}>: now 5 XP."

        await driver.say(channel, owner, f"!rank {arg}")
        rank = await driver.reply_text(channel)
        assert f"{shown}: level 0" in rank and "XP 5" in rank, rank

        await driver.say(channel, owner, "!rank nobodyhere")
        assert await driver.reply_text(channel) == "No member named `nobodyhere` in this server."

        assert worker.pid == pid and worker.alive() and worker.restarts == 0
