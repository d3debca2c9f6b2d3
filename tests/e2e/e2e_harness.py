"""Helpers for end-to-end tests: start the sandbox process, drive it, start the bot."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import orjson

from bot.config import WorkerConfig
from bot.guildhouse import EXTENSIONS
from cluster.launcher import BackingUrls, DiscordEndpoint, worker_configs
from cluster.settings import load
from cluster.workers import RestartPolicy, Supervisor

# A cog only the tests load: it fails on purpose, to exercise the unexpected-error path.
TEST_EXTENSIONS = (*EXTENSIONS, "boom_cog")


@dataclass
class SandboxProc:
    proc: subprocess.Popen[bytes]
    info: dict[str, Any]

    @property
    def control(self) -> str:
        return str(self.info.get("control_url") or self.info["api_url"].split("/api/")[0])


def start_sandbox(*args: str) -> SandboxProc:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--host", "127.0.0.1", "--port", "0", *args],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        if not line:
            break
        if line.startswith("SANDBOX "):
            return SandboxProc(proc, orjson.loads(line[len("SANDBOX ") :]))
    proc.kill()
    raise RuntimeError("the sandbox did not print its banner")


def _entries(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, list):
        return data
    for key in ("items", "messages", "outbox", "entries"):
        if isinstance(data.get(key), list):
            return list(data[key])
    return []


def text_of(entry: dict[str, Any]) -> str:
    """Everything a user would read in one thing the bot sent."""
    payload = entry.get("data") if isinstance(entry.get("data"), dict) else entry
    parts = [str(payload.get("content") or "")]
    for embed in payload.get("embeds") or []:
        parts += [str(embed.get("title") or ""), str(embed.get("description") or "")]
        parts += [f"{f.get('name')} {f.get('value')}" for f in embed.get("fields") or []]
        parts.append(str((embed.get("footer") or {}).get("text") or ""))
    return "\n".join(p for p in parts if p)


@dataclass
class Driver:
    """Speaks to the sandbox's control API."""

    http: aiohttp.ClientSession
    base: str
    world: dict[str, Any]
    cursors: dict[int, str] = field(default_factory=dict)

    async def say(self, channel_id: int, author_id: int, content: str) -> str:
        body = {"channel_id": str(channel_id), "author_id": str(author_id), "content": content}
        async with self.http.post(f"{self.base}/_sandbox/messages", json=body) as resp:
            assert resp.status < 300, await resp.text()
            return str((await resp.json())["id"])

    async def click(self, channel_id: int, user_id: int, message_id: str, custom_id: str) -> None:
        body = {
            "channel_id": str(channel_id),
            "user_id": str(user_id),
            "message_id": message_id,
            "custom_id": custom_id,
        }
        async with self.http.post(f"{self.base}/_sandbox/interactions", json=body) as resp:
            assert resp.status < 300, await resp.text()

    async def first_click(
        self, channel_id: int, user_id: int, message_id: str, custom_id: str
    ) -> list[dict[str, Any]]:
        """Click a button of a message the bot has just sent, and return the answer. The bot
        registers the message's buttons when Discord's reply to its send arrives, a moment
        after the message shows up here; a click in that moment finds no buttons, and is
        ignored, as Discord would. A person would click again, and so does this."""
        for _ in range(5):
            await self.click(channel_id, user_id, message_id, custom_id)
            answer = await self.replies(channel_id, wait=2.0)
            if answer:
                return answer
        return []

    async def slash(
        self, channel_id: int, user_id: int, name: str, options: list[dict[str, Any]] | None = None
    ) -> str:
        body = {
            "channel_id": str(channel_id),
            "user_id": str(user_id),
            "name": name,
            "options": options or [],
        }
        async with self.http.post(f"{self.base}/_sandbox/interactions", json=body) as resp:
            assert resp.status < 300, await resp.text()
            return str((await resp.json())["id"])

    async def replies(
        self, channel_id: int, *, wait: float = 10.0, count: int = 1
    ) -> list[dict[str, Any]]:
        """The next `count` things the bot sent in the channel (waits up to `wait` s)."""
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + wait
        while len(got) < count and (left := deadline - time.monotonic()) > 0:
            params = {
                "channel_id": str(channel_id),
                "after": self.cursors.get(channel_id, "0"),
                "wait": f"{min(left, 5):.1f}",
            }
            async with self.http.get(f"{self.base}/_sandbox/outbox", params=params) as resp:
                entries = _entries(await resp.json())
            for entry in entries:
                self.cursors[channel_id] = str(entry.get("seq", entry.get("id")))
                got.append(entry)
        return got

    async def reply_text(self, channel_id: int, wait: float = 10.0) -> str:
        """The text of the bot's next message, as it reads once the bot's edits settle."""
        found = await self.replies(channel_id, wait=wait)
        assert found, f"the bot said nothing in {channel_id} within {wait}s"
        first = found[0]
        latest = first
        more = found[1:] + await self.replies(channel_id, wait=0.4, count=1000)
        for entry in more:
            if entry.get("kind") == "edit" and entry.get("message_id") == first.get("message_id"):
                latest = entry
        return text_of(latest)

    async def drain(self, channel_id: int) -> None:
        await self.replies(channel_id, wait=0.5, count=1000)


@dataclass
class RunningBot:
    supervisor: Supervisor
    database_url: str
    owner_id: int


async def start_cluster(
    sandbox: SandboxProc,
    database_url: str,
    redis_url: str,
    *,
    shards: int,
    clusters: int,
    max_concurrency: int = 1,
    owner_id: int,
    prefix: str,
    hang_timeout: float = 20,
    wait_ready: bool = True,
    adjust: Callable[[WorkerConfig], WorkerConfig] | None = None,
) -> Supervisor:
    """Start the workers as `guildhouse run` would; unless `wait_ready` is False, return once
    every shard is READY. `adjust` changes each worker's config before it starts."""
    settings = load(
        {
            "SHARD_COUNT": str(shards),
            "CLUSTER_COUNT": str(clusters),
            "OWNER_IDS": str(owner_id),
            "REDIS_PREFIX": prefix,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": os.environ.get("E2E_LOG_LEVEL", "WARNING"),
        },
        config_file=None,
    )
    endpoint = DiscordEndpoint(
        token=sandbox.info["token"],
        api_url=sandbox.info["api_url"],
        gateway_url=sandbox.info["gateway_url"],
        identify_interval=float(sandbox.info["identify_interval"]),
    )
    configs = worker_configs(
        settings,
        endpoint=endpoint,
        urls=BackingUrls(database_url, redis_url),
        shard_count=shards,
        gateway_url=sandbox.info["gateway_url"],
        max_concurrency=max_concurrency,
    )
    configs = [replace(c, extensions=TEST_EXTENSIONS) for c in configs]
    if adjust is not None:
        configs = [adjust(c) for c in configs]
    from bot.entry import sync_commands

    await sync_commands(configs[0])
    sup = Supervisor(
        configs,
        log_level=settings.log_level,
        log_format="json",
        policy=RestartPolicy(
            base_delay=0.2, max_delay=1, hang_timeout=hang_timeout, start_grace=60
        ),
        grace=15,
    )
    await sup.start()
    if not wait_ready:
        return sup
    deadline = time.monotonic() + 90
    while not sup.ready():
        assert time.monotonic() < deadline, "the bot's shards did not all become READY"
        await asyncio.sleep(0.2)
    return sup
