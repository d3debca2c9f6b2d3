"""Predictions in PostgreSQL: create, bet, close, vote, resolve and pay, void and refund.

Every step that moves points is one transaction with a ledger post keyed by what it is (the
bet's interaction id, `resolve:<id>`, `refund:<id>`), and every change of a prediction's state
is a conditional UPDATE (`WHERE status = ...`), so each step happens once however many workers
try it at the same moment, and a killed worker's transaction leaves nothing behind.

Locking: a bet holds the prediction's row FOR SHARE while it posts (many bets at once), closing
and settling take it FOR UPDATE, so a bet either commits before the close or sees it closed.
Resolution is two steps: the outcome is recorded (`resolving`), then the payout, one
transaction, moves the whole pool and marks the prediction `resolved`; a worker killed between
the two leaves a `resolving` row that the next round of any worker's clock pays
(`pay_pending`), once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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
_P_COLUMNS = ", ".join("p." + c for c in _NAMES)


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
        SELECT {_P_COLUMNS}, coalesce(sum(b.amount), 0) AS pooled, count(b.user_id) AS bettors
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
        SELECT {_P_COLUMNS}, b.option AS b_option, b.amount AS b_amount, b.payout AS b_payout
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
    stake: payout.Stake
    balance: int
    book: Book
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
    guild_id = settings.guild_id
    if not settings.min_bet <= amount <= settings.max_bet:
        raise PredictionError(
            f"A bet here is from {settings.min_bet:,} to {settings.max_bet:,} points, "
            f"not {amount:,}."
        )
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT status, closes_at <= now() AS due, cardinality(options) AS n "
            "FROM predictions WHERE id = $1 AND guild_id = $2 FOR SHARE",
            prediction_id,
            guild_id,
        )
        if row is None:
            raise PredictionError(f"There is no prediction #{prediction_id} in this server.")
        if row["status"] != OPEN or row["due"]:
            raise PredictionError(f"Betting on prediction #{prediction_id} is closed.")
        if not 0 <= option < row["n"]:
            raise PredictionError(f"Prediction #{prediction_id} has no option {option + 1}.")
        posted = await ledger.post(
            conn,
            guild_id=guild_id,
            key=f"bet:{key}",
            kind="bet",
            entries={ledger.member(user_id): -amount, ledger.pool(prediction_id): amount},
            memo=f"bet on #{prediction_id}",
        )
        if posted.applied:
            await _add_stake(
                conn,
                settings,
                prediction_id=prediction_id,
                user_id=user_id,
                option=option,
                amount=amount,
            )
        current = await book(conn, guild_id, prediction_id)
        stake = current.stake_of(user_id) or payout.Stake(user_id, option, 0)
        balance = await ledger.balance(conn, guild_id, ledger.member(user_id))
        return Placed(posted.applied, stake, balance, current, posted.balances)


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


# -- closing and settling ------------------------------------------------------------------------


async def close_due(pool: asyncpg.Pool, limit: int = 20) -> list[Prediction]:
    """Lock betting on predictions whose window has ended; each is returned by exactly one
    caller, whichever worker it runs on."""
    rows = await pool.fetch(
        f"""
        UPDATE predictions SET status = 'closed', closed_at = now()
        WHERE id IN (SELECT id FROM predictions WHERE status = 'open' AND closes_at <= now()
                     ORDER BY closes_at LIMIT $1 FOR UPDATE SKIP LOCKED)
          AND status = 'open'
        RETURNING {COLUMNS}
        """,  # noqa: S608 - constant fragments only
        limit,
    )
    return [Prediction.of(r) for r in rows]


async def choose(
    pool: asyncpg.Pool, guild_id: int, prediction_id: int, winner: int, actor_id: int
) -> Prediction:
    """Record the outcome (the first step of a resolution); pay it with `pay`."""
    async with pool.acquire() as conn, conn.transaction():
        current = await _locked(conn, guild_id, prediction_id)
        if current.status not in (OPEN, CLOSED):
            raise PredictionError(f"Prediction #{prediction_id} is {current.status} already.")
        if not 0 <= winner < len(current.options):
            raise PredictionError(f"Prediction #{prediction_id} has no option {winner + 1}.")
        row = await conn.fetchrow(
            f"""
            UPDATE predictions SET status = 'resolving', winner = $2, settled_by = $3,
                   closed_at = coalesce(closed_at, now())
            WHERE id = $1 RETURNING {COLUMNS}
            """,  # noqa: S608 - constant fragments only
            prediction_id,
            winner,
            actor_id,
        )
        assert row is not None
        return Prediction.of(row)


Hook = Callable[[str], Awaitable[None]]


async def _no_hook(_: str) -> None:
    return None


async def pay(
    pool: asyncpg.Pool, prediction_id: int, *, hook: Hook = _no_hook
) -> tuple[Prediction, dict[int, int]] | None:
    """Pay a `resolving` prediction, in one transaction: the ledger post, each bet's payout,
    the status. None if it is not `resolving` (paid already, by this worker or another).
    `hook` is called between steps (tests kill the process there)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"SELECT {COLUMNS} FROM predictions WHERE id = $1 AND status = 'resolving' FOR UPDATE",  # noqa: S608 - constant fragments only
            prediction_id,
        )
        if row is None:
            return None
        current = Prediction.of(row)
        assert current.winner is not None
        bets = await stakes(conn, prediction_id)
        paid = payout.payouts(bets, current.winner)
        await _move_pool(conn, current, paid, "resolve")
        await hook("posted")
        await _record_payouts(conn, prediction_id, paid)
        await hook("recorded")
        settled = await _settle(conn, prediction_id, RESOLVED, current.settled_by)
        return settled, paid


