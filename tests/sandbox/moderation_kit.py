"""What the sandbox's moderation tests share: a sandbox, the bot's REST session, the control
API, a gateway listener with chosen intents, and Discord's OpenAPI description when present."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from sandbox import Sandbox, SandboxConfig
from sandbox.ratelimit import Limits

OPENAPI = Path(
    os.environ.get("DISCORD_OPENAPI")
    or Path(__file__).resolve().parents[2].parent / "shared" / "discord-api" / "openapi.json"
)
GUILDS, GUILD_MEMBERS, GUILD_MODERATION, GUILD_MESSAGES = 1, 1 << 1, 1 << 2, 1 << 9


def load_openapi() -> Registry | None:
    if not OPENAPI.is_file():
        return None
    spec = json.loads(OPENAPI.read_text())
    registry: Registry = Registry().with_resource("urn:discord", DRAFT202012.create_resource(spec))
    return registry


def conforms(registry: Registry | None, schema: str, value: Any) -> list[str]:
    """Where `value` departs from Discord's schema (nothing to say without the file)."""
    if registry is None:
        return []
    validator = Draft202012Validator(
        {"$ref": f"urn:discord#/components/schemas/{schema}"}, registry=registry
    )
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"[:300]
        for e in validator.iter_errors(value)
    ]


class Listener:
    """One gateway session (shard 0 of 1) with the given intents, collecting dispatches."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        async for msg in self.ws:
            payload = json.loads(msg.data)
            if payload.get("op") == 0:
                await self.events.put((payload["t"], payload["d"]))

    async def next(self, *names: str, timeout: float = 5.0) -> dict[str, Any]:
        """The next dispatch of one of `names` (others are passed over)."""
        async with asyncio.timeout(timeout):
            while True:
                name, data = await self.events.get()
                if name in names:
                    return data

    async def before(self, name: str, timeout: float = 5.0) -> list[str]:
        """The names of the dispatches that arrive before the next `name` (taken with it)."""
        names = []
        async with asyncio.timeout(timeout):
            while (got := (await self.events.get())[0]) != name:
                names.append(got)
        return names


@dataclass
class Kit:
    sb: Sandbox
    api: aiohttp.ClientSession
    control: aiohttp.ClientSession
    http: aiohttp.ClientSession

    async def listen(self, intents: int) -> Listener:
        ws = await self.http.ws_connect(self.sb.gateway_url)
        await ws.receive_json()  # HELLO
        await ws.send_json(
            {"op": 2, "d": {"token": self.sb.token, "intents": intents, "shard": [0, 1]}}
        )
        listener = Listener(ws)
        listener.task = asyncio.create_task(listener._read())
        await listener.next("READY")
        # The GUILD_CREATEs come next: wait until the last one is in.
        for _ in self.sb.world.guilds:
            await listener.next("GUILD_CREATE")
        return listener

    async def rest(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        async with self.api.request(method, path.lstrip("/"), json=body, **kw) as resp:
            text = await resp.text()
            return resp.status, (json.loads(text) if text else None)

    async def ctl(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.control.request(method, path, json=body) as resp:
            return resp.status, await resp.json()


@pytest.fixture
async def kit() -> AsyncIterator[Kit]:
    limits = Limits(global_limit=10_000, route_limit=10_000)
    async with (
        Sandbox(
            SandboxConfig(
                guilds=1, members=10, limits=limits, heartbeat_ms=60_000, identify_interval=0.0
            )
        ) as sb,
        aiohttp.ClientSession(
            base_url=sb.api_url + "/", headers={"Authorization": f"Bot {sb.token}"}
        ) as api,
        aiohttp.ClientSession(base_url=sb.control_url) as control,
        aiohttp.ClientSession() as http,
    ):
        yield Kit(sb, api, control, http)
