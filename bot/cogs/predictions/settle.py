"""Settling predictions: close on time, resolve (by a moderator or by vote) and pay, void,
auto-refund, each exactly once; and whose turn it is to announce a result.

Each step is a conditional state change (`WHERE status = ...`) in one transaction with its
ledger post (keyed `resolve:<id>` or `refund:<id>`) and its audit row, so of all the workers
that try at once, one does it, and a killed worker leaves nothing half done. Resolution is two
steps: `choose` records the outcome (`resolving`), `pay` moves the whole pool and marks it
`resolved`; a worker stopped between them leaves a `resolving` row that any worker's clock pays
(`pay_pending`), once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import orjson

from bot.cogs.predictions import payout
from bot.cogs.predictions.store import (
    CLOSED,
    COLUMNS,
    OPEN,
    P_COLUMNS,
    REFUNDED,
    RESOLVED,
    VOID,
    Prediction,
    PredictionError,
    stakes,
)
from bot.points import ledger
from bot.points.settings import PointsSettings

# -- closing and settling ------------------------------------------------------------------------


# The close's audit entry, after a `closed` CTE of the predictions just closed (both closes).
_AUDIT_CLOSED = """, logged AS (
            INSERT INTO audit_log (guild_id, actor_id, action, channel_id, before, after)
            SELECT guild_id, 0, 'predict.close', channel_id, '{"status": "open"}'::jsonb,
                   jsonb_build_object('id', id, 'status', 'closed')
            FROM closed
        )
        SELECT * FROM closed"""


async def close_due(pool: asyncpg.Pool, limit: int = 20) -> list[Prediction]:
    """Lock betting on predictions whose window has ended; each is returned by exactly one
    caller, whichever worker it runs on."""
    rows = await pool.fetch(
        f"""
        WITH closed AS (
            UPDATE predictions SET status = 'closed', closed_at = now()
            WHERE id IN (SELECT id FROM predictions WHERE status = 'open' AND closes_at <= now()
                         ORDER BY closes_at LIMIT $1 FOR UPDATE SKIP LOCKED)
              AND status = 'open'
            RETURNING {COLUMNS}
        ){_AUDIT_CLOSED}
        """,  # noqa: S608 - constant fragments only
        limit,
    )
    return [Prediction.of(r) for r in rows]


async def close_one(conn: asyncpg.Connection, prediction_id: int) -> Prediction | None:
    """Lock betting on one prediction (its close job), in the caller's transaction; None if it
    is not open (closed already, by this or the clock's backstop, or settled)."""
    row = await conn.fetchrow(
        f"""
        WITH closed AS (
            UPDATE predictions SET status = 'closed', closed_at = now()
            WHERE id = $1 AND status = 'open'
            RETURNING {COLUMNS}
        ){_AUDIT_CLOSED}
        """,  # noqa: S608 - constant fragments only
        prediction_id,
    )
    return None if row is None else Prediction.of(row)


async def refund_one(
    conn: asyncpg.Connection, prediction_id: int
) -> tuple[Prediction, dict[int, int]] | None:
    """Refund a closed, unresolved prediction (its refund job), in the caller's transaction;
    None if it was resolved, voided or refunded meanwhile."""
    row = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM predictions WHERE id = $1 AND status = 'closed' FOR UPDATE",  # noqa: S608 - constant fragments only
        prediction_id,
    )
    if row is None:
        return None
    return await _refund(conn, Prediction.of(row), REFUNDED, None)


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
        settled = await _settle(conn, prediction_id, RESOLVED, current.settled_by, paid)
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
                    SELECT {P_COLUMNS}
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
    return await _settle(conn, current.id, status, actor_id, back), back


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
    conn: asyncpg.Connection,
    prediction_id: int,
    status: str,
    actor_id: int | None,
    paid: dict[int, int],
) -> Prediction:
    """The final state, and its audit row (actor 0: the bot's clock), in the caller's
    transaction."""
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
    settled = Prediction.of(row)
    after = {
        "id": prediction_id,
        "status": status,
        "winner": settled.winner,
        "paid": {str(u): amount for u, amount in paid.items()},
    }
    await conn.execute(
        """
        INSERT INTO audit_log (guild_id, actor_id, action, channel_id, after)
        VALUES ($1, $2, $3, $4, $5::text::jsonb)
        """,
        settled.guild_id,
        actor_id or 0,
        {RESOLVED: "predict.resolve", VOID: "predict.void"}.get(status, "predict.refund"),
        settled.channel_id,
        orjson.dumps(after).decode(),
    )
    return settled


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
