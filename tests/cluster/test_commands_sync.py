"""`guildhouse commands sync` against a Discord-compatible endpoint given by URL."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from sandbox import Sandbox, SandboxConfig

pytestmark = pytest.mark.timeout(120)


async def _sync(
    sb: Sandbox, data_dir: Path, *args: str, token: str | None = None
) -> tuple[int, str]:
    # Syncing needs Discord's REST API only: no DATABASE_URL, no REDIS_URL, and nothing is
    # started in their place (the data directory stays untouched).
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        DISCORD_TOKEN=token or sb.token,
        DISCORD_API_URL=sb.api_url,
        DISCORD_GATEWAY_URL=sb.gateway_url,
        DATA_DIR=str(data_dir),
        LOG_FORMAT="json",
        LOG_LEVEL="WARNING",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cluster.cli",
        "commands",
        "sync",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_sync_global_and_guild(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    async with Sandbox(SandboxConfig(guilds=2, members=4)) as sb:
        code, out = await _sync(sb, data_dir)
        assert code == 0, out
        names = {c["name"] for c in sb.rest.commands[None].values()}
        assert {"help", "ping", "about", "settings", "audit"} <= names
        assert "sync" not in names  # prefix-only owner command
        assert "synced" in out and "global" in out
        # Nothing tried to reach Redis or PostgreSQL (an outage warning would say so).
        assert "unreachable" not in out, out
        guild_id = next(iter(sb.world.guilds))
        code, out = await _sync(sb, data_dir, "--guild", str(guild_id))
        assert code == 0, out
        assert {c["name"] for c in sb.rest.commands[guild_id].values()} == names
        # No gateway connection was made, and no server started: syncing is REST only.
        assert sb.stats()["connections"] == 0
        assert not data_dir.exists()


async def test_sync_with_a_bad_token_fails_clearly(tmp_path: Path) -> None:
    async with Sandbox(SandboxConfig(guilds=1, members=3)) as sb:
        old = sb.token
        sb.world.token = "MTIz.abcdef." + "x" * 27  # the bot's token was reset
        code, out = await _sync(sb, tmp_path, token=old)
        assert code == 1 and "sync failed" in out
