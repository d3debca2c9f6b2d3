"""`guildhouse chat`: type as a user in a sandbox channel and read what the bot answers.

It talks to the sandbox's control API (`/_sandbox/...`), found in DATA_DIR/sandbox.json, which
`guildhouse run` writes when it starts a sandbox, or given with --url.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil

SANDBOX_FILE = "sandbox.json"


class ChatError(RuntimeError):
    pass


def write_sandbox_file(path: Path, info: dict[str, Any]) -> None:
    """Publish a running sandbox's addresses (with `owner_pid`, the launcher that runs it)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps(info))
    tmp.replace(path)


def remove_sandbox_file(path: Path) -> None:
    """Remove the file only if this process wrote it: another launcher's sandbox stays found."""
    with contextlib.suppress(OSError, orjson.JSONDecodeError, TypeError, ValueError):
        if int(orjson.loads(path.read_bytes()).get("owner_pid", 0)) == os.getpid():
            path.unlink(missing_ok=True)


def running_sandbox(data_dir: Path) -> dict[str, Any]:
    """The sandbox a running launcher started under DATA_DIR; ChatError if there is none."""
    path = data_dir / SANDBOX_FILE
    hint = (
        "start `guildhouse run` without DISCORD_TOKEN first, or pass --url of a sandbox's "
        "control API"
    )
    try:
        info = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        raise ChatError(f"no sandbox is running ({path} is missing): {hint}") from None
    owner = info.get("owner_pid") if isinstance(info, dict) else None
    if not isinstance(owner, int) or not psutil.pid_exists(owner):
        raise ChatError(f"no sandbox is running (the launcher that wrote {path} is gone): {hint}")
    return dict(info)


def find_control_url(data_dir: Path, url: str | None) -> str:
    if url:
        return url.rstrip("/")
    return str(running_sandbox(data_dir)["control_url"]).rstrip("/")


def render(entry: dict[str, Any]) -> str:
    """One line (or a few) for something the bot sent."""
    parts: list[str] = []
    if entry.get("content"):
        parts.append(str(entry["content"]))
    for embed in entry.get("embeds") or []:
        title = embed.get("title")
        if title:
            parts.append(f"[{title}]")
        if embed.get("description"):
            parts.append(str(embed["description"]))
        for field in embed.get("fields") or []:
            parts.append(f"  {field.get('name')}: {field.get('value')}")
        footer = (embed.get("footer") or {}).get("text")
        if footer:
            parts.append(f"  ({footer})")
    kind = entry.get("kind") or entry.get("type") or "message"
    tag = "bot" if kind in ("message", 0, "MESSAGE_CREATE") else f"bot ({kind})"
    body = "\n".join(parts) if parts else "(empty)"
    return f"{tag}> {body}"


async def _pick_defaults(
    http: aiohttp.ClientSession, base: str, channel: int | None, user: int | None
) -> tuple[int, int]:
    async with http.get(f"{base}/_sandbox/world") as resp:
        world = await resp.json()
    guilds = world.get("guilds") or []
    if not guilds:
        raise ChatError("the sandbox has no guilds")
    guild = guilds[0]
    if channel is None:
        for g in guilds:
            texts = [c for c in g.get("channels", []) if c.get("type", 0) == 0]
            if texts:
                guild, channel = g, int(texts[0]["id"])
                break
    if channel is None:
        raise ChatError("no text channel found; pass --channel")
    if user is None:
        members = [
            int(m) if not isinstance(m, dict) else int(m.get("id") or m.get("user_id") or 0)
            for m in guild.get("member_ids", guild.get("members", []))
        ]
        bot_id = int((world.get("bot") or world.get("bot_user") or {}).get("id") or 0)
        humans = [m for m in members if m and m != bot_id]
        if not humans:
            raise ChatError("no member to speak as; pass --user")
        user = humans[0]
    return channel, user


async def chat(base: str, channel: int | None, user: int | None) -> int:
    timeout = aiohttp.ClientTimeout(total=None, sock_read=40)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        channel_id, user_id = await _pick_defaults(http, base, channel, user)
        print(f"chatting in channel {channel_id} as user {user_id}; Ctrl-D to leave")
        after = "0"

        async def follow() -> None:
            nonlocal after
            while True:
                params = {"channel_id": str(channel_id), "after": after, "wait": "30"}
                async with http.get(f"{base}/_sandbox/outbox", params=params) as resp:
                    data = await resp.json()
                entries = data if isinstance(data, list) else data.get("items", [])
                for entry in entries:
                    print(render(entry), flush=True)
                    after = str(entry.get("seq", entry.get("id", after)))

        follower = asyncio.create_task(follow())
        loop = asyncio.get_running_loop()
        try:
            while line := await loop.run_in_executor(None, sys.stdin.readline):
                text = line.rstrip("\n")
                if not text:
                    continue
                body = {"channel_id": str(channel_id), "author_id": str(user_id), "content": text}
                async with http.post(f"{base}/_sandbox/messages", json=body) as resp:
                    if resp.status >= 400:
                        print(f"sandbox refused the message: {await resp.text()}")
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                await follower
    return 0
