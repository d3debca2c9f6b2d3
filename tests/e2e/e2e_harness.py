"""The end-to-end harness: the sandbox process, a driver for it, the bot's cluster.

- `running_sandbox(*args)` / `start_sandbox(*args)`: `python -m sandbox` as `guildhouse run`
  starts it, its banner read (`SandboxProc.stop()` ends it);
- `Driver`: speaks to the sandbox's control API as a user would (say, click, slash, replies);
  `world_of(sandbox)` is the world it was made with, `text_channels`, `plain_members`,
  `cluster_of` pick places in it; `png_size` reads a reply's attached PNG;
- `running_cluster(...)` / `start_cluster(...)`: the workers as `guildhouse run` starts them,
  under the launcher's supervisor, with the test-only cogs;
- `until(what, check)`: polls a condition on other processes up to a deadline, for what no
  event reaches the test (the processes under test are separate).

tests/e2e/conftest.py makes fixtures of them (`sandbox`, `driver`, `bot_db`);
tests/e2e/launcher_proc.py runs `guildhouse run` itself as a subprocess.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import orjson
from waits import until

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

    def discord_env(self) -> dict[str, str]:
        """The settings that point `guildhouse run` (or a CLI command) at this sandbox."""
        return {"DISCORD_TOKEN": self.info["token"], "DISCORD_API_URL": self.info["api_url"]}

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@contextmanager
def running_sandbox(*args: str) -> Iterator[SandboxProc]:
    """`python -m sandbox` with `args` for the block, stopped after it."""
    sb = start_sandbox(*args)
    try:
        yield sb
    finally:
        sb.stop()


async def world_of(sandbox: SandboxProc) -> dict[str, Any]:
    """The sandbox's world summary: guilds (channels, members, owner) and the bot user."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{sandbox.control}/_sandbox/world") as resp,
    ):
        world: dict[str, Any] = await resp.json()
    return world


def text_channels(guild: dict[str, Any]) -> list[int]:
    return [int(c["id"]) for c in guild.get("channels", []) if int(c.get("type", 0)) == 0]


def plain_members(guild: dict[str, Any]) -> list[int]:
    """Members with no role but @everyone, other than the owner: no moderator or admin
    rights."""
    owner = int(guild["owner_id"])
    return [int(m["id"]) for m in guild["members"] if not m["roles"] and int(m["id"]) != owner]


def shard_of(guild_id: int, shards: int) -> int:
    return (guild_id >> 22) % shards


def cluster_of(guild_id: int, shards: int, clusters: int) -> int:
    """The worker serving a guild (shards are split into contiguous runs, as the launcher
    does)."""
    return shard_of(guild_id, shards) * clusters // shards


def place_on_shard(world: dict[str, Any], shard: int, shards: int) -> tuple[int, int]:
    """(a text channel, the guild's owner) of a guild `shard` serves."""
    for g in world["guilds"]:
        if shard_of(int(g["id"]), shards) == shard:
            return text_channels(g)[0], int(g["owner_id"])
    raise AssertionError(f"no guild on shard {shard}")


def new_prefix(kind: str = "e2e") -> str:
    """A Redis key prefix of the test's own."""
    return f"{kind}:{uuid.uuid4().hex[:8]}:"


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


async def arrange(control: str, method: str, what: str, body: dict[str, Any]) -> Any:
    """Change the sandbox's world through its control API (`/_sandbox/<what>`: a role, a
    member's roles, a message in the past, a user's DMs); fails on an error answer."""
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{control}/_sandbox/{what}", json=body) as resp,
    ):
        assert resp.status < 300, await resp.text()
        return await resp.json()


async def png_size(control: str, entry: dict[str, Any]) -> tuple[int, int]:
    """The size of the one PNG a reply (or an edit of one) `entry` attached, fetched from the
    sandbox's control API at `control`; asserts it is a PNG."""
    from PIL import Image

    data = entry.get("data")
    payload: dict[str, Any] = data if isinstance(data, dict) else entry
    [attachment] = payload["attachments"]
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{control}/_sandbox/attachments/{attachment['id']}") as resp,
    ):
        assert resp.status == 200
        png = await resp.read()
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG"
    return img.size


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

    async def identifies(self, shard: int | None = None) -> int:
        """How many IDENTIFYs the sandbox has taken: of `shard`, or of every shard."""
        async with self.http.get(f"{self.base}/_sandbox/stats") as resp:
            times = (await resp.json())["identify_times"]
        return sum(1 for t in times if shard is None or int(t["shard"]) == shard)


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
    prefix: str | None = None,
    hang_timeout: float = 20,
    wait_ready: bool = True,
    adjust: Callable[[WorkerConfig], WorkerConfig] | None = None,
) -> Supervisor:
    """Start the workers as `guildhouse run` would; unless `wait_ready` is False, return once
    every shard is READY. `adjust` changes each worker's config before it starts; `prefix` is
    the Redis key prefix (a new one when not given). The caller stops the supervisor
    (`running_cluster` does it)."""
    settings = load(
        {
            "SHARD_COUNT": str(shards),
            "CLUSTER_COUNT": str(clusters),
            "OWNER_IDS": str(owner_id),
            "REDIS_PREFIX": prefix or new_prefix(),
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
    if wait_ready:
        try:
            await until("the bot's shards all READY", sup.ready, within=90)
        except BaseException:
            await sup.stop()
            raise
    return sup


@asynccontextmanager
async def running_cluster(
    sandbox: SandboxProc, database_url: str, redis_url: str, **options: Any
) -> AsyncIterator[Supervisor]:
    """`start_cluster` for the block (same options), its workers stopped after it."""
    sup = await start_cluster(sandbox, database_url, redis_url, **options)
    try:
        yield sup
    finally:
        await sup.stop()
