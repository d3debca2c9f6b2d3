"""The points ledger: double entry in PostgreSQL, one transaction per change, applied once.

Every change of points is a ledger transaction (`points_tx`) with entries (`points_entries`)
between accounts of one server that sum to zero: a member (`u:<id>`), a prediction's pool
(`p:<id>`), the server's mint (`mint`: grants come from it, so its balance is minus every point
ever minted) and the burn (`burn`: points taken out). `post` writes the transaction, its
entries and the accounts' balances in the caller's transaction, so they are always in step:

- **idempotent**: a transaction is identified by its key per server (an interaction id,
  `daily:<user>:<day>`, `resolve:<prediction>`...); posting a key that is already there changes
  nothing and says so (`Posted.applied` is False), whether the first post committed a moment
  ago on another worker or is still running (the second waits for it on the unique index);
- **no overdraft**: a CHECK on `points_accounts` forbids a member's or a pool's balance below
  zero; `post` turns its violation into `InsufficientPoints`;
- **balanced**: a deferred constraint trigger refuses, at commit, a transaction whose entries
  don't sum to zero;
- **no deadlock**: accounts are updated in one statement, in the order of their names, so two
  transactions over the same accounts lock them in the same order.

`check` is the invariant query the tests run after every scenario (and an operator may run):
members' and pools' balances add up to what was minted minus what was burned, each balance is
the sum of its entries, each transaction balances, and settled predictions' pools are empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from bot.user_error import UserError

MINT = "mint"
BURN = "burn"


def member(user_id: int) -> str:
    return f"u:{user_id}"


def pool(prediction_id: int) -> str:
    return f"p:{prediction_id}"


def user_of(account: str) -> int | None:
    return int(account[2:]) if account.startswith("u:") else None


class InsufficientPoints(UserError):
    """A member (or a pool) would go below zero."""


class Unbalanced(ValueError):
    """A programming error: entries that don't sum to zero."""


@dataclass(frozen=True)
class Posted:
    tx_id: int
    applied: bool  # False: the key was posted before; nothing changed now
    balances: dict[str, int] = field(default_factory=dict)  # accounts touched, after the post

    def balance(self, account: str) -> int | None:
        return self.balances.get(account)


async def post(
    conn: asyncpg.Connection,
    *,
    guild_id: int,
    key: str,
    kind: str,
    entries: Mapping[str, int],
    actor_id: int | None = None,
    memo: str | None = None,
) -> Posted:
    """Apply a transaction once per (guild, key), inside the caller's transaction (or one of
    its own). Raises InsufficientPoints if a member or pool would go negative; the caller's
    transaction then rolls back whatever it did besides. Accounts are updated last, pools
    after the rest: a caller that posts as its transaction's last statement holds a busy
    pool's row for the shortest time (the commit's)."""
    moves = {account: amount for account, amount in entries.items() if amount}
    if sum(moves.values()) != 0:
        raise Unbalanced(f"entries of {key!r} sum to {sum(moves.values())}")
    if conn.is_in_transaction():
        return await _post(conn, guild_id, key, kind, moves, actor_id, memo)
    async with conn.transaction():
        return await _post(conn, guild_id, key, kind, moves, actor_id, memo)