async def pay_pending(
    pool: asyncpg.Pool, limit: int = 20
) -> list[tuple[Prediction, dict[int, int]]]:
    """Pay every `resolving` prediction left by a worker that stopped between the steps."""
    ids = await pool.fetch(
        "SELECT id FROM predictions WHERE status = 'resolving' ORDER BY id LIMIT $1", limit
    )
    out = []
    for r in ids:
        done = await pay(pool, r["id"])
        if done is not None:
            out.append(done)
    return out


async def void(
    pool: asyncpg.Pool, guild_id: int, prediction_id: int, actor_id: int
) -> tuple[Prediction, dict[int, int]]:
    """Cancel a prediction that is not settled: every stake back, once."""
    async with pool.acquire() as conn, conn.transaction():
        current = await _locked(conn, guild_id, prediction_id)
        if current.status not in (OPEN, CLOSED):
            raise PredictionError(f"Prediction #{prediction_id} is {current.status} already.")
        return await _refund(conn, current, VOID, actor_id)


async def refund_due(
    pool: asyncpg.Pool, limit: int = 20
) -> list[tuple[Prediction, dict[int, int]]]:
    """Refund closed predictions nobody resolved within their server's `refund_hours`; each
    exactly once, whichever worker gets there first."""
    out: list[tuple[Prediction, dict[int, int]]] = []
    async with pool.acquire() as conn:
        while len(out) < limit:
            async with conn.transaction():
                row = await conn.fetchrow(
                    f"""
                    SELECT {_P_COLUMNS}
                    FROM predictions p LEFT JOIN points_settings s ON s.guild_id = p.guild_id
                    WHERE p.status = 'closed'
                      AND p.closed_at + make_interval(hours => coalesce(s.refund_hours, 120))
                          <= now()
                    ORDER BY p.closed_at LIMIT 1 FOR UPDATE OF p SKIP LOCKED
                    """  # noqa: S608 - constant fragments only
                )
                if row is None:
                    break
                current = Prediction.of(row)
                out.append(await _refund(conn, current, REFUNDED, None))
    return out


async def _refund(
    conn: asyncpg.Connection, current: Prediction, status: str, actor_id: int | None
) -> tuple[Prediction, dict[int, int]]:
    bets = await stakes(conn, current.id)
    back = payout.refunds(bets)
    await _move_pool(conn, current, back, "refund")
    await _record_payouts(conn, current.id, back)
    return await _settle(conn, current.id, status, actor_id), back


async def _locked(conn: asyncpg.Connection, guild_id: int, prediction_id: int) -> Prediction:
    row = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM predictions WHERE id = $1 AND guild_id = $2 FOR UPDATE",  # noqa: S608 - constant fragments only
        prediction_id,
        guild_id,
    )
    if row is None:
        raise PredictionError(f"There is no prediction #{prediction_id} in this server.")
    return Prediction.of(row)


