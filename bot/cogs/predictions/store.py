"""Predictions in PostgreSQL: create, read, list, bet (settle.py closes, resolves, pays,
votes, voids and refunds).

A bet is one transaction: the ledger post from the member to the prediction's pool, keyed by the
interaction that placed it (a retry or a second delivery changes nothing), and the member's
stake. It holds the prediction's row FOR SHARE (many bets at once); closing and settling take it
FOR UPDATE, so a bet either commits before the close or finds it closed, and a bet past
`closes_at` is refused even before the clock has closed it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from bot.cogs.predictions import payout
from bot.points import ledger
from bot.points.settings import PointsSettings
from bot.user_error import UserError

OPEN, CLOSED, RESOLVING, RESOLVED, VOID, REFUNDED = (
    "open",
    "closed",
    "resolving",
    "resolved",
    "void",
    "refunded",
)
SETTLED = (RESOLVED, VOID, REFUNDED)
COLUMNS = (
    "id, guild_id, channel_id, message_id, creator_id, question, options, category, status, "
    "winner, created_at, closes_at, closed_at, settled_at, settled_by"
)
_NAMES = tuple(COLUMNS.split(", "))
P_COLUMNS = ", ".join("p." + c for c in _NAMES)


@dataclass(frozen=True)
class Prediction:
    id: int
    guild_id: int
    channel_id: int
    message_id: int | None
    creator_id: int
    question: str
    options: list[str]
    category: str | None
    status: str
    winner: int | None
    created_at: datetime
    closes_at: datetime
    closed_at: datetime | None
    settled_at: datetime | None
    settled_by: int | None

    @classmethod
    def of(cls, row: asyncpg.Record) -> Prediction:
        data = {k: row[k] for k in _NAMES}
        data["options"] = list(data["options"])
        return cls(**data)


@dataclass(frozen=True)
class Book:
    """A prediction with its bets."""

    prediction: Prediction
    stakes: list[payout.Stake]

    @property
    def pools(self) -> list[int]:
        return payout.totals(self.stakes, len(self.prediction.options))

    def bettors(self, option: int | None = None) -> int:
        return sum(1 for s in self.stakes if option is None or s.option == option)

    def stake_of(self, user_id: int) -> payout.Stake | None:
        return next((s for s in self.stakes if s.user_id == user_id), None)


class PredictionError(UserError):
    """Something about a prediction the user asked for is not possible; the message says why."""


# -- create and read -----------------------------------------------------------------------------


async def create(
    conn: asyncpg.Connection,
    *,
    guild_id: int,
    channel_id: int,
    creator_id: int,
    question: str,
    options: list[str],
    category: str | None,
    window_seconds: int,
) -> Prediction:
    row = await conn.fetchrow(
        f"""
        INSERT INTO predictions (guild_id, channel_id, creator_id, question, options, category,
                                 closes_at)
        VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))
        RETURNING {COLUMNS}
        """,  # noqa: S608 - constant fragments only
        guild_id,
        channel_id,
        creator_id,
        question,
        options,
        category,
        float(window_seconds),
    )
    assert row is not None
    return Prediction.of(row)


async def set_message(pool: asyncpg.Pool, prediction_id: int, message_id: int) -> None:
    await pool.execute(
        "UPDATE predictions SET message_id = $2 WHERE id = $1", prediction_id, message_id
    )


async def get(
    conn: asyncpg.Connection | asyncpg.Pool, guild_id: int, prediction_id: int
) -> Prediction:
    row = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM predictions WHERE id = $1 AND guild_id = $2",  # noqa: S608 - constant fragments only
        prediction_id,
        guild_id,
    )
    if row is None:
        raise PredictionError(f"There is no prediction #{prediction_id} in this server.")
    return Prediction.of(row)


async def stakes(conn: asyncpg.Connection | asyncpg.Pool, prediction_id: int) -> list[payout.Stake]:
    rows = await conn.fetch(
        """
        SELECT user_id, option, amount, row_number() OVER (ORDER BY first_at, user_id) AS n
        FROM prediction_bets WHERE prediction_id = $1 ORDER BY first_at, user_id
        """,
        prediction_id,
    )
    return [payout.Stake(r["user_id"], r["option"], int(r["amount"]), int(r["n"])) for r in rows]


async def book(conn: asyncpg.Connection | asyncpg.Pool, guild_id: int, prediction_id: int) -> Book:
    return Book(await get(conn, guild_id, prediction_id), await stakes(conn, prediction_id))


async def listing(
    pool: asyncpg.Pool,
    guild_id: int,
    *,
    which: str,
    user_id: int,
    limit: int = 200,
) -> list[tuple[Prediction, int, int]]:
    """[(prediction, pool, bettors)], newest first. `which`: open, closed, mine, all, or a
    category's name."""
    rows = await pool.fetch(
        f"""
        SELECT {P_COLUMNS}, coalesce(sum(b.amount), 0) AS pooled, count(b.user_id) AS bettors
        FROM predictions p LEFT JOIN prediction_bets b ON b.prediction_id = p.id
        WHERE p.guild_id = $1 AND CASE $4::text
            WHEN 'open' THEN p.status = 'open'
            WHEN 'closed' THEN p.status <> 'open'
            WHEN 'mine' THEN p.creator_id = $3 OR EXISTS (
                SELECT 1 FROM prediction_bets m WHERE m.prediction_id = p.id AND m.user_id = $3)
            WHEN 'all' THEN true
            ELSE lower(p.category) = lower($4) END
        GROUP BY p.id ORDER BY p.id DESC LIMIT $2
        """,  # noqa: S608 - constant fragments only
        guild_id,
        limit,
        user_id,
        which,
    )
    return [(Prediction.of(r), int(r["pooled"]), int(r["bettors"])) for r in rows]


