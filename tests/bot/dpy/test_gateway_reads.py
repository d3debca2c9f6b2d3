"""The shards' gateway connections read without a timer per event (bot/dpy/http_session.py):
a read on the websocket class the bot's sessions carry waits past the timeout discord.py asks
for; a silent connection is closed by the heartbeat checks instead (tests/bot/dpy/test_zombie.py
runs with this class)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import discord.http
import pytest
from aiohttp import web

from bot.dpy.http_session import GatewaySocket, install


@pytest.fixture
async def slow_server() -> AsyncIterator[str]:
    """A websocket server that says "hi" 0.3 s after a client connects."""

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await asyncio.sleep(0.3)
        await ws.send_str("hi")
        await ws.receive()  # until the client closes
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"ws://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


async def test_a_read_on_the_bot_s_session_waits_past_the_timeout(slow_server: str) -> None:
    http = discord.http.HTTPClient(asyncio.get_running_loop())
    install(http)
    http._HTTPClient__session = aiohttp.ClientSession()  # type: ignore[attr-defined]  # as login does
    session: aiohttp.ClientSession = http._HTTPClient__session  # type: ignore[attr-defined]
    async with aiohttp.ClientSession() as plain:
        try:
            ours = await session.ws_connect(slow_server)
            assert isinstance(ours, GatewaySocket)
            msg = await ours.receive(timeout=0.05)  # what poll_event passes, shortened
            assert msg.type is aiohttp.WSMsgType.TEXT and msg.data == "hi"
            await ours.close()
            # A session discord.py made without `install`: the same read times out.
            theirs = await plain.ws_connect(slow_server)
            assert not isinstance(theirs, GatewaySocket)
            with pytest.raises(asyncio.TimeoutError):
                await theirs.receive(timeout=0.05)
            await theirs.close()
        finally:
            await session.close()