async def _post(  # noqa: PLR0917 - post's arguments, passed on
    conn: asyncpg.Connection,
    guild_id: int,
    key: str,
    kind: str,
    moves: dict[str, int],
    actor_id: int | None,
    memo: str | None,
) -> Posted:
    tx_id = await conn.fetchval(
        """
        INSERT INTO points_tx (guild_id, key, kind, actor_id, memo)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (guild_id, key) DO NOTHING
        RETURNING id
        """,
        guild_id,
        key,
        kind,
        actor_id,
        memo,
    )
    if tx_id is None:
        old = await conn.fetchval(
            "SELECT id FROM points_tx WHERE guild_id = $1 AND key = $2", guild_id, key
        )
        return Posted(int(old), applied=False)
    if not moves:
        return Posted(int(tx_id), applied=True)
    accounts = sorted(moves, key=lock_order)
    amounts = [moves[a] for a in accounts]
    await conn.execute(
        """
        INSERT INTO points_entries (tx_id, guild_id, account, amount)
        SELECT $1, $2, a, m FROM unnest($3::text[], $4::bigint[]) AS t(a, m)
        """,
        tx_id,
        guild_id,
        accounts,
        amounts,
    )
    try:
        rows = await _apply(conn, guild_id, accounts, amounts)
    except asyncpg.CheckViolationError as exc:
        if exc.constraint_name != "points_no_overdraft":
            raise
        short = [a for a in accounts if moves[a] < 0 and a not in (MINT, BURN)]
        raise InsufficientPoints(
            _short_of(short[0], -moves[short[0]]) if short else "Not enough points."
        ) from None
    return Posted(int(tx_id), True, {r["account"]: int(r["balance"]) for r in rows})


async def _apply(
    conn: asyncpg.Connection, guild_id: int, accounts: list[str], amounts: list[int]
) -> list[asyncpg.Record]:
    """Add `amounts` to the accounts' balances in one statement that meets the accounts in
    `lock_order`, creating those met for the first time: two transactions over the same
    accounts lock them in the same order, so they never deadlock (also while one of them
    creates an account the other then finds).

    A new account's proposed row carries the amount, or 0 for a debit of a member or pool
    (PostgreSQL checks a proposed row's CHECK before it finds the conflict, so an existing
    member's debit would otherwise fail as a new account below zero); such a row, really
    inserted, is a debit of an empty account, refused here."""
    rows = await conn.fetch(
        """
        WITH t AS (SELECT a, m, n FROM unnest($2::text[], $3::bigint[]) WITH ORDINALITY
                   AS t(a, m, n))
        INSERT INTO points_accounts AS acc (guild_id, account, balance)
        SELECT $1, a, CASE WHEN m < 0 AND a NOT IN ('mint', 'burn') THEN 0 ELSE m END
        FROM t ORDER BY n
        ON CONFLICT (guild_id, account) DO UPDATE
            SET balance = acc.balance + (SELECT t.m FROM t WHERE t.a = excluded.account)
        RETURNING account, balance, (xmax = 0) AS inserted
        """,
        guild_id,
        accounts,
        amounts,
    )
    moves = dict(zip(accounts, amounts, strict=True))
    for r in rows:
        if r["inserted"] and moves[r["account"]] < 0 and r["account"] not in (MINT, BURN):
            raise InsufficientPoints(_short_of(r["account"], -moves[r["account"]]))
    return list(rows)


def lock_order(account: str) -> tuple[bool, str]:
    """The one order every transaction locks accounts in: members, mint and burn by name,
    then pools (a prediction's pool is the busiest row: locked last, held least)."""
    return account.startswith("p:"), account


def _short_of(account: str, amount: int) -> str:
    return f"Not enough points: {_who(account)} can't pay {amount:,}."


def _who(account: str) -> str:
    user = user_of(account)
    if user is not None:
        return f"<@{user}>"
    return f"prediction #{account[2:]}'s pool" if account.startswith("p:") else account


async def balance(conn: asyncpg.Connection | asyncpg.Pool, guild_id: int, account: str) -> int:
    value = await conn.fetchval(
        "SELECT balance FROM points_accounts WHERE guild_id = $1 AND account = $2",
        guild_id,
        account,
    )
    return int(value or 0)


@dataclass(frozen=True)
class Line:
    """One entry of an account's history."""

    tx_id: int
    kind: str
    amount: int
    memo: str | None
    actor_id: int | None
    at: datetime


async def history(
    conn: asyncpg.Connection | asyncpg.Pool,
    guild_id: int,
    account: str,
    *,
    limit: int = 200,
) -> list[Line]:
    rows = await conn.fetch(
        """
        SELECT t.id, t.kind, e.amount, t.memo, t.actor_id, t.created_at
        FROM points_entries e JOIN points_tx t ON t.id = e.tx_id
        WHERE e.guild_id = $1 AND e.account = $2
        ORDER BY e.tx_id DESC
        LIMIT $3
        """,
        guild_id,
        account,
        limit,
    )
    return [
        Line(r["id"], r["kind"], int(r["amount"]), r["memo"], r["actor_id"], r["created_at"])
        for r in rows
    ]


