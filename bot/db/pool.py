"""The asyncpg pool: one per worker process, built in the worker's entry point.

Through a PostgreSQL outage the pool needs no restart: a connection the server dropped is
closed, and the holder that had it connects afresh on its next acquire (asyncpg's
PoolConnectionHolder.acquire); until the server is back, that connect fails fast (refused) or
within CONNECT_TIMEOUT (a host that doesn't answer). The pool also tells bot/outages.py what it
sees, so the outage is logged once and the metrics follow it whoever hit the error.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import asyncpg
import orjson
from asyncpg.connection import LoggedQuery

from bot import metrics, outages

# asyncpg waits 60 s by default. A command waits for this at most before it answers that the
# database is unavailable; a server that is up connects in milliseconds.
CONNECT_TIMEOUT = 5.0


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


def _verb(query: LoggedQuery) -> str:
    words = query.query.lstrip().split(None, 1)
    verb = words[0].upper() if words else ""
    return verb if verb in _VERBS else "other"


def _track(query: LoggedQuery) -> None:
    if query.exception is None:
        outages.postgres.reachable()
    else:
        outages.note(query.exception, f"a {_verb(query)} query")


def _observe(cluster: str, query: LoggedQuery) -> None:
    _track(query)
    outcome = "error" if query.exception is not None else "ok"
    metrics.QUERY_DURATION.labels(cluster, _verb(query), outcome).observe(query.elapsed)


async def _init_tracked(conn: asyncpg.Connection) -> None:
    await _init_connection(conn)
    conn.add_query_logger(_track)


async def _init_observed(cluster: str, conn: asyncpg.Connection) -> None:
    await _init_connection(conn)
    conn.add_query_logger(partial(_observe, cluster))


async def _connect(*args: Any, **kwargs: Any) -> asyncpg.Connection:
    """asyncpg.connect, reporting the outcome: after an outage, the first new connection is
    when the worker sees the server back."""
    try:
        conn = await asyncpg.connect(*args, **kwargs)
    except Exception as exc:
        outages.note(exc, "connecting")
        raise
    outages.postgres.reachable()
    return conn


class _OutageRetries(logging.Filter):
    """asyncpg's pool keeps reconnecting its `min_size` connections in the background (a
    useful probe: its first success is when the worker sees the server back), and logs a
    WARNING with a traceback at every failed attempt. During an outage those attempts are
    expected and already counted, through `_connect`: drop their records."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return exc is None or outages.server_of(exc) is None


_quiet_retries = _OutageRetries()


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, metrics_cluster: str | None = None
) -> asyncpg.Pool:
    """A pool whose connections encode json/jsonb with orjson; with `metrics_cluster`, every
    query's duration goes to `guildhouse_db_query_duration_seconds`."""
    init = _init_tracked if metrics_cluster is None else partial(_init_observed, metrics_cluster)
    logging.getLogger("asyncpg.pool").addFilter(_quiet_retries)  # once: a filter is a set
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=init,
        connect=_connect,
        timeout=CONNECT_TIMEOUT,
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
