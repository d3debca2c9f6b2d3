"""The asyncpg pool: one per worker process, built in the worker's entry point."""

from __future__ import annotations

from functools import partial
from typing import Any

import asyncpg
import orjson
from asyncpg.connection import LoggedQuery

from bot import metrics


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class PooledConnection(asyncpg.Connection):  # type: ignore[misc]
    """A pool connection that skips asyncpg's reset query on release.

    By default every release sends `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL;`: one more round trip for each use of the pool, which the XP flush and every
    command that writes pays. Nothing here leaves session state on a pooled connection: advisory
    locks are transaction-scoped (`pg_advisory_xact_lock`), there is no LISTEN, no SET outside
    a transaction and no cursor outside one. An open transaction is still rolled back on
    release (asyncpg always does that).
    """

    def get_reset_query(self) -> str:
        return ""


async def _init_connection(conn: asyncpg.Connection) -> None:
    # json/jsonb columns read and write Python objects, through orjson.
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename, schema="pg_catalog", encoder=_dumps, decoder=orjson.loads, format="text"
        )


_VERBS = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "COPY"})


def _observe(cluster: str, query: LoggedQuery) -> None:
    words = query.query.lstrip().split(None, 1)
    verb = words[0].upper() if words else ""
    outcome = "error" if query.exception is not None else "ok"
    metrics.QUERY_DURATION.labels(cluster, verb if verb in _VERBS else "other", outcome).observe(
        query.elapsed
    )


async def _init_observed(cluster: str, conn: asyncpg.Connection) -> None:
    await _init_connection(conn)
    conn.add_query_logger(partial(_observe, cluster))


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, metrics_cluster: str | None = None
) -> asyncpg.Pool:
    """A pool whose connections encode json/jsonb with orjson; with `metrics_cluster`, every
    query's duration goes to `guildhouse_db_query_duration_seconds`."""
    init = _init_connection if metrics_cluster is None else partial(_init_observed, metrics_cluster)
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=init,
        command_timeout=60,
        connection_class=PooledConnection,
    )
    assert pool is not None
    return pool


async def connect(dsn: str) -> asyncpg.Connection:
    """A single connection with the same codecs (CLI tools, migrations)."""
    conn = await asyncpg.connect(dsn)
    await _init_connection(conn)
    return conn
