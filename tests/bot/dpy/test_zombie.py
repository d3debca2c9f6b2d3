"""A shard whose heartbeat goes un-ACKed until the next one closes its connection and RESUMEs
(bot/dpy/zombie.py); a shard with normal ACKs never reconnects."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import discord
import discord.gateway
import discord.http
import pytest
from waits import until

from bot.dpy import heartbeat, http_session, urls, zombie
from sandbox import Sandbox, SandboxConfig

pytestmark = pytest.mark.timeout(60)

# Short, for a quick test, yet long enough that a connection's heartbeats stay well under the
# sandbox's 120 payloads a minute (4008) while the test runs.
HEARTBEAT_MS = 150


class Client(discord.AutoShardedClient):
    """A plain discord.py client noting its shards' RESUMEs and the chat it receives."""

    def __init__(self) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        super().__init__(intents=intents, shard_ids=[0, 1], shard_count=2)
        self.ready = asyncio.Event()
        self.resumed: list[int] = []
        self.resumed_event = asyncio.Event()
        self.seen: list[str] = []
        self.seen_changed = asyncio.Event()

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        return None  # the sandbox paces IDENTIFYs itself (identify_interval)

    async def on_ready(self) -> None:
        self.ready.set()

    async def on_shard_resumed(self, shard_id: int) -> None:
        self.resumed.append(shard_id)
        self.resumed_event.set()

    async def on_message(self, message: discord.Message) -> None:
        self.seen.append(message.content)
        self.seen_changed.set()

    async def until_seen(self, prefix: str, n: int) -> None:
        while sum(s.startswith(prefix) for s in self.seen) < n:
            self.seen_changed.clear()
            await self.seen_changed.wait()


@pytest.fixture
def heartbeats(monkeypatch: pytest.MonkeyPatch) -> Counter[int]:
    """Periodic heartbeats each shard's keep-alive thread hands to the loop (sent, or not sent
    because the connection is zombied), counted outside the patches. discord.py is as before
    afterwards: base URLs and send_heartbeat."""
    monkeypatch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)
    gw = discord.gateway.DiscordWebSocket
    monkeypatch.setattr(gw, "DEFAULT_GATEWAY", gw.DEFAULT_GATEWAY)
    monkeypatch.setattr(gw, "send_heartbeat", gw.send_heartbeat)
    heartbeat.install()
    zombie.install()
    zombie.install()  # idempotent: wraps once
    assert zombie.installed()
    patched = gw.send_heartbeat
    counts: Counter[int] = Counter()

    async def counting(self: discord.gateway.DiscordWebSocket, data: Any) -> None:
        counts[self.shard_id or 0] += 1
        await patched(self, data)

    monkeypatch.setattr(gw, "send_heartbeat", counting)
    return counts


@pytest.fixture
async def running(heartbeats: Counter[int]) -> AsyncIterator[tuple[Sandbox, Client]]:
    async with Sandbox(
        SandboxConfig(guilds=4, members=3, identify_interval=0.05, heartbeat_ms=HEARTBEAT_MS)
    ) as sb:
        urls.install(sb.api_url, sb.gateway_url)
        client = Client()
        http_session.install(client.http)  # the bot's sockets: no read timeout, these checks
        task = asyncio.create_task(client.start(sb.token))
        try:
            await asyncio.wait_for(client.ready.wait(), 30)
            yield sb, client
        finally:
            await client.close()
            await asyncio.gather(task, return_exceptions=True)


def channel_of_shard(sb: Sandbox, shard: int) -> tuple[int, int]:
    guild = next(g for g in sb.world.guilds.values() if (g.id >> 22) % 2 == shard)
    channel = next(c.id for c in guild.channels.values() if c.type == 0)
    user = next(m for m in guild.members if m != sb.world.bot.id)
    return channel, user


async def test_a_shard_whose_ack_stalls_resumes_and_the_other_does_not_reconnect(
    running: tuple[Sandbox, Client],
    heartbeats: Counter[int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    sb, client = running
    caplog.set_level(logging.WARNING, logger=zombie.__name__)
    identifies = sb.stats()["identifies_per_bucket"]
    connections = sb.stats()["connections"]
    assert sum(identifies.values()) == 2
    shard0 = client._AutoShardedClient__shards[0]  # type: ignore[attr-defined]
    assert isinstance(shard0.ws.socket, http_session.GatewaySocket)
    channel, user = channel_of_shard(sb, 0)

    before = heartbeats.copy()
    assert await sb.fault("stall_acks", shard=0, count=1) == 1
    for i in range(3):  # while the shard's connection is zombied
        await sb.send_message(channel, user, f"during {i}")
    await asyncio.wait_for(client.resumed_event.wait(), 20)

    assert client.resumed == [0]
    # Closed at the periodic heartbeat after the un-ACKed one: about two intervals.
    assert heartbeats[0] - before[0] == 2, heartbeats
    assert sb.stats()["identifies_per_bucket"] == identifies  # RESUMEd, no IDENTIFY
    assert sb.stats()["connections"] == connections + 1
    (record,) = [r for r in caplog.records if r.name == zombie.__name__]
    assert "Shard ID 0" in record.getMessage() and "4000" in record.getMessage()

    for i in range(3):  # after the RESUME
        await sb.send_message(channel, user, f"after {i}")
    await asyncio.wait_for(client.until_seen("after", 3), 10)
    chat = [s for s in client.seen if s.startswith(("during", "after"))]
    assert chat == [f"during {i}" for i in range(3)] + [f"after {i}" for i in range(3)]

    # Shard 1, ACKed all along, goes on through more heartbeats than shard 0 needed to be
    # closed, on its first connection.
    mark = heartbeats[1]
    await until("three more heartbeats of shard 1", lambda: heartbeats[1] >= mark + 3, within=10)
    assert client.resumed == [0]
    assert sb.stats()["connections"] == connections + 1
    assert sb.stats()["identifies_per_bucket"] == identifies
    assert sb.stats()["close_codes"] == {}  # the one reconnect was the client's own close
    assert client.get_shard(1) is not None and not client.get_shard(1).is_closed()  # type: ignore[union-attr]
