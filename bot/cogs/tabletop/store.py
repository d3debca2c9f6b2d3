"""The tabletop feature's SQL: tables (GM and system per channel), combatants, macros, history.

Plain asyncpg with `$n` parameters. Limits are checked in the same statement or transaction as
the write, so two concurrent commands can't slip past them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import asyncpg

from bot.user_error import UserError

__all__ = [
    "MACRO_NAME",
    "Combatant",
    "Limits",
    "Macro",
    "StoreError",
    "Table",
    "add_combatant",
    "add_roll",
    "clear_combatants",
    "combatants",
    "find_combatant",
    "find_macro",
    "get_table",
    "history",
    "list_macros",
    "players",
    "remove_combatant",
    "remove_macro",
    "save_macro",
    "save_order",
    "set_gm",
    "set_system",
    "validate_macro_name",
]

MACRO_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


class StoreError(UserError, ValueError):
    """A write refused for a reason the user can fix; the message is safe to show. A
    `UserError`: the one command handler shows it as it is."""


@dataclass(frozen=True)
class Limits:
    combatants_per_table: int = 30
    macros_per_user_channel: int = 50
    macros_per_user: int = 200
    macros_per_guild: int = 100
    history_kept: int = 25  # per user per channel


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Table:
    channel_id: int
    guild_id: int | None
    gm_id: int | None
    system: str
    last_order: list[dict[str, Any]] | None


@dataclass(frozen=True)
class Combatant:
    name: str
    user_id: int | None
    is_npc: bool
    dice: int
    modifier: int


@dataclass(frozen=True)
class Macro:
    scope: str  # "channel" (a user's own) or "guild" (server-wide)
    name: str
    expression: str
    owner_id: int


def validate_macro_name(name: str) -> str:
    wanted = name.strip().lower()
    if not MACRO_NAME.match(wanted):
        raise StoreError(
            f"`{name[:40]}` is not a macro name: use 1-32 letters, digits, `-` or `_`, "
            "starting with a letter or digit."
        )
    return wanted


# --------------------------------------------------------------------------- tables


async def get_table(pool: asyncpg.Pool, channel_id: int) -> Table | None:
    row = await pool.fetchrow(
        "SELECT channel_id, guild_id, gm_id, system, last_order FROM tabletop_tables"
        " WHERE channel_id = $1",
        channel_id,
    )
    return Table(**dict(row)) if row else None


async def _ensure_table(conn: asyncpg.Connection, channel_id: int, guild_id: int | None) -> None:
    await conn.execute(
        "INSERT INTO tabletop_tables (channel_id, guild_id) VALUES ($1, $2)"
        " ON CONFLICT (channel_id) DO NOTHING",
        channel_id,
        guild_id,
    )


async def set_gm(
    pool: asyncpg.Pool, channel_id: int, guild_id: int | None, gm_id: int | None
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await _ensure_table(conn, channel_id, guild_id)
        await conn.execute(
            "UPDATE tabletop_tables SET gm_id = $2, updated_at = now() WHERE channel_id = $1",
            channel_id,
            gm_id,
        )


async def set_system(
    pool: asyncpg.Pool, channel_id: int, guild_id: int | None, system: str
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await _ensure_table(conn, channel_id, guild_id)
        await conn.execute(
            "UPDATE tabletop_tables SET system = $2, last_order = NULL, updated_at = now()"
            " WHERE channel_id = $1",
            channel_id,
            system,
        )


async def save_order(pool: asyncpg.Pool, channel_id: int, order: list[dict[str, Any]]) -> None:
    await pool.execute(
        "UPDATE tabletop_tables SET last_order = $2, updated_at = now() WHERE channel_id = $1",
        channel_id,
        order,
    )


# ----------------------------------------------------------------------- combatants


async def combatants(pool: asyncpg.Pool, channel_id: int) -> list[Combatant]:
    rows = await pool.fetch(
        "SELECT name, user_id, is_npc, dice, modifier FROM tabletop_combatants"
        " WHERE channel_id = $1 ORDER BY added_at, name",
        channel_id,
    )
    return [Combatant(**dict(r)) for r in rows]


async def players(pool: asyncpg.Pool, channel_id: int) -> list[int]:
    """The GM's player list of a channel: users with a (non-NPC) character at its table."""
    rows = await pool.fetch(
        "SELECT DISTINCT user_id FROM tabletop_combatants"
        " WHERE channel_id = $1 AND user_id IS NOT NULL AND NOT is_npc ORDER BY user_id",
        channel_id,
    )
    return [int(r["user_id"]) for r in rows]


