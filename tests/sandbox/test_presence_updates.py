"""The bot's presence in the sandbox: IDENTIFY's `presence` and Update Presence (op 3) checked
against the documented structure (4002 off it), kept per shard for the control API
(`GET /_sandbox/presence`), and Discord's "5 times per 20 seconds" held per shard: the 6th
update within the window closes the connection with 4008, and is not applied. The window is
scaled (`window_scale`) so the test doesn't wait 20 s; a second shard's updates don't count
against the first's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from test_gateway import Client, identify

from sandbox import Sandbox, SandboxConfig
from sandbox.presence import UPDATES

pytestmark = pytest.mark.timeout(60)
WATCHING = {"name": "12 servers", "type": 3}


def update(name: str, **over: Any) -> dict[str, Any]:
    return {
        "since": None,
        "activities": [{"name": name, "type": 3}],
        "status": "online",
        "afk": False,
        **over,
    }


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    # A window far longer than the test (the 6th update must fall inside it): 20 s × 30.
    config = SandboxConfig(
        guilds=4, members=4, identify_interval=0.0, window_scale=30.0, heartbeat_ms=60_000
    )
    async with Sandbox(config) as s:
        yield s


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def connect(http: aiohttp.ClientSession, sb: Sandbox) -> Client:
    client = Client(await http.ws_connect(f"{sb.gateway_url}?v=10&encoding=json"), None)
    assert (await client.recv())["op"] == 10  # HELLO
    return client


async def shard(http: aiohttp.ClientSession, sb: Sandbox, n: int, **extra: Any) -> Client:
    client = await connect(http, sb)
    await client.send(2, {**identify(sb, shard=n, count=2), **extra})
    await client.until("READY")
    return client


async def presences(http: aiohttp.ClientSession, sb: Sandbox) -> dict[str, Any]:
    async with http.get(f"{sb.control_url}/_sandbox/presence") as resp:
        assert resp.status == 200
        return dict(await resp.json())


async def acknowledged(client: Client) -> None:
    """Everything sent before has been handled: a heartbeat is answered after it."""
    await client.send(1, None)
    while (await client.recv())["op"] != 11:
        pass


async def test_updates_are_kept_per_shard_and_the_sixth_in_the_window_is_4008(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    first = await shard(http, sb, 0, presence=update("starting", status="idle"))
    second = await shard(http, sb, 1)
    for i in range(UPDATES):  # IDENTIFY's presence doesn't count: five more are allowed
        await first.send(3, update(f"line {i}"))
    await second.send(3, update("other shard"))
    await acknowledged(first)
    await acknowledged(second)
    shown = {tuple(s["shard"]): s for s in (await presences(http, sb))["shards"]}
    zero = shown[(0, 2)]
    assert [(u["via"], u["activities"][0]["name"]) for u in zero["updates"]] == [
        ("identify", "starting"),
        *(("update", f"line {i}") for i in range(UPDATES)),
    ]
    assert zero["current"]["activities"] == [{"name": "line 4", "type": 3}]
    assert zero["updates"][0]["status"] == "idle" and zero["refused"] == 0
    assert shown[(1, 2)]["current"]["activities"][0]["name"] == "other shard"
    # The 6th within 20 s on shard 0: closed with 4008, not applied; shard 1 goes on.
    await first.send(3, update("one too many"))
    assert await first.closed_with() == 4008
    await second.send(3, update("still fine"))
    await acknowledged(second)
    shown = {tuple(s["shard"]): s for s in (await presences(http, sb))["shards"]}
    assert shown[(0, 2)]["current"]["activities"][0]["name"] == "line 4"
    assert shown[(0, 2)]["refused"] == 1
    assert shown[(1, 2)]["current"]["activities"][0]["name"] == "still fine"


@pytest.mark.parametrize(
    "payload",
    [
        "online",
        {"since": None, "activities": [], "afk": False},  # no status
        update("x", status="away"),
        update("x", since="yesterday"),
        update("x", afk="no"),
        update("x", activities={"name": "x", "type": 0}),
        update("x", activities=[{"name": "", "type": 0}]),
        update("x", activities=[{"name": "x" * 129, "type": 0}]),
        update("x", activities=[{"name": "x", "type": 6}]),
        update("x", activities=[{"name": "x"}]),
    ],
)
async def test_an_update_off_the_structure_is_4002(
    sb: Sandbox, http: aiohttp.ClientSession, payload: Any
) -> None:
    client = await shard(http, sb, 0)
    await client.send(3, payload)
    assert await client.closed_with() == 4002


async def test_what_discordpy_and_hikari_send_is_taken(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    """discord.py's `since` is a float (0.0), hikari's null with no activities; a custom status
    (type 4) carries a state."""
    client = await shard(http, sb, 0)
    await client.send(3, update("a", since=0.0))
    await client.send(3, {"since": None, "activities": None, "status": "dnd", "afk": False})
    custom = [{"name": "Custom Status", "type": 4, "state": "rolling dice"}]
    await client.send(3, update("x", activities=custom, status="invisible"))
    await acknowledged(client)
    [zero] = (await presences(http, sb))["shards"]
    assert [u["status"] for u in zero["updates"]] == ["online", "dnd", "invisible"]
    assert zero["current"]["activities"] == custom
    bad = await connect(http, sb)
    await bad.send(2, {**identify(sb), "presence": {"status": "sleepy"}})
    assert await bad.closed_with() == 4002
