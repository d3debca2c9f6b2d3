"""Databases of a test's own on the session's PostgreSQL: made empty or copied from a
template, and dropped (tests/conftest.py's fixtures use these; so does tests/e2e)."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg


def _with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


async def create_database(database_url: str, name: str, template: str | None = None) -> str:
    admin = await asyncpg.connect(database_url)
    try:
        clause = f' TEMPLATE "{template}"' if template else ""
        await admin.execute(f'CREATE DATABASE "{name}"{clause}')
    finally:
        await admin.close()
    return _with_database(database_url, name)


async def drop_named(database_url: str, name: str) -> None:
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def clone_template(database_url: str, template: str, prefix: str = "t_") -> str:
    """A new database copied from `template`; the caller drops it (`drop_database`)."""
    return await create_database(database_url, prefix + uuid.uuid4().hex[:12], template)


async def drop_database(database_url: str, dsn: str) -> None:
    await drop_named(database_url, urlsplit(dsn).path.lstrip("/"))
