"""Schema migrations: numbered `.sql` files, each applied in one transaction.

`NNNN_name.sql` files in `bot/db/migrations/` are applied in order. The whole run holds a
PostgreSQL advisory lock, so two launchers starting at once apply each file once: the second
waits, then finds nothing left to do. Applied versions, with a checksum of the file, are kept in
`schema_migrations`.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# pg_advisory_lock takes a bigint; any fixed value unique to this purpose will do.
LOCK_KEY = int.from_bytes(hashlib.sha256(b"guildhouse.migrations").digest()[:8], "big", signed=True)
FILENAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(Exception):
    """A migration could not be applied; the message names the file."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def filename(self) -> str:
        return self.path.name

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Status:
    migration: Migration | None
    version: int
    name: str
    applied_at: datetime | None
    changed: bool = False  # the file differs from what was applied

    @property
    def applied(self) -> bool:
        return self.applied_at is not None


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = FILENAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: not a migration name; expected NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(
                f"{path.name}: version {version} is also used by {found[version].filename}"
            )
        found[version] = Migration(version, match.group(2), path)
    return [found[v] for v in sorted(found)]


_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    checksum    TEXT NOT NULL,
    applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


async def _applied(conn: asyncpg.Connection) -> dict[int, asyncpg.Record]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT version, name, checksum, applied_at FROM schema_migrations")
    return {r["version"]: r for r in rows}


async def status(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> list[Status]:
    """Applied and pending migrations, in version order."""
    files = {m.version: m for m in discover(directory)}
    applied = await _applied(conn)
    out = []
    for version in sorted(files.keys() | applied.keys()):
        mig, row = files.get(version), applied.get(version)
        out.append(
            Status(
                migration=mig,
                version=version,
                name=mig.name if mig else str(row["name"]) if row else "",
                applied_at=row["applied_at"] if row else None,
                changed=bool(mig and row and row["checksum"] != mig.checksum),
            )
        )
    return out


async def apply(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply pending migrations in order; return those applied by this call."""
    migrations = discover(directory)
    done: list[Migration] = []
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    try:
        await conn.execute(_CREATE_TABLE)
        applied = await _applied(conn)
        for mig in migrations:
            if mig.version in applied:
                if applied[mig.version]["checksum"] != mig.checksum:
                    log.warning(
                        "migration %s changed after it was applied; not re-applied", mig.filename
                    )
                continue
            log.info("applying migration %s", mig.filename)
            try:
                async with conn.transaction():
                    await conn.execute(mig.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) "
                        "VALUES ($1, $2, $3)",
                        mig.version,
                        mig.name,
                        mig.checksum,
                    )
            except asyncpg.PostgresError as exc:
                raise MigrationError(
                    f"{mig.filename} failed and was rolled back: {exc.__class__.__name__}: {exc}"
                ) from exc
            done.append(mig)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    return done
