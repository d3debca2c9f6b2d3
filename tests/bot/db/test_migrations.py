from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import asyncpg
import pytest

from bot.db import migrations
from bot.db.pool import connect, create_pool


async def test_fresh_apply_then_reapply_is_a_noop(fresh_dsn: str) -> None:
    conn = await connect(fresh_dsn)
    try:
        first = await migrations.apply(conn)
        assert [m.version for m in first] == [m.version for m in migrations.discover()]
        assert first and first[0].filename == "0001_core.sql"
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        assert {"guilds", "users", "audit_log", "schema_migrations"} <= tables
        assert await migrations.apply(conn) == []
        rows = await migrations.status(conn)
        assert all(r.applied and not r.changed for r in rows)
    finally:
        await conn.close()


def _write(directory: Path, name: str, sql: str) -> None:
    (directory / name).write_text(sql)


async def test_failing_migration_rolls_back_and_names_the_file(
    fresh_dsn: str, tmp_path: Path
) -> None:
    _write(tmp_path, "0001_ok.sql", "CREATE TABLE a (id int);")
    _write(tmp_path, "0002_bad.sql", "CREATE TABLE b (id int); SELECT * FROM no_such_table;")
    conn = await connect(fresh_dsn)
    try:
        with pytest.raises(migrations.MigrationError) as info:
            await migrations.apply(conn, tmp_path)
        assert "0002_bad.sql" in str(info.value)
        assert "rolled back" in str(info.value)
        # 0001 stays applied; nothing of 0002 (its table b) is left behind.
        assert await conn.fetchval("SELECT to_regclass('a') IS NOT NULL")
        assert not await conn.fetchval("SELECT to_regclass('b') IS NOT NULL")
        status = {r.version: r.applied for r in await migrations.status(conn, tmp_path)}
        assert status == {1: True, 2: False}
        # The lock was released: a fixed file applies on the next run.
        _write(tmp_path, "0002_bad.sql", "CREATE TABLE b (id int);")
        assert [m.version for m in await migrations.apply(conn, tmp_path)] == [2]
    finally:
        await conn.close()


def test_bad_file_names_are_rejected(tmp_path: Path) -> None:
    _write(tmp_path, "1_short.sql", "")
    with pytest.raises(migrations.MigrationError, match=r"1_short\.sql: not a migration name"):
        migrations.discover(tmp_path)
    (tmp_path / "1_short.sql").unlink()
    _write(tmp_path, "0001_a.sql", "")
    _write(tmp_path, "0001_b.sql", "")
    with pytest.raises(migrations.MigrationError, match="version 1 is also used"):
        migrations.discover(tmp_path)


async def test_changed_file_is_reported_not_reapplied(fresh_dsn: str, tmp_path: Path) -> None:
    _write(tmp_path, "0001_a.sql", "CREATE TABLE a (id int);")
    conn = await connect(fresh_dsn)
    try:
        await migrations.apply(conn, tmp_path)
        _write(tmp_path, "0001_a.sql", "CREATE TABLE a (id bigint);")
        assert await migrations.apply(conn, tmp_path) == []
        (row,) = await migrations.status(conn, tmp_path)
        assert row.changed
    finally:
        await conn.close()


async def test_two_concurrent_migrate_processes(fresh_dsn: str, tmp_path: Path) -> None:
    # A slow first migration makes the two runs overlap for certain.
    _write(tmp_path, "0001_slow.sql", "SELECT pg_sleep(1.5); CREATE TABLE slow (id int);")
    _write(
        tmp_path,
        "0002_counter.sql",
        "CREATE TABLE IF NOT EXISTS runs (n int); INSERT INTO runs VALUES (1);",
    )
    env = dict(os.environ, DATABASE_URL=fresh_dsn, LOG_FORMAT="json")
    cmd = [sys.executable, "-m", "cluster.cli", "migrate", "--dir", str(tmp_path)]
    procs = [
        await asyncio.create_subprocess_exec(
            *cmd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(2)
    ]
    outs = [await p.communicate() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    summaries = sorted(o[0].decode().strip().splitlines()[-1] for o in outs)
    assert summaries == [
        "applied 0 migration(s)",
        "applied 2 migration(s): 0001_slow.sql, 0002_counter.sql",
    ]
    conn = await asyncpg.connect(fresh_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM runs") == 1
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == 2
    finally:
        await conn.close()


async def test_migrate_status_cli(fresh_dsn: str, tmp_path: Path) -> None:
    _write(tmp_path, "0001_a.sql", "CREATE TABLE a (id int);")
    _write(tmp_path, "0002_b.sql", "CREATE TABLE b (id int);")
    conn = await connect(fresh_dsn)
    await migrations.apply(conn, tmp_path)
    await conn.close()
    _write(tmp_path, "0003_c.sql", "CREATE TABLE c (id int);")
    env = dict(os.environ, DATABASE_URL=fresh_dsn)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cluster.cli",
        "migrate",
        "--status",
        "--dir",
        str(tmp_path),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err
    lines = out.decode().splitlines()
    assert lines[0].startswith("applied  0001_a")
    assert lines[1].startswith("applied  0002_b")
    assert lines[2] == "pending  0003_c"
    assert lines[3] == "2 applied, 1 pending"


async def test_pool_round_trips_jsonb_with_orjson(fresh_dsn: str) -> None:
    pool = await create_pool(fresh_dsn, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            await migrations.apply(conn)
            settings = {"prefix": "?", "roles": [1, 2], "nested": {"ok": True}}
            await conn.execute("INSERT INTO guilds (id, settings) VALUES ($1, $2)", 42, settings)
            assert await conn.fetchval("SELECT settings FROM guilds WHERE id = 42") == settings
            assert await conn.fetchval("SELECT settings->'nested' FROM guilds WHERE id = 42") == {
                "ok": True
            }
    finally:
        await pool.close()
