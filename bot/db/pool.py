"""The asyncpg pool: one per worker process, built in the worker's entry point."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


async def _init_connection(conn: asyncpg.Connection) -> None:
    # json/jsonb columns read and write Python objects, through orjson.
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename, schema="pg_catalog", encoder=_dumps, decoder=orjson.loads, format="text"
        )


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose connections encode json/jsonb with orjson."""
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, command_timeout=60
    )
    assert pool is not None
    return pool


async def connect(dsn: str) -> asyncpg.Connection:
    """A single connection with the same codecs (CLI tools, migrations)."""
    conn = await asyncpg.connect(dsn)
    await _init_connection(conn)
    return conn
