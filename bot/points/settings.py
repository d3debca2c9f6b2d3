"""Per-server settings of points and predictions (`points_settings`), cached in each worker
and invalidated over Redis like the guild settings (bot/guild_cache.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from bot.guild_cache import GuildCache
from bot.user_error import UserError
from ipc.client import Keys


@dataclass(frozen=True)
class PointsSettings:
    guild_id: int
    daily_amount: int = 100
    streak_bonus: int = 10
    streak_max: int = 7
    chat_points: int = 0
    min_bet: int = 1
    max_bet: int = 1_000_000
    max_stake: int = 1_000_000
    allow_switch: bool = False
    creator_role: int | None = None
    vote_enabled: bool = False
    vote_min: int = 2
    refund_hours: int = 120
    # Not stored here: the server's XP cooldown (xp_settings), which chat points share.
    chat_cooldown: int = 60

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("guild_id")
        out.pop("chat_cooldown")
        return out

    def with_changes(self, **changes: Any) -> PointsSettings:
        return replace(self, **changes)


# name -> (low, high) of the numeric settings an admin may change; booleans and the role apart.
LIMITS: dict[str, tuple[int, int]] = {
    "daily_amount": (0, 1_000_000),
    "streak_bonus": (0, 100_000),
    "streak_max": (1, 365),
    "chat_points": (0, 1000),
    "min_bet": (1, 1_000_000_000),
    "max_bet": (1, 1_000_000_000),
    "max_stake": (1, 1_000_000_000),
    "vote_min": (1, 1000),
    "refund_hours": (1, 8760),
}
FLAGS = ("allow_switch", "vote_enabled")
STORED = tuple(
    f.name for f in fields(PointsSettings) if f.name not in ("guild_id", "chat_cooldown")
)


def parse_change(current: PointsSettings, name: str, raw: str) -> PointsSettings:
    """The settings with `name` set to `raw`, or UserError naming what is wrong."""
    name = name.lower().replace("-", "_")
    raw = raw.strip()
    if name in LIMITS:
        low, high = LIMITS[name]
        try:
            value = int(raw.replace(",", "").replace("_", ""))
        except ValueError:
            raise UserError(f"`{name}` takes a whole number, not `{raw[:40]}`.") from None
        if not low <= value <= high:
            raise UserError(f"`{name}` must be from {low:,} to {high:,}, not {value:,}.")
        new = current.with_changes(**{name: value})
    elif name in FLAGS:
        if raw.lower() not in ("on", "off", "yes", "no", "true", "false"):
            raise UserError(f"`{name}` takes on or off, not `{raw[:40]}`.")
        new = current.with_changes(**{name: raw.lower() in ("on", "yes", "true")})
    else:
        known = ", ".join((*LIMITS, *FLAGS))
        raise UserError(f"There is no setting `{name[:40]}`. Settings: {known}.")
    if new.min_bet > new.max_bet:
        raise UserError(f"min_bet ({new.min_bet:,}) can't be above max_bet ({new.max_bet:,}).")
    return new


async def load(conn: asyncpg.Connection | asyncpg.Pool, guild_id: int) -> PointsSettings:
    row = await conn.fetchrow(
        f"""
        SELECT {", ".join(STORED)},
               (SELECT cooldown_seconds FROM xp_settings WHERE guild_id = $1) AS chat_cooldown
        FROM (SELECT 1) one LEFT JOIN points_settings ON guild_id = $1
        """,  # noqa: S608 - constant fragments only
        guild_id,
    )
    base = PointsSettings(guild_id)
    if row is None:
        return base
    values = {k: v for k, v in dict(row).items() if v is not None}
    if row["daily_amount"] is None:  # no row of ours: defaults, but the XP cooldown
        values = {"chat_cooldown": values["chat_cooldown"]} if "chat_cooldown" in values else {}
    return replace(base, **values)


async def save(conn: asyncpg.Connection, new: PointsSettings) -> None:
    data = new.as_json()
    cols = list(data)
    await conn.execute(
        f"""
        INSERT INTO points_settings (guild_id, {", ".join(cols)})
        VALUES ($1, {", ".join(f"${i + 2}" for i in range(len(cols)))})
        ON CONFLICT (guild_id) DO UPDATE SET
        {", ".join(f"{c} = excluded.{c}" for c in cols)}
        """,  # noqa: S608 - constant fragments only
        new.guild_id,
        *data.values(),
    )


class SettingsStore:
    def __init__(self, pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys) -> None:
        self.pool = pool
        self.cache: GuildCache[PointsSettings] = GuildCache(
            redis,
            keys("events", "points-settings"),
            lambda guild_id: load(pool, guild_id),
            what="points settings",
            ttl=300.0,
            fallback=PointsSettings,
        )
        self.get = self.cache.get
        self.cached = self.cache.cached
        self.announce = self.cache.announce
        self.start = self.cache.start
        self.stop = self.cache.stop