# -- the invariants ------------------------------------------------------------------------------

_CHECKS = {
    "circulation": """
        -- members' and pools' balances = minted - burned, per server (from the entries)
        SELECT b.guild_id, b.held, coalesce(e.minted, 0) AS minted, coalesce(e.burned, 0) AS burned
        FROM (SELECT guild_id, sum(balance) FILTER (WHERE account ~ '^[up]:') AS held
              FROM points_accounts GROUP BY guild_id) b
        LEFT JOIN (SELECT guild_id,
                          -sum(amount) FILTER (WHERE account = 'mint') AS minted,
                          sum(amount) FILTER (WHERE account = 'burn') AS burned
                   FROM points_entries GROUP BY guild_id) e USING (guild_id)
        WHERE coalesce(b.held, 0) <> coalesce(e.minted, 0) - coalesce(e.burned, 0)
    """,
    "balance": """
        -- every balance is the sum of its entries
        SELECT a.guild_id, a.account, a.balance, coalesce(s.total, 0) AS entries
        FROM points_accounts a
        LEFT JOIN (SELECT guild_id, account, sum(amount) AS total FROM points_entries
                   GROUP BY guild_id, account) s USING (guild_id, account)
        WHERE a.balance <> coalesce(s.total, 0)
    """,
    "double entry": """
        SELECT tx_id, sum(amount) AS total FROM points_entries
        GROUP BY tx_id HAVING sum(amount) <> 0
    """,
    "negative": """
        SELECT guild_id, account, balance FROM points_accounts
        WHERE account ~ '^[up]:' AND balance < 0
    """,
    "settled pools": """
        -- a settled prediction's pool is empty; an unsettled one holds exactly its bets
        SELECT p.id, p.status, coalesce(a.balance, 0) AS pool, coalesce(b.staked, 0) AS staked
        FROM predictions p
        LEFT JOIN points_accounts a ON a.guild_id = p.guild_id AND a.account = 'p:' || p.id
        LEFT JOIN (SELECT prediction_id, sum(amount) AS staked FROM prediction_bets
                   GROUP BY prediction_id) b ON b.prediction_id = p.id
        WHERE CASE WHEN p.status IN ('resolved', 'void', 'refunded')
                   THEN coalesce(a.balance, 0) <> 0
                   ELSE coalesce(a.balance, 0) <> coalesce(b.staked, 0) END
    """,
}


async def check(conn: asyncpg.Connection | asyncpg.Pool) -> list[str]:
    """What is wrong with the ledger, one line per broken invariant row; [] if nothing."""
    problems = []
    for name, sql in _CHECKS.items():
        for row in await conn.fetch(sql):
            problems.append(f"{name}: {dict(row)}")
    return problems


async def circulation(conn: asyncpg.Connection | asyncpg.Pool, guild_id: int) -> dict[str, int]:
    """{'members', 'pools', 'minted', 'burned'} of one server."""
    row = await conn.fetchrow(
        """
        SELECT
          (SELECT coalesce(sum(balance), 0) FROM points_accounts
            WHERE guild_id = $1 AND account LIKE 'u:%') AS members,
          (SELECT coalesce(sum(balance), 0) FROM points_accounts
            WHERE guild_id = $1 AND account LIKE 'p:%') AS pools,
          (SELECT coalesce(-sum(amount), 0) FROM points_entries
            WHERE guild_id = $1 AND account = 'mint') AS minted,
          (SELECT coalesce(sum(amount), 0) FROM points_entries
            WHERE guild_id = $1 AND account = 'burn') AS burned
        """,
        guild_id,
    )
    assert row is not None
    return {k: int(v) for k, v in dict(row).items()}
