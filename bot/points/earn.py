"""How points are earned and granted, on the ledger (bot/points/ledger.py): the daily claim,
chat, and an admin's give, take and set. Each is one ledger transaction with a key that makes
a repeat a no-op; each takes the caller's connection, so an admin's change and its audit row
commit together."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import asyncpg

from bot.points import ledger
from bot.points.settings import PointsSettings
from bot.user_error import UserError

MAX_GRANT = 1_000_000_000


def daily_amount(settings: PointsSettings, streak: int) -> int:
    """A claim's points: the base, plus the bonus for each day of the streak past the first,
    counted up to `streak_max` days."""
    return settings.daily_amount + settings.streak_bonus * (min(streak, settings.streak_max) - 1)


def next_streak(last_day: date | None, streak: int, today: date) -> int:
    return streak + 1 if last_day == today - timedelta(days=1) else 1


@dataclass(frozen=True)
class Claim:
    claimed: bool  # False: today's was claimed already
    amount: int
    streak: int
    balance: int


async def claim_daily(
    conn: asyncpg.Connection, settings: PointsSettings, user_id: int, today: date
) -> Claim:
    """Today's claim (a UTC day), once: a second claim the same day changes nothing."""
    guild_id = settings.guild_id
    account = ledger.member(user_id)
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT last_day, streak FROM points_daily WHERE guild_id = $1 AND user_id = $2 "
            "FOR UPDATE",
            guild_id,
            user_id,
        )
        last, streak = (row["last_day"], row["streak"]) if row else (None, 0)
        if last == today:
            return Claim(False, 0, streak, await ledger.balance(conn, guild_id, account))
        streak = next_streak(last, streak, today)
        amount = daily_amount(settings, streak)
        posted = await ledger.post(
            conn,
            guild_id=guild_id,
            key=f"daily:{user_id}:{today.isoformat()}",
            kind="daily",
            entries={ledger.MINT: -amount, account: amount},
            memo=f"daily, day {streak}",
        )
        if not posted.applied:  # another worker's claim of the same day won the race
            return Claim(False, 0, streak, await ledger.balance(conn, guild_id, account))
        await conn.execute(
            """
            INSERT INTO points_daily (guild_id, user_id, last_day, streak) VALUES ($1, $2, $3, $4)
            ON CONFLICT (guild_id, user_id)
            DO UPDATE SET last_day = excluded.last_day, streak = excluded.streak
            """,
            guild_id,
            user_id,
            today,
            streak,
        )
        return Claim(True, amount, streak, posted.balances.get(account, 0))


async def chat(
    pool: asyncpg.Pool, guild_id: int, message_id: int, user_id: int, amount: int
) -> ledger.Posted | None:
    """Points for a chat message, once per message id."""
    if amount <= 0:
        return None
    async with pool.acquire() as conn, conn.transaction():
        return await ledger.post(
            conn,
            guild_id=guild_id,
            key=f"chat:{message_id}",
            kind="chat",
            entries={ledger.MINT: -amount, ledger.member(user_id): amount},
        )


def check_amount(amount: int, *, allow_zero: bool = False) -> int:
    low = 0 if allow_zero else 1
    if not low <= amount <= MAX_GRANT:
        raise UserError(f"The amount must be from {low} to {MAX_GRANT:,}, not {amount:,}.")
    return amount


async def adjust(
    conn: asyncpg.Connection,
    *,
    guild_id: int,
    user_id: int,
    how: str,
    amount: int,
    key: str,
    actor_id: int,
) -> tuple[int, int]:
    """An admin's `give`, `take` or `set` on a member: (balance before, balance after).
    Given points come from the mint, taken ones go to the burn; `set` does whichever makes the
    balance `amount`. Taking more than the member has is refused, naming their balance."""
    account = ledger.member(user_id)
    await conn.execute(
        "INSERT INTO points_accounts (guild_id, account) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        guild_id,
        account,
    )
    before = int(
        await conn.fetchval(
            "SELECT balance FROM points_accounts WHERE guild_id = $1 AND account = $2 FOR UPDATE",
            guild_id,
            account,
        )
    )
    change = {"give": amount, "take": -amount, "set": amount - before}[how]
    if before + change < 0:
        raise UserError(f"<@{user_id}> has {before:,} points; you can't take {amount:,}.")
    source = ledger.MINT if change > 0 else ledger.BURN
    posted = await ledger.post(
        conn,
        guild_id=guild_id,
        key=key,
        kind=f"admin_{how}",
        entries={source: -change, account: change},
        actor_id=actor_id,
        memo=f"{how} {amount:,} by <@{actor_id}>",
    )
    if not posted.applied:
        raise UserError("That change was made already.")
    return before, before + change
