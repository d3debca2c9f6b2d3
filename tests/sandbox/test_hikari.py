"""An independent client library, hikari, against the sandbox with only its REST URL changed
(it finds the gateway through GET /gateway/bot): the sandbox is not shaped to discord.py."""

from __future__ import annotations

import asyncio

import hikari
import pytest
from waits import until

from sandbox import Sandbox, SandboxConfig

pytestmark = pytest.mark.timeout(60)


async def test_hikari_bot_receives_guilds_and_answers() -> None:
    async with Sandbox(SandboxConfig(guilds=5, members=4, identify_interval=0.1)) as sb:
        intents = hikari.Intents.ALL_UNPRIVILEGED | hikari.Intents.MESSAGE_CONTENT
        bot = hikari.GatewayBot(
            sb.token,
            rest_url=sb.api_url,
            intents=intents,
            banner=None,
            suppress_optimization_warning=True,
        )
        ready = asyncio.Event()

        @bot.listen(hikari.GuildMessageCreateEvent)
        async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
            if event.is_human and event.content == "!hi":
                await event.message.respond(f"hello {event.author.id}")

        @bot.listen(hikari.ShardReadyEvent)
        async def on_ready(event: hikari.ShardReadyEvent) -> None:
            ready.set()

        await bot.start()
        try:
            await asyncio.wait_for(ready.wait(), 20)
            await until(
                "every guild in the cache (GUILD_CREATEs follow READY)",
                lambda: len(bot.cache.get_guilds_view()) >= len(sb.world.guilds),
                within=10,
            )
            assert set(bot.cache.get_guilds_view()) == set(sb.world.guilds)
            me = await bot.rest.fetch_my_user()
            assert me.id == sb.world.bot.id and me.is_bot
            guild = next(iter(sb.world.guilds.values()))
            channel = next(c.id for c in guild.channels.values() if c.type == 0)
            user = next(m for m in guild.members if m != sb.world.bot.id)
            await sb.send_message(channel, user, "!hi")
            (reply,) = await sb.outbox(channel, wait=5)
            assert reply["content"] == f"hello {user}"
        finally:
            await bot.close()
