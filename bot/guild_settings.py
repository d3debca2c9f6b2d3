"""Per-guild settings: stored in Postgres, cached in each worker, invalidated over Redis.

An admin's change is written (with its audit row) in one transaction, then announced on a Redis
pub/sub channel; every worker of every cluster drops its cached copy, so the next message
anywhere sees the change. Cached entries also expire after `TTL` seconds and the whole cache is
dropped whenever the subscription (re)connects, so a lost announcement costs at most a little
staleness, never a wrong value forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

import asyncpg
import redis.asyncio as aioredis
import redis.exceptions

from ipc.client import Keys

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "!"
TTL = 300.0
MAX_PREFIX = 16
MAX_ROLES = 25


@dataclass(frozen=True)
class GuildSettings:
    guild_id: int
    prefix: str = DEFAULT_PREFIX
    mod_roles: frozenset[int] = frozenset()
    admin_roles: frozenset[int] = frozenset()
    log_channel: int | None = None
    disabled: frozenset[str] = frozenset()
    # Per-command throttle overrides: command -> {"command": "5/10s" | "off", "guild": ...}.
    throttles: dict[str, dict[str, str]] = field(default_factory=dict)
    # None: the bot's default (THROTTLE_EXEMPT_MODS).
    throttle_exempt_mods: bool | None = None

    def as_json(self) -> dict[str, Any]:
        """The JSON stored in guilds.settings (and shown as before/after in the audit log)."""
        return {
            "prefix": self.prefix,
            "mod_roles": sorted(self.mod_roles),
            "admin_roles": sorted(self.admin_roles),
            "log_channel": self.log_channel,
            "disabled": sorted(self.disabled),
            "throttles": {k: dict(v) for k, v in sorted(self.throttles.items())},
            "throttle_exempt_mods": self.throttle_exempt_mods,
        }

    @classmethod
    def from_row(cls, guild_id: int, prefix: str | None, data: dict[str, Any]) -> GuildSettings:
        return cls(
            guild_id=guild_id,
            prefix=prefix or DEFAULT_PREFIX,
            mod_roles=frozenset(int(r) for r in data.get("mod_roles", ())),
            admin_roles=frozenset(int(r) for r in data.get("admin_roles", ())),
            log_channel=data.get("log_channel"),
            disabled=frozenset(data.get("disabled", ())),
            throttles={
                str(k): {str(a): str(b) for a, b in v.items()}
                for k, v in (data.get("throttles") or {}).items()
                if isinstance(v, dict)
            },
            throttle_exempt_mods=data.get("throttle_exempt_mods"),
        )

    def with_changes(self, **changes: Any) -> GuildSettings:
        return replace(self, **changes)


class SettingsError(ValueError):
    """A setting value is not acceptable; the message is safe to show the user."""


def validate_prefix(prefix: str) -> str:
    prefix = prefix.strip()
    if not prefix:
        raise SettingsError("The prefix can't be empty.")
    if len(prefix) > MAX_PREFIX:
        raise SettingsError(f"The prefix can be at most {MAX_PREFIX} characters.")
    if any(c.isspace() for c in prefix) or "`" in prefix:
        raise SettingsError("The prefix can't contain spaces or backticks.")
    if prefix.startswith(("/", "@", "#", "<")):
        raise SettingsError("The prefix can't start with / @ # or <, which Discord uses.")
    return prefix


@dataclass
class _Entry:
    value: GuildSettings
    loaded: float = field(default_factory=time.monotonic)


class GuildSettingsStore:
    def __init__(self, pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys) -> None:
        self.pool = pool
        self.redis = redis
        self.channel = keys("events", "guild-settings")
        self._cache: dict[int, _Entry] = {}
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    def cached(self, guild_id: int) -> GuildSettings | None:
        """The settings if this worker has them cached and fresh (no I/O), else None."""
        entry = self._cache.get(guild_id)
        if entry is not None and time.monotonic() - entry.loaded < TTL:
            return entry.value
        return None

    async def get(self, guild_id: int) -> GuildSettings:
        entry = self._cache.get(guild_id)
        if entry is not None and time.monotonic() - entry.loaded < TTL:
            return entry.value
        row = await self.pool.fetchrow(
            "SELECT prefix, settings FROM guilds WHERE id = $1", guild_id
        )
        value = (
            GuildSettings.from_row(guild_id, row["prefix"], row["settings"])
            if row
            else GuildSettings(guild_id)
        )
        self._cache[guild_id] = _Entry(value)
        return value

    async def save(self, conn: asyncpg.Connection, new: GuildSettings) -> None:
        """Write within the caller's transaction; call `announce` after it commits."""
        data = new.as_json()
        prefix = data.pop("prefix")
        await conn.execute(
            """
            INSERT INTO guilds (id, prefix, settings) VALUES ($1, $2, $3)
            ON CONFLICT (id) DO UPDATE SET prefix = excluded.prefix, settings = excluded.settings
            """,
            new.guild_id,
            None if prefix == DEFAULT_PREFIX else prefix,
            data,
        )

    async def announce(self, guild_id: int) -> None:
        self._cache.pop(guild_id, None)
        try:
            await self.redis.publish(self.channel, str(guild_id))
        except redis.exceptions.RedisError:
            # Other workers pick the change up when their cached copy expires (TTL).
            log.warning("could not announce a settings change of guild %s", guild_id)

    def forget(self, guild_id: int) -> None:
        self._cache.pop(guild_id, None)

    # -- invalidation listener ---------------------------------------------------------------

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name="guild-settings-listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), 10)

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener

    async def _listen(self) -> None:
        delay = 0.5
        while True:
            try:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self.channel)
                    self._cache.clear()  # anything announced while we were away is stale
                    self._subscribed.set()
                    delay = 0.5
                    async for message in pubsub.listen():
                        if message and message.get("type") == "message":
                            with contextlib.suppress(ValueError):
                                self._cache.pop(int(message["data"]), None)
            except (redis.exceptions.RedisError, OSError):
                log.warning("guild settings subscription lost; retrying in %.1fs", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)
