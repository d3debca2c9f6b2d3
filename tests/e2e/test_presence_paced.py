"""The owners' `presence` command run 8 times quickly: Discord allows 5 presence updates per
20 s per shard (the sandbox closes the 6th with 4008), so the shards' presence pacer
(bot/presence_pacer.py) sends 5 and holds the rest, the latest winning, and the command says
when it applies. Seen through the sandbox's `GET /_sandbox/presence` and `/_sandbox/stats`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from e2e_harness import (
    Driver,
    SandboxProc,
    running_cluster,
    text_channels,
    until,
    world_of,
)

from cluster.workers import Supervisor

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(240)]

SHARDS = 2


async def control(sandbox: SandboxProc, path: str) -> Any:
    async with aiohttp.ClientSession() as http, http.get(sandbox.control + path) as resp:
        assert resp.status < 300, await resp.text()
        return await resp.json(content_type=None)


@pytest.fixture(scope="module")
async def owner_place(sandbox: SandboxProc) -> tuple[int, int]:
    """(channel, owner): a text channel of a guild whose owner is the bot's owner."""
    world = await world_of(sandbox)
    guild = next(g for g in world["guilds"] if text_channels(g))
    return text_channels(guild)[0], int(guild["owner_id"])


@pytest.fixture(scope="module")
async def bot(
    sandbox: SandboxProc, bot_db: str, redis_url: str, owner_place: tuple[int, int]
) -> AsyncIterator[Supervisor]:
    async with running_cluster(
        sandbox, bot_db, redis_url, shards=SHARDS, clusters=1, owner_id=owner_place[1]
    ) as sup:
        yield sup


async def test_eight_quick_presence_commands_never_close_a_shard_and_the_last_wins(
    sandbox: SandboxProc, driver: Driver, bot: Supervisor, owner_place: tuple[int, int]
) -> None:
    channel, owner = owner_place
    await driver.drain(channel)
    answers = []
    for i in range(8):
        await driver.say(channel, owner, f"!presence idle Round {i}")
        answers.append(await driver.reply_text(channel))
    assert answers[:5] == ["Presence set on 1 cluster(s)."] * 5
    for text in answers[5:]:  # paced: it names when it applies
        assert text.startswith("Presence set on 1 cluster(s). Discord allows 5 presence updates")
        assert " applies in " in text

    async def last_won() -> bool:
        shards = (await control(sandbox, "/_sandbox/presence"))["shards"]
        return len(shards) == SHARDS and all(
            s["current"] and s["current"]["activities"] == [{"name": "Round 7", "type": 0}]
            for s in shards
        )

    await until("every shard shows the last presence", last_won, within=60)
    seen = await control(sandbox, "/_sandbox/presence")
    for shard in seen["shards"]:
        assert shard["refused"] == 0
        assert shard["current"]["status"] == "idle"
        names = [u["activities"][0]["name"] for u in shard["updates"] if u["via"] == "update"]
        assert names == [f"Round {i}" for i in (0, 1, 2, 3, 4, 7)]  # 6 and 5 were replaced
    stats = await control(sandbox, "/_sandbox/stats")
    assert "4008" not in stats["close_codes"]
    assert bot.ready()