async def add_combatant(
    pool: asyncpg.Pool,
    channel_id: int,
    guild_id: int | None,
    c: Combatant,
    *,
    replace: bool,
    limits: Limits = DEFAULT_LIMITS,
) -> bool:
    """Add (or, with `replace`, update) a combatant. True if it was new.

    A name belongs to whoever added it: `replace` updates only a combatant with the same owner
    (the caller checks that the GM may replace anyone's)."""
    async with pool.acquire() as conn, conn.transaction():
        await _ensure_table(conn, channel_id, guild_id)
        # Lock the table row: the count and the insert below are one decision.
        await conn.execute(
            "SELECT 1 FROM tabletop_tables WHERE channel_id = $1 FOR UPDATE", channel_id
        )
        existing = await conn.fetchrow(
            "SELECT user_id, is_npc FROM tabletop_combatants WHERE channel_id = $1 AND name = $2",
            channel_id,
            c.name,
        )
        if existing is not None and not replace:
            raise StoreError(f"There is already a **{c.name}** at this table.")
        if existing is None:
            count = await conn.fetchval(
                "SELECT count(*) FROM tabletop_combatants WHERE channel_id = $1", channel_id
            )
            if count >= limits.combatants_per_table:
                raise StoreError(
                    f"This table is full ({limits.combatants_per_table} combatants); "
                    "remove some first."
                )
        await conn.execute(
            """
            INSERT INTO tabletop_combatants (channel_id, name, user_id, is_npc, dice, modifier)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (channel_id, name) DO UPDATE SET user_id = EXCLUDED.user_id,
                is_npc = EXCLUDED.is_npc, dice = EXCLUDED.dice, modifier = EXCLUDED.modifier
            """,
            channel_id,
            c.name,
            c.user_id,
            c.is_npc,
            c.dice,
            c.modifier,
        )
        return bool(existing is None)


async def find_combatant(pool: asyncpg.Pool, channel_id: int, name: str) -> Combatant | None:
    row = await pool.fetchrow(
        "SELECT name, user_id, is_npc, dice, modifier FROM tabletop_combatants"
        " WHERE channel_id = $1 AND lower(name) = lower($2)",
        channel_id,
        name,
    )
    return Combatant(**dict(row)) if row else None


async def remove_combatant(pool: asyncpg.Pool, channel_id: int, name: str) -> bool:
    result = await pool.execute(
        "DELETE FROM tabletop_combatants WHERE channel_id = $1 AND name = $2", channel_id, name
    )
    return str(result).endswith(" 1")


async def clear_combatants(pool: asyncpg.Pool, channel_id: int, *, npcs_only: bool) -> int:
    async with pool.acquire() as conn, conn.transaction():
        result = await conn.execute(
            "DELETE FROM tabletop_combatants WHERE channel_id = $1 AND ($2 = false OR is_npc)",
            channel_id,
            npcs_only,
        )
        await conn.execute(
            "UPDATE tabletop_tables SET last_order = NULL, updated_at = now()"
            " WHERE channel_id = $1",
            channel_id,
        )
    return int(result.split()[-1])


# --------------------------------------------------------------------------- macros