async def member_history(
    pool: asyncpg.Pool, guild_id: int, user_id: int, limit: int = 200
) -> list[tuple[Prediction, payout.Stake, int | None]]:
    """A member's bets, newest first: (prediction, their stake, what it paid or None)."""
    rows = await pool.fetch(
        f"""
        SELECT {P_COLUMNS}, b.option AS b_option, b.amount AS b_amount, b.payout AS b_payout
        FROM prediction_bets b JOIN predictions p ON p.id = b.prediction_id
        WHERE p.guild_id = $1 AND b.user_id = $2
        ORDER BY p.id DESC LIMIT $3
        """,  # noqa: S608 - constant fragments only
        guild_id,
        user_id,
        limit,
    )
    out = []
    for r in rows:
        stake = payout.Stake(user_id, r["b_option"], int(r["b_amount"]))
        paid = None if r["b_payout"] is None else int(r["b_payout"])
        out.append((Prediction.of(r), stake, paid))
    return out


# -- betting -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placed:
    applied: bool  # False: this bet (its key) was placed before
    stake: payout.Stake  # the member's whole stake now
    balance: int
    prediction: Prediction
    pools: list[int]  # each option's pool now
    balances: dict[str, int]


async def bet(
    pool: asyncpg.Pool,
    settings: PointsSettings,
    *,
    prediction_id: int,
    user_id: int,
    option: int,
    amount: int,
    key: str,
) -> Placed:
    """Stake `amount` on `option`, once per `key` (the interaction's id)."""
    if not settings.min_bet <= amount <= settings.max_bet:
        raise PredictionError(
            f"A bet here is from {settings.min_bet:,} to {settings.max_bet:,} points, "
            f"not {amount:,}."
        )
    async with pool.acquire() as conn:
        try:
            async with conn.transaction():
                posted = await _place(
                    conn,
                    settings,
                    prediction_id=prediction_id,
                    user_id=user_id,
                    option=option,
                    amount=amount,
                    key=key,
                )
        except _Repeat:
            posted = None
        # Read back after the commit: the bet holds the pool's row for as short as it can.
        row = await conn.fetchrow(_AFTER_BET, prediction_id, user_id, ledger.member(user_id))
        assert row is not None
        stake = payout.Stake(user_id, row["my_option"], int(row["my_amount"] or 0))
        if row["my_option"] is None:  # refused before any stake of theirs
            stake = payout.Stake(user_id, option, 0)
        return Placed(
            applied=posted is not None,
            stake=stake,
            balance=int(row["balance"] or 0),
            prediction=Prediction.of(row),
            pools=[int(x) for x in row["pools"]],
            balances=posted.balances if posted else {},
        )


