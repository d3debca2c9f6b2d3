"""Per-guild settings: stored in Postgres, cached in each worker, invalidated over Redis.

An admin's change is written (with its audit row) in one transaction, then announced on a Redis
pub/sub channel; every worker of every cluster drops its cached copy, so the next message
anywhere sees the change. Cached entries also expire after `TTL` seconds and the whole cache is
dropped whenever the subscription (re)connects, so a lost announcement costs at most a little
staleness, never a wrong value forever.

While PostgreSQL is unreachable, a guild whose settings this worker has cached keeps them; one
it hasn't loaded yet gets the defaults until the database is back (the `!` prefix, no disabled
commands, no configured roles or throttle overrides). A worker that can't read a guild's prefix
would otherwise ignore every message there, commands included, and could not even answer
that the database is down.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from bot.guild_cache import GuildCache
from bot.user_error import UserError
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


class SettingsError(UserError, ValueError):
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


class GuildSettingsStore:
    def __init__(self, pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys) -> None:
        self.pool = pool
        self.cache: GuildCache[GuildSettings] = GuildCache(
            redis,
            keys("events", "guild-settings"),
            self._load,
            what="guild settings",
            ttl=TTL,
            fallback=GuildSettings,
        )
        self.cached = self.cache.cached
        self.get = self.cache.get
        self.announce = self.cache.announce
        self.forget = self.cache.forget
        self.start = self.cache.start
        self.stop = self.cache.stop

    async def _load(self, guild_id: int) -> GuildSettings:
        row = await self.pool.fetchrow(
            "SELECT prefix, settings FROM guilds WHERE id = $1", guild_id
        )
        if row is None:
            return GuildSettings(guild_id)
        return GuildSettings.from_row(guild_id, row["prefix"], row["settings"])

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
