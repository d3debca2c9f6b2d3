"""GATEWAY_COMPRESSION: discord.py connects with the transport compression we chose, and reads
every event of it (bot/dpy/compression.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import discord
import discord.gateway
import discord.http
import pytest

from bot.dpy import compression, urls
from bot.guildhouse import intents
from sandbox import Sandbox, SandboxConfig


@pytest.fixture
def restore_discord() -> Iterator[None]:
    saved = (
        discord.utils._ActiveDecompressionContext,
        discord.http.Route.BASE,
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY,
    )
    yield
    (
        discord.utils._ActiveDecompressionContext,
        discord.http.Route.BASE,
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY,
    ) = saved  # type: ignore[misc]


@pytest.mark.usefixtures("restore_discord")
@pytest.mark.parametrize("kind", compression.CHOICES)
async def test_a_bot_connects_with_the_chosen_compression(kind: str) -> None:
    async with Sandbox(
        SandboxConfig(guilds=30, members=5, max_concurrency=2, identify_interval=0.2)
    ) as sb:
        urls.install(sb.api_url, sb.gateway_url)
        compression.install(kind)
        assert kind == discord.utils._ActiveDecompressionContext.COMPRESSION_TYPE
        client = discord.AutoShardedClient(
            intents=intents(),
            shard_count=2,
            chunk_guilds_at_startup=False,
            member_cache_flags=discord.MemberCacheFlags.none(),
            max_messages=None,
        )
        ready = asyncio.Event()

        @client.event
        async def on_ready() -> None:
            ready.set()

        async with client:
            await client.login(sb.token)
            runner = asyncio.create_task(client.connect(reconnect=False))
            try:
                await asyncio.wait_for(ready.wait(), 30)
                # The sandbox compressed with what the URL asked for, and every guild of the
                # stream was read: the decompressor matched it.
                kinds = {conn.compressor.kind for conn in sb.gateway.connections}
                assert kinds == {kind}
                assert len(client.guilds) == 30
                decompressors = {
                    type(shard.ws._decompressor).COMPRESSION_TYPE
                    for shard in client._AutoShardedClient__shards.values()  # type: ignore[attr-defined]
                }
                assert decompressors == {kind}
            finally:
                await client.close()
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)


def test_an_unknown_compression_is_named() -> None:
    with pytest.raises(ValueError, match=r"'gzip'.*zlib-stream, zstd-stream"):
        compression.install("gzip")
