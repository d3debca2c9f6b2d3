"""Per-guild XP settings: in Postgres (xp_settings, xp_role_rewards), cached in each worker,
invalidated over Redis pub/sub when an admin changes them (like bot/guild_settings.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

import asyncpg
import orjson
import redis.asyncio as aioredis

from bot.guild_cache import GuildCache
from bot.user_error import UserError
from ipc.client import Keys

log = logging.getLogger(__name__)

TTL = 300.0
MAX_MULTIPLIER = 10.0
MAX_XP = 1000
MAX_COOLDOWN = 86_400
MAX_OVERRIDES = 100
MAX_REWARDS = 50
ANNOUNCE_MODES = ("here", "channel", "dm", "off")


class XpSettingsError(UserError, ValueError):
    """A setting value is not acceptable; the message is safe to show the user."""


@dataclass(frozen=True)
class XpSettings:
    guild_id: int
    min_xp: int = 15
    max_xp: int = 25
    cooldown: int = 60
    announce: str = "here"
    announce_channel: int | None = None
    achievements_announce: str = "dm"
    channel_multipliers: dict[int, float] = field(default_factory=dict)
    role_multipliers: dict[int, float] = field(default_factory=dict)
    replace_rewards: bool = False
    rewards: dict[int, int] = field(default_factory=dict)  # level -> role id

    def with_changes(self, **changes: Any) -> XpSettings:
        return replace(self, **changes)

    def as_json(self) -> dict[str, Any]:
        return {
            "min_xp": self.min_xp,
            "max_xp": self.max_xp,
            "cooldown": self.cooldown,
            "announce": self.announce,
            "announce_channel": self.announce_channel,
            "achievements_announce": self.achievements_announce,
            "channel_multipliers": {str(k): v for k, v in sorted(self.channel_multipliers.items())},
            "role_multipliers": {str(k): v for k, v in sorted(self.role_multipliers.items())},
            "replace_rewards": self.replace_rewards,
            "rewards": {str(k): v for k, v in sorted(self.rewards.items())},
        }


def validate_rate(min_xp: int, max_xp: int) -> tuple[int, int]:
    if not 0 <= min_xp <= MAX_XP or not 0 <= max_xp <= MAX_XP:
        raise XpSettingsError(f"XP per message must be between 0 and {MAX_XP}.")
    if min_xp > max_xp:
        raise XpSettingsError(f"The minimum ({min_xp}) is above the maximum ({max_xp}).")
    return min_xp, max_xp


def validate_cooldown(seconds: int) -> int:
    if not 0 <= seconds <= MAX_COOLDOWN:
        raise XpSettingsError(f"The cooldown must be between 0 and {MAX_COOLDOWN} seconds.")
    return seconds


def parse_multiplier(text: str) -> float | None:
    """'1.5', 'x2', '2x' -> the multiplier; 'off' or 'noxp' -> 0; 'default' or 'reset' -> None
    (remove the override)."""
    value = text.strip().lower()
    if value in ("off", "noxp", "no-xp", "none", "0"):
        return 0.0
    if value in ("default", "reset", "1", "1.0"):
        return None
    value = value.removeprefix("x").removesuffix("x")
    try:
        mult = float(value)
    except ValueError:
        raise XpSettingsError(
            f"{text!r} is not a multiplier; expected a number such as 1.5, "
            "'off' for no XP, or 'default'"
        ) from None
    if not 0 <= mult <= MAX_MULTIPLIER:  # also refuses nan
        raise XpSettingsError(f"A multiplier must be between 0 and {MAX_MULTIPLIER:g}.")
    return mult if mult != 1 else None


def _floats(data: Any) -> dict[int, float]:
    if isinstance(data, str):  # a connection without the pool's json codec
        data = orjson.loads(data)
    return {int(k): float(v) for k, v in (data or {}).items()}


async def load(conn: asyncpg.Connection | asyncpg.Pool, guild_id: int) -> XpSettings:
    row = await conn.fetchrow(
        """
        SELECT min_xp, max_xp, cooldown_seconds, announce, announce_channel,
               achievements_announce, channel_multipliers, role_multipliers, replace_rewards
        FROM xp_settings WHERE guild_id = $1
        """,
        guild_id,
    )
    rewards = await conn.fetch(
        "SELECT level, role_id FROM xp_role_rewards WHERE guild_id = $1", guild_id
    )
    base = XpSettings(guild_id, rewards={r["level"]: r["role_id"] for r in rewards})
    if row is None:
        return base
    return base.with_changes(
        min_xp=row["min_xp"],
        max_xp=row["max_xp"],
        cooldown=row["cooldown_seconds"],
        announce=row["announce"],
        announce_channel=row["announce_channel"],
        achievements_announce=row["achievements_announce"],
        channel_multipliers=_floats(row["channel_multipliers"]),
        role_multipliers=_floats(row["role_multipliers"]),
        replace_rewards=row["replace_rewards"],
    )


async def save(conn: asyncpg.Connection, s: XpSettings) -> None:
    """Write `s` (settings and rewards) within the caller's transaction."""
    await conn.execute(
        """
        INSERT INTO xp_settings (guild_id, min_xp, max_xp, cooldown_seconds, announce,
            announce_channel, channel_multipliers, role_multipliers, replace_rewards,
            achievements_announce)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
        ON CONFLICT (guild_id) DO UPDATE SET min_xp = excluded.min_xp,
            max_xp = excluded.max_xp, cooldown_seconds = excluded.cooldown_seconds,
            announce = excluded.announce, announce_channel = excluded.announce_channel,
            channel_multipliers = excluded.channel_multipliers,
            role_multipliers = excluded.role_multipliers,
            replace_rewards = excluded.replace_rewards,
            achievements_announce = excluded.achievements_announce
        """,
        s.guild_id,
        s.min_xp,
        s.max_xp,
        s.cooldown,
        s.announce,
        s.announce_channel,
        {str(k): v for k, v in s.channel_multipliers.items()},
        {str(k): v for k, v in s.role_multipliers.items()},
        s.replace_rewards,
        s.achievements_announce,
    )
    await conn.execute("DELETE FROM xp_role_rewards WHERE guild_id = $1", s.guild_id)
    if s.rewards:
        await conn.executemany(
            "INSERT INTO xp_role_rewards (guild_id, level, role_id) VALUES ($1, $2, $3)",
            [(s.guild_id, lvl, role) for lvl, role in s.rewards.items()],
        )


class XpSettingsStore:
    """Per-guild XP settings, cached in each worker and invalidated across clusters."""

    def __init__(self, pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys) -> None:
        self.pool = pool
        self.cache: GuildCache[XpSettings] = GuildCache(
            redis, keys("events", "xp-settings"), self._load, what="XP settings", ttl=TTL
        )
        self.cached = self.cache.cached
        self.get = self.cache.get
        self.announce = self.cache.announce
        self.start = self.cache.start
        self.stop = self.cache.stop

    async def _load(self, guild_id: int) -> XpSettings:
        return await load(self.pool, guild_id)
