"""Where persistent components keep what they need: PostgreSQL for their state and their
single-use claims (both must outlive restarts and a Redis wipe), Redis for what may be lost
(interaction ids already in hand, a form's values to fill in again)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import redis.asyncio as aioredis

from ipc.client import Keys

log = logging.getLogger(__name__)

# Discord accepts follow-ups to an interaction for 15 minutes: past that, a second delivery of
# its id could not be answered anyway.
INTERACTION_LIFE = 15 * 60


@dataclass(frozen=True)
class Stored:
    owner_id: int | None
    expires_at: float  # unix seconds
    data: Any


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


async def save(
    pool: asyncpg.Pool,
    sid: str,
    *,
    handler: str,
    owner_id: int | None,
    data: Any,
    expires_at: float,
) -> None:
    await pool.execute(
        """
        INSERT INTO component_state (id, handler, owner_id, data, expires_at)
        VALUES ($1, $2, $3, $4, $5)
        """,
        sid,
        handler,
        owner_id,
        data,  # the pool's codec writes it as JSON (bot/db/pool.py)
        _at(expires_at),
    )


async def load(pool: asyncpg.Pool, sid: str, handler: str) -> Stored | None:
    row = await pool.fetchrow(
        """
        SELECT owner_id, expires_at, data
        FROM component_state WHERE id = $1 AND handler = $2
        """,
        sid,
        handler,
    )
    if row is None:
        return None
    return Stored(row["owner_id"], row["expires_at"].timestamp(), row["data"])


async def claim(pool: asyncpg.Pool, key: str, expires_at: float) -> bool:
    """True for the first caller with this key, False for every later one."""
    taken = await pool.fetchval(
        """
        INSERT INTO component_claims (key, expires_at) VALUES ($1, $2)
        ON CONFLICT (key) DO NOTHING RETURNING true
        """,
        key,
        _at(expires_at),
    )
    return bool(taken)


async def claim_in_redis(redis: aioredis.Redis, keys: Keys, key: str, expires_at: float) -> bool:
    """`claim`, for while PostgreSQL is away."""
    ttl = max(1, int(expires_at - time.time()))
    return bool(await redis.set(keys("component", "claim", key), b"1", nx=True, ex=ttl))


async def release_in_redis(redis: aioredis.Redis, keys: Keys, key: str) -> None:
    await redis.delete(keys("component", "claim", key))


async def release(pool: asyncpg.Pool, key: str) -> None:
    """Undo a claim whose work failed, so that the user can press again."""
    await pool.execute("DELETE FROM component_claims WHERE key = $1", key)


_SWEEPS = (
    """
    DELETE FROM component_state WHERE id IN (
        SELECT id FROM component_state WHERE expires_at < now() LIMIT $1
    )
    """,
    """
    DELETE FROM component_claims WHERE key IN (
        SELECT key FROM component_claims WHERE expires_at < now() LIMIT $1
    )
    """,
)


async def sweep(pool: asyncpg.Pool, *, batch: int = 1000) -> int:
    """Delete expired state and claims (a click on them says "expired" either way); in
    batches, so that no statement holds locks for long. Returns how many rows went."""
    gone = 0
    for query in _SWEEPS:
        while True:
            n = int((await pool.execute(query, batch)).split()[-1])
            gone += n
            if n < batch:
                break
    return gone


async def first_delivery(redis: aioredis.Redis, keys: Keys, interaction_id: int) -> bool:
    """True the first time an interaction id is seen, by any worker; False for Discord's
    retry of it (or a second delivery). In Redis: it only matters while Discord would accept
    an answer, and a wipe of Redis forgets it at worst, where Discord refuses a second answer
    anyway; what must act once whatever happens claims in PostgreSQL (`claim`)."""
    first = await redis.set(
        keys("component", "seen", interaction_id), b"1", nx=True, ex=INTERACTION_LIFE
    )
    return bool(first)


async def keep_for_retry(
    redis: aioredis.Redis, keys: Keys, token: str, value: dict[str, Any]
) -> None:
    await redis.set(keys("component", "retry", token), orjson.dumps(value), ex=INTERACTION_LIFE)


async def for_retry(redis: aioredis.Redis, keys: Keys, token: str) -> dict[str, Any] | None:
    raw = await redis.get(keys("component", "retry", token))
    if raw is None:
        return None
    value = orjson.loads(raw)
    return value if isinstance(value, dict) else None
