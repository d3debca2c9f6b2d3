"""A HEARTBEAT_ACK that comes back fast reads as fast, even when discord.py's keep-alive thread
is slow to record the heartbeat's send time (bot/dpy/heartbeat.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import discord
import discord.gateway
import discord.http
import pytest

from bot.dpy import heartbeat, urls
from sandbox import Sandbox, SandboxConfig

HEARTBEAT_MS = 100
THREAD_LAG = 0.04  # s the keep-alive thread takes to record a send; under HEARTBEAT_MS


def recording_handler(acks: list[tuple[float, bool]]) -> type[discord.gateway.KeepAliveHandler]:
    """discord.py's keep-alive handler, noting for each ACK the latency it measured and
    whether the ACK came while the keep-alive thread had not yet recorded the send time of the
    heartbeat it sent (the race: without the fix, `ack()` then reads the previous one's).

    The thread is made slow to record, as a loaded worker's is (it waits for the GIL behind a
    busy event loop; up to a second in trials): it waits THREAD_LAG before setting
    `_last_send`, so every ACK from the sandbox, a few milliseconds away, comes in the race's
    window, instead of some ACKs in some runs."""

    class Recording(discord.gateway.KeepAliveHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.sent_by_thread = 0  # periodic heartbeats the thread has begun
            self.recorded_by_thread = 0  # ... and then recorded as sent
            super().__init__(*args, **kwargs)

        @property
        def _last_send(self) -> float:
            return self._sent_at

        @_last_send.setter
        def _last_send(self, value: float) -> None:
            if threading.current_thread() is self:
                time.sleep(THREAD_LAG)
                self.recorded_by_thread += 1
            self._sent_at = value

        def get_payload(self) -> dict[str, Any]:
            if threading.current_thread() is self:
                self.sent_by_thread += 1
            return super().get_payload()

        def ack(self) -> None:
            early = self.sent_by_thread > self.recorded_by_thread
            super().ack()
            acks.append((self.latency, early))

    return Recording


async def connect_for(seconds: float) -> None:
    """One client connected to the sandbox, heartbeating every HEARTBEAT_MS, for `seconds`."""
    async with Sandbox(
        SandboxConfig(guilds=1, members=2, identify_interval=0.1, heartbeat_ms=HEARTBEAT_MS)
    ) as sb:
        urls.install(sb.api_url, sb.gateway_url)
        client = discord.Client(intents=discord.Intents.none(), chunk_guilds_at_startup=False)
        async with client:
            await client.login(sb.token)
            runner = asyncio.create_task(client.connect(reconnect=False))
            try:
                await asyncio.sleep(seconds)
            finally:
                await client.close()
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)


@pytest.fixture
def acks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, bool]]:
    """(latency, early) of every HEARTBEAT_ACK from now on, by a recording keep-alive handler.
    Afterwards discord.py is as before: base URLs, send_heartbeat (the fix), handler class."""
    acks: list[tuple[float, bool]] = []
    monkeypatch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)
    gw = discord.gateway.DiscordWebSocket
    monkeypatch.setattr(gw, "DEFAULT_GATEWAY", gw.DEFAULT_GATEWAY)
    monkeypatch.setattr(gw, "send_heartbeat", gw.send_heartbeat)
    monkeypatch.setattr(discord.gateway, "KeepAliveHandler", recording_handler(acks))
    return acks


async def test_a_fast_ack_reads_as_fast_while_the_thread_is_slow(
    acks: list[tuple[float, bool]],
) -> None:
    heartbeat.install()
    heartbeat.install()  # idempotent: wraps once
    assert discord.gateway.DiscordWebSocket.send_heartbeat is heartbeat._send_heartbeat
    await connect_for(2.0)
    assert len(acks) >= 10, acks
    # The race happened: ACKs came before the keep-alive thread recorded its send (without the
    # fix each of those reads about 0.1 s, the interval)...
    assert any(early for _, early in acks), f"no ACK came early, the race wasn't tested: {acks}"
    # ... and still none read as the interval it measured from before the fix (0.1 s here;
    # 41.25 s against Discord). A sandbox ACK on this loop takes a few milliseconds.
    assert max(latency for latency, _ in acks) < HEARTBEAT_MS / 1000 / 2, acks


def test_install_does_nothing_where_discord_py_has_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gw = discord.gateway.DiscordWebSocket
    monkeypatch.setattr(gw, "send_heartbeat", gw.send_heartbeat)
    original = gw.send_heartbeat
    monkeypatch.setattr(
        discord.gateway.KeepAliveHandler, "_send_heartbeat", object(), raising=False
    )
    heartbeat.install()
    assert gw.send_heartbeat is original
