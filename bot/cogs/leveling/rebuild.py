"""Rebuild every leaderboard in Redis from Postgres (plus the awards still on their way).

Used by `guildhouse leaderboards rebuild` and by the bot itself when it finds the boards gone
(the ready marker is missing: Redis was wiped or is new). One process rebuilds at a time (a
Redis lock); the others carry on awarding, and their awards are replayed onto the rebuilt boards
in the final atomic swap (see ipc.leaderboard.Leaderboard.rebuild).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, datetime

import asyncpg
import redis.asyncio as aioredis

from bot import metrics
from bot.cogs.leveling import store
from ipc.client import Keys
from ipc.leaderboard import Leaderboard, Profile, RebuildResult, period_start

log = logging.getLogger(__name__)


async def rebuild(
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    keys: Keys,
    *,
    trigger: str = "command",
    cluster: str = "",
    now: datetime | None = None,
) -> RebuildResult | None:
    """Rebuild all boards; None if another process is rebuilding right now."""
    board = Leaderboard(redis, keys)
    token = await board.acquire_rebuild_lock()
    if token is None:
        return None
    try:
        when = now or datetime.now(UTC)
        month, week, day = (period_start(p, when) for p in ("month", "week", "day"))
        assert month is not None and week is not None and day is not None
        async with (
            pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            snap = await store.snapshot(conn, month, week, day)
            boards: dict[tuple[int | None, str], dict[int, float]] = defaultdict(dict)
            glob: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
            for guild_id, user_id, xp in snap.alltime:
                boards[(guild_id, "alltime")][user_id] = float(xp)
                glob["alltime"][user_id] += xp
            for guild_id, user_id, m, w, d in snap.periods:
                for period, value in (("month", m), ("week", w), ("day", d)):
                    if value:
                        boards[(guild_id, period)][user_id] = float(value)
                        glob[period][user_id] += value
            for period, scores in glob.items():
                boards[(None, period)] = dict(scores)

            async def known(award_ids: list[str]) -> set[str]:
                return await store.known_awards(conn, award_ids)

            result = await board.rebuild(token, boards, known, when=when)
        await board.set_profiles({u: Profile(n, a) for u, n, a in snap.profiles})
    except BaseException:
        await board.release_rebuild_lock(token)
        raise
    metrics.LEADERBOARD_REBUILDS.labels(cluster, trigger).inc()
    log.info(
        "leaderboards rebuilt from Postgres (%s): %d boards, %d awards replayed from the stream",
        trigger,
        result.boards,
        result.replayed,
    )
    return result