async def save_macro(
    pool: asyncpg.Pool,
    *,
    scope: str,
    scope_id: int,
    owner_id: int,
    name: str,
    expression: str,
    limits: Limits = DEFAULT_LIMITS,
) -> bool:
    """Save a macro (replacing one of the same name). True if it is new."""
    async with pool.acquire() as conn, conn.transaction():
        # Serialise saves of one owner (or one server's macros) so the limits hold.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            f"macros:{scope}:{scope_id if scope == 'guild' else owner_id}",
        )
        exists = await conn.fetchval(
            "SELECT true FROM dice_macros WHERE scope = $1 AND scope_id = $2 AND owner_id = $3"
            " AND name = $4",
            scope,
            scope_id,
            owner_id,
            name,
        )
        if not exists:
            if scope == "guild":
                count = await conn.fetchval(
                    "SELECT count(*) FROM dice_macros WHERE scope = 'guild' AND scope_id = $1",
                    scope_id,
                )
                if count >= limits.macros_per_guild:
                    raise StoreError(
                        f"This server has {limits.macros_per_guild} macros, the most it may "
                        "have; remove one first."
                    )
            else:
                here, everywhere = await conn.fetchrow(
                    """
                    SELECT count(*) FILTER (WHERE scope_id = $2), count(*)
                    FROM dice_macros WHERE scope = 'channel' AND owner_id = $1
                    """,
                    owner_id,
                    scope_id,
                )
                if here >= limits.macros_per_user_channel:
                    raise StoreError(
                        f"You have {limits.macros_per_user_channel} macros in this channel, the "
                        "most you may have; remove one first."
                    )
                if everywhere >= limits.macros_per_user:
                    raise StoreError(
                        f"You have {limits.macros_per_user} macros in all, the most you may "
                        "have; remove one first."
                    )
        await conn.execute(
            """
            INSERT INTO dice_macros (scope, scope_id, owner_id, name, expression)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (scope, scope_id, owner_id, name)
            DO UPDATE SET expression = EXCLUDED.expression, updated_at = now()
            """,
            scope,
            scope_id,
            owner_id,
            name,
            expression,
        )
        return not bool(exists)


async def find_macro(
    pool: asyncpg.Pool, *, channel_id: int, guild_id: int | None, user_id: int, name: str
) -> Macro | None:
    """The user's own macro in this channel, else the server's macro of that name."""
    row = await pool.fetchrow(
        """
        SELECT scope, name, expression, owner_id FROM dice_macros
        WHERE name = $4 AND ((scope = 'channel' AND scope_id = $1 AND owner_id = $3)
                          OR (scope = 'guild' AND scope_id = $2))
        ORDER BY scope = 'channel' DESC
        LIMIT 1
        """,
        channel_id,
        guild_id if guild_id is not None else -1,
        user_id,
        name,
    )
    return Macro(**dict(row)) if row else None


async def list_macros(
    pool: asyncpg.Pool, *, channel_id: int, guild_id: int | None, user_id: int
) -> list[Macro]:
    rows = await pool.fetch(
        """
        SELECT scope, name, expression, owner_id FROM dice_macros
        WHERE (scope = 'channel' AND scope_id = $1 AND owner_id = $3)
           OR (scope = 'guild' AND scope_id = $2)
        ORDER BY scope = 'guild', name
        """,
        channel_id,
        guild_id if guild_id is not None else -1,
        user_id,
    )
    return [Macro(**dict(r)) for r in rows]


async def remove_macro(
    pool: asyncpg.Pool, *, scope: str, scope_id: int, owner_id: int, name: str
) -> bool:
    result = await pool.execute(
        "DELETE FROM dice_macros WHERE scope = $1 AND scope_id = $2 AND owner_id = $3"
        " AND name = $4",
        scope,
        scope_id,
        owner_id,
        name,
    )
    return str(result).endswith(" 1")


# -------------------------------------------------------------------------- history


async def add_roll(
    pool: asyncpg.Pool,
    *,
    channel_id: int,
    user_id: int,
    guild_id: int | None,
    expression: str,
    summary: str,
    limits: Limits = DEFAULT_LIMITS,
) -> None:
    """Record a roll and prune the user's history in this channel to the newest few."""
    await pool.execute(
        """
        WITH added AS (
            INSERT INTO roll_history (channel_id, user_id, guild_id, expression, summary)
            VALUES ($1, $2, $3, $4, $5) RETURNING id
        )
        DELETE FROM roll_history WHERE id IN (
            SELECT id FROM roll_history WHERE channel_id = $1 AND user_id = $2
            ORDER BY id DESC OFFSET $6
        )
        """,
        channel_id,
        user_id,
        guild_id,
        expression,
        summary,
        # The new row isn't visible to the DELETE (one snapshot): keep one fewer old ones.
        limits.history_kept - 1,
    )


async def history(
    pool: asyncpg.Pool, *, channel_id: int, user_id: int, limit: int = 10
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch(
        "SELECT expression, summary, created_at FROM roll_history"
        " WHERE channel_id = $1 AND user_id = $2 ORDER BY id DESC LIMIT $3",
        channel_id,
        user_id,
        limit,
    )
    return rows
