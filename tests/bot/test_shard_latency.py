"""A shard's latency is blank (None, "measuring") until it is measured: discord.py's first
HEARTBEAT_ACK of a connection answers the heartbeat sent at HELLO, and is read only after
IDENTIFY, which waits its turn in the identify queue; its latency is that wait."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import discord
import discord.gateway
import discord.http
import pytest
from waits import until

from bot.dpy import urls
from bot.dpy.keep_alive import HeartbeatLatency
from sandbox import Sandbox, SandboxConfig

IDENTIFY_WAIT = 0.8  # s the client waits before IDENTIFY, as in a busy identify queue
# Long enough that READY (after the wait) comes well before the second heartbeat.
HEARTBEAT_MS = 4000


class QueuedClient(discord.AutoShardedClient):
    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        await asyncio.sleep(IDENTIFY_WAIT)


@pytest.fixture
async def client(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[QueuedClient]:
    monkeypatch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)
    gw = discord.gateway.DiscordWebSocket
    monkeypatch.setattr(gw, "DEFAULT_GATEWAY", gw.DEFAULT_GATEWAY)
    async with Sandbox(
        SandboxConfig(guilds=1, members=2, identify_interval=0.1, heartbeat_ms=HEARTBEAT_MS)
    ) as sb:
        urls.install(sb.api_url, sb.gateway_url)
        bot = QueuedClient(
            intents=discord.Intents(guilds=True), shard_count=1, chunk_guilds_at_startup=False
        )
        async with bot:
            await bot.login(sb.token)
            runner = asyncio.create_task(bot.connect(reconnect=False))
            try:
                yield bot
            finally:
                await bot.close()
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)


async def test_latency_is_blank_until_a_heartbeat_is_measured(client: QueuedClient) -> None:
    await client.wait_until_ready()
    watch = HeartbeatLatency()
    shard = client.get_shard(0)
    keep_alive = shard._parent.ws._keep_alive  # type: ignore[union-attr]
    # READY came after the first ACK: discord.py shows a latency, which is the IDENTIFY wait.
    first = client.get_shard(0).latency
    assert math.isfinite(first) and first >= IDENTIFY_WAIT
    first_ack = keep_alive._last_ack
    assert watch.of(0, shard) is None

    def next_ack() -> bool:
        if keep_alive._last_ack != first_ack:
            return True
        assert watch.of(0, client.get_shard(0)) is None, "the first ACK shown as measured"
        return False

    await until("the next heartbeat's ACK", next_ack, every=0.02)
    measured = watch.of(0, client.get_shard(0))
    assert measured is not None and measured == keep_alive.latency
    assert measured != first


def test_status_says_measuring_for_a_ready_shard_without_a_latency() -> None:
    from cluster.launcher import render_status
    from ipc.registry import ClusterInfo, ShardInfo

    shards = {0: ShardInfo("ready", None, 3), 1: ShardInfo("ready", 41.7, 2)}
    shards[2] = ShardInfo("connecting", None, 0)
    table = render_status([ClusterInfo(0, [0, 1, 2], 1, "h", "ready", 0.0, shards=shards)])
    rows = {line.split()[0]: line.split() for line in table.splitlines()[-3:]}
    assert rows["0"][3] == "measuring"
    assert rows["1"][3:5] == ["42", "ms"]
    assert rows["2"][3] == "-"