async def _move_pool(
    conn: asyncpg.Connection, current: Prediction, paid: dict[int, int], kind: str
) -> None:
    entries = {ledger.member(user): amount for user, amount in paid.items() if amount}
    entries[ledger.pool(current.id)] = -sum(entries.values())
    await ledger.post(
        conn,
        guild_id=current.guild_id,
        key=f"{kind}:{current.id}",
        kind=kind,
        entries=entries,
        memo=f"{kind} of #{current.id}",
    )


async def _record_payouts(
    conn: asyncpg.Connection, prediction_id: int, paid: dict[int, int]
) -> None:
    users = list(paid)
    await conn.execute(
        """
        UPDATE prediction_bets b SET payout = t.paid
        FROM unnest($2::bigint[], $3::bigint[]) AS t(user_id, paid)
        WHERE b.prediction_id = $1 AND b.user_id = t.user_id
        """,
        prediction_id,
        users,
        [paid[u] for u in users],
    )


async def _settle(
    conn: asyncpg.Connection, prediction_id: int, status: str, actor_id: int | None
) -> Prediction:
    row = await conn.fetchrow(
        f"""
        UPDATE predictions SET status = $2, settled_at = now(),
               settled_by = coalesce($3, settled_by), closed_at = coalesce(closed_at, now())
        WHERE id = $1 RETURNING {COLUMNS}
        """,  # noqa: S608 - constant fragments only
        prediction_id,
        status,
        actor_id,
    )
    assert row is not None
    return Prediction.of(row)


# -- voting ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Vote:
    counts: list[int]
    decided: Prediction | None  # set when this vote decided the outcome


async def vote(
    pool: asyncpg.Pool, settings: PointsSettings, prediction_id: int, user_id: int, option: int
) -> Vote:
    """A bettor's vote on the outcome of a closed prediction. The outcome is decided once at
    least `vote_min` votes are in and one option has more than half of them."""
    if not settings.vote_enabled:
        raise PredictionError("Voting on outcomes is off in this server; a moderator resolves.")
    async with pool.acquire() as conn, conn.transaction():
        current = await _locked(conn, settings.guild_id, prediction_id)
        if current.status != CLOSED:
            state = "still open for bets" if current.status == OPEN else current.status
            raise PredictionError(f"Prediction #{prediction_id} is {state}; no vote now.")
        if not 0 <= option < len(current.options):
            raise PredictionError(f"Prediction #{prediction_id} has no option {option + 1}.")
        if not await conn.fetchval(
            "SELECT 1 FROM prediction_bets WHERE prediction_id = $1 AND user_id = $2",
            prediction_id,
            user_id,
        ):
            raise PredictionError("Only members who bet on it can vote on its outcome.")
        await conn.execute(
            """
            INSERT INTO prediction_votes (prediction_id, user_id, option) VALUES ($1, $2, $3)
            ON CONFLICT (prediction_id, user_id) DO UPDATE SET option = excluded.option
            """,
            prediction_id,
            user_id,
            option,
        )
        counts = [0] * len(current.options)
        for r in await conn.fetch(
            "SELECT option, count(*) AS n FROM prediction_votes WHERE prediction_id = $1 "
            "GROUP BY option",
            prediction_id,
        ):
            counts[r["option"]] = int(r["n"])
        total, best = sum(counts), max(range(len(counts)), key=counts.__getitem__)
        if total < settings.vote_min or counts[best] * 2 <= total:
            return Vote(counts, None)
        row = await conn.fetchrow(
            f"UPDATE predictions SET status = 'resolving', winner = $2 WHERE id = $1 "  # noqa: S608 - constant fragments only
            f"RETURNING {COLUMNS}",
            prediction_id,
            best,
        )
        assert row is not None
        return Vote(counts, Prediction.of(row))


# -- announcements -------------------------------------------------------------------------------


async def claim_announcement(pool: asyncpg.Pool, prediction_id: int) -> bool:
    """Whether this caller should announce a settled prediction's result (once)."""
    return bool(
        await pool.fetchval(
            "UPDATE predictions SET announced = true WHERE id = $1 AND announced = false "
            "AND status IN ('resolved', 'void', 'refunded') RETURNING true",
            prediction_id,
        )
    )


async def unannounced(pool: asyncpg.Pool, limit: int = 20) -> list[int]:
    rows = await pool.fetch(
        "SELECT id FROM predictions WHERE announced = false "
        "AND status IN ('resolved', 'void', 'refunded') ORDER BY id LIMIT $1",
        limit,
    )
    return [r["id"] for r in rows]


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