# What a bet's confirmation shows, in one round trip: the prediction, each option's pool, the
# member's stake and balance.
_AFTER_BET = f"""
    SELECT {P_COLUMNS},
        (SELECT array_agg(coalesce(t.total, 0) ORDER BY i)
         FROM generate_subscripts(p.options, 1) AS i
         LEFT JOIN (SELECT option, sum(amount) AS total FROM prediction_bets
                    WHERE prediction_id = p.id GROUP BY option) t ON t.option = i - 1) AS pools,
        b.option AS my_option, b.amount AS my_amount,
        (SELECT balance FROM points_accounts
         WHERE guild_id = p.guild_id AND account = $3) AS balance
    FROM predictions p
    LEFT JOIN prediction_bets b ON b.prediction_id = p.id AND b.user_id = $2
    WHERE p.id = $1
"""  # noqa: S608 - constant fragments only


class _Repeat(Exception):
    """The bet's key was posted meanwhile by another delivery of the same submission."""


async def _place(
    conn: asyncpg.Connection,
    settings: PointsSettings,
    *,
    prediction_id: int,
    user_id: int,
    option: int,
    amount: int,
    key: str,
) -> ledger.Posted:
    """The bet's transaction: checks, the stake, then the ledger post last (the pool's row,
    which every bet on this prediction needs, is locked last and held only to the commit)."""
    guild_id = settings.guild_id
    row = await conn.fetchrow(
        "SELECT status, closes_at <= now() AS due, cardinality(options) AS n, "
        "EXISTS (SELECT 1 FROM points_tx WHERE guild_id = $2 AND key = $3) AS seen "
        "FROM predictions WHERE id = $1 AND guild_id = $2 FOR SHARE",
        prediction_id,
        guild_id,
        f"bet:{key}",
    )
    if row is None:
        raise PredictionError(f"There is no prediction #{prediction_id} in this server.")
    if row["seen"]:
        raise _Repeat
    if row["status"] != OPEN or row["due"]:
        raise PredictionError(f"Betting on prediction #{prediction_id} is closed.")
    if not 0 <= option < row["n"]:
        raise PredictionError(f"Prediction #{prediction_id} has no option {option + 1}.")
    await _add_stake(
        conn,
        settings,
        prediction_id=prediction_id,
        user_id=user_id,
        option=option,
        amount=amount,
    )
    posted = await ledger.post(
        conn,
        guild_id=guild_id,
        key=f"bet:{key}",
        kind="bet",
        entries={ledger.member(user_id): -amount, ledger.pool(prediction_id): amount},
        memo=f"bet on #{prediction_id}",
    )
    if not posted.applied:
        raise _Repeat  # rolls the stake back
    return posted


async def _add_stake(
    conn: asyncpg.Connection,
    settings: PointsSettings,
    *,
    prediction_id: int,
    user_id: int,
    option: int,
    amount: int,
) -> None:
    row = await conn.fetchrow(
        """
        INSERT INTO prediction_bets AS b (prediction_id, user_id, option, amount)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (prediction_id, user_id) DO UPDATE
            SET amount = b.amount + excluded.amount, option = excluded.option
            WHERE b.option = excluded.option OR $5
        RETURNING amount
        """,
        prediction_id,
        user_id,
        option,
        amount,
        settings.allow_switch,
    )
    if row is None:
        raise PredictionError(
            "You already bet on another option, and this server doesn't allow switching; "
            "add to that bet instead."
        )
    if row["amount"] > settings.max_stake:
        raise PredictionError(
            f"That would make your stake {int(row['amount']):,}; the most one member may "
            f"stake on a prediction here is {settings.max_stake:,}."
        )


async def notify_set(pool: asyncpg.Pool, user_id: int, on: bool) -> None:
    if on:
        await pool.execute(
            "INSERT INTO prediction_notify (user_id) VALUES ($1) ON CONFLICT DO NOTHING", user_id
        )
    else:
        await pool.execute("DELETE FROM prediction_notify WHERE user_id = $1", user_id)


async def notified(pool: asyncpg.Pool, users: list[int]) -> list[int]:
    rows = await pool.fetch(
        "SELECT user_id FROM prediction_notify WHERE user_id = ANY($1::bigint[])", users
    )
    return [r["user_id"] for r in rows]
