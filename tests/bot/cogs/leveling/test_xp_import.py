"""XP import against real PostgreSQL and Redis: totals, idempotent re-runs, corrected files, dry
runs, audit rows, the boards afterwards; and `guildhouse leaderboards import` end to end."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from bot.cogs.leveling import importer, rules, store
from bot.entry import ImportRefused, import_xp
from ipc.client import Keys
from ipc.leaderboard import Award, Leaderboard

G, OTHER = 610000000000000001, 610000000000000002
ANN, BOB, CY, DEE = 710000000000000001, 710000000000000002, 710000000000000003, 710000000000000004
NOW = datetime.now(UTC)


@pytest.fixture
def dsn(migrated_dsn: str) -> str:
    return migrated_dsn


def csv(rows: dict[int, int], header: bool = True) -> bytes:
    lines = (["user_id,xp"] if header else []) + [f"{u},{x}" for u, x in rows.items()]
    return ("\n".join(lines) + "\n").encode()


async def totals(pool: asyncpg.Pool, guild: int = G) -> dict[int, int]:
    rows = await pool.fetch("SELECT user_id, xp FROM xp_totals WHERE guild_id = $1", guild)
    return {r["user_id"]: r["xp"] for r in rows}


async def counts(pool: asyncpg.Pool) -> tuple[int, int, int]:
    row = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM xp_events) AS e, (SELECT count(*) FROM xp_imports) AS i, "
        "(SELECT count(*) FROM audit_log) AS a"
    )
    assert row is not None
    return row["e"], row["i"], row["a"]


async def board_of(lb: Leaderboard, guild: int | None, period: str = "alltime") -> list:
    return [(e.rank, e.user_id, e.score) for e in await lb.top(guild, period, limit=100)]


async def test_import_then_the_same_file_again(
    dsn: str, pool: asyncpg.Pool, redis: aioredis.Redis, redis_url: str, redis_prefix: str
) -> None:
    lb = Leaderboard(redis, Keys(redis_prefix))
    # CY already chatted here: 40 XP earned in Guildhouse, kept by the import.
    async with pool.acquire() as conn:
        await store.write_events(conn, [Award("m:1", G, CY, 40, NOW, "message", "Cy")])
    data = csv({ANN: 1200, BOB: 500, CY: 90})
    report = await import_xp(dsn, redis_url, redis_prefix, G, data, source="mee6.csv")
    assert (report.applied.changed, report.applied.unchanged) == (3, 0)
    assert report.applied.xp_delta == 1790 and report.boards == "rebuilt"
    assert len(report.parsed.rows) == 3 and report.parsed.header
    assert await totals(pool) == {ANN: 1200, BOB: 500, CY: 130}
    # The boards: imported XP is all-time XP, in no current period.
    assert await board_of(lb, G) == [(1, ANN, 1200), (2, BOB, 500), (3, CY, 130)]
    assert await board_of(lb, None) == [(1, ANN, 1200), (2, BOB, 500), (3, CY, 130)]
    for period in ("month", "week", "day"):
        assert await board_of(lb, G, period) == [(1, CY, 40)]
    events = await pool.fetch("SELECT * FROM xp_events WHERE kind = 'import' ORDER BY user_id")
    assert [(e["user_id"], e["amount"]) for e in events] == [(ANN, 1200), (BOB, 500), (CY, 90)]
    assert all(e["created_at"] == importer.IMPORT_EPOCH for e in events)
    assert events[0]["award_id"] == f"i:{G}:{ANN}:1:{report.parsed.sha256[:12]}"
    # Levels reached by the import count as announced (nobody is told).
    levels = await pool.fetch("SELECT user_id, level FROM xp_totals WHERE guild_id = $1", G)
    assert {r["user_id"]: r["level"] for r in levels} == {ANN: 5, BOB: 3, CY: 1}
    (audit,) = await pool.fetch("SELECT * FROM audit_log")
    assert (audit["guild_id"], audit["actor_id"], audit["action"]) == (G, 0, "xp.import")
    assert audit["after"]["members"] == 3 and audit["after"]["xp_delta"] == 1790
    assert audit["after"]["file"] == "mee6.csv"
    assert audit["after"]["file_sha256"] == report.parsed.sha256
    before = await counts(pool)

    again = await import_xp(dsn, redis_url, redis_prefix, G, data)
    assert (again.applied.changed, again.applied.unchanged, again.applied.xp_delta) == (0, 3, 0)
    assert again.boards == "unchanged"
    assert await totals(pool) == {ANN: 1200, BOB: 500, CY: 130}
    assert await counts(pool) == before  # no event, no audit row
    assert await board_of(lb, G) == [(1, ANN, 1200), (2, BOB, 500), (3, CY, 130)]
    # The same lines in another order, without the header: the same import.
    reordered = csv({CY: 90, BOB: 500, ANN: 1200}, header=False)
    assert (await import_xp(dsn, redis_url, redis_prefix, G, reordered)).applied.changed == 0
    assert await totals(pool) == {ANN: 1200, BOB: 500, CY: 130}


async def test_a_corrected_file_replaces_what_it_lists(
    dsn: str, pool: asyncpg.Pool, redis: aioredis.Redis, redis_url: str, redis_prefix: str
) -> None:
    lb = Leaderboard(redis, Keys(redis_prefix))
    await import_xp(dsn, redis_url, redis_prefix, G, csv({ANN: 1000, BOB: 500, CY: 200}))
    fixed = csv({ANN: 1500, CY: 100, DEE: 50})  # BOB not listed: keeps his 500
    report = await import_xp(dsn, redis_url, redis_prefix, G, fixed)
    assert (report.applied.changed, report.applied.xp_delta) == (3, 500 - 100 + 50)
    assert await totals(pool) == {ANN: 1500, BOB: 500, CY: 100, DEE: 50}
    assert await board_of(lb, G) == [(1, ANN, 1500), (2, BOB, 500), (3, CY, 100), (4, DEE, 50)]
    assert await importer.imported(pool, G) == {ANN: 1500, BOB: 500, CY: 100, DEE: 50}
    # Back to the first file: each change is its own event (revisions), totals follow.
    await import_xp(dsn, redis_url, redis_prefix, G, csv({ANN: 1000, BOB: 500, CY: 200}))
    assert await totals(pool) == {ANN: 1000, BOB: 500, CY: 200, DEE: 50}
    ids = await pool.fetch(
        "SELECT award_id FROM xp_events WHERE user_id = $1 ORDER BY award_id", ANN
    )
    assert [r["award_id"].split(":")[3] for r in ids] == ["1", "2", "3"]
    # Other guilds are untouched.
    assert await totals(pool, OTHER) == {}
    assert await board_of(lb, OTHER) == []
    audits = await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'xp.import'")
    assert audits == 3


async def test_a_lower_import_never_goes_below_zero(dsn: str, pool: asyncpg.Pool) -> None:
    parsed = importer.parse(csv({ANN: 1000}))
    await importer.apply(pool, G, parsed)
    # An admin took it all (xp take), then a corrected file says 400.
    async with pool.acquire() as conn, conn.transaction():
        ev = Award("a:x", G, ANN, -1000, NOW, "admin_take")
        assert await store.insert_adjustment(conn, ev) == 0
        await store.set_level(conn, G, ANN, 0)  # as the cog's take does
    applied = await importer.apply(pool, G, importer.parse(csv({ANN: 400})))
    assert applied.changed == 1 and applied.xp_delta == 0
    assert await totals(pool) == {ANN: 0}
    assert await pool.fetchval("SELECT level FROM xp_totals WHERE user_id = $1", ANN) == 0
    # Raising it again adds the difference from the recorded 400.
    await importer.apply(pool, G, importer.parse(csv({ANN: 1000})))
    assert await totals(pool) == {ANN: 600}
    assert await pool.fetchval("SELECT level FROM xp_totals WHERE user_id = $1", ANN) == (
        rules.level_for(600)
    )


async def test_dry_run_writes_nothing(
    dsn: str, pool: asyncpg.Pool, redis: aioredis.Redis, redis_url: str, redis_prefix: str
) -> None:
    await import_xp(dsn, redis_url, redis_prefix, G, csv({ANN: 100}))
    before = await counts(pool)
    keys_before = sorted(await redis.keys(redis_prefix + "*"))
    board_before = await redis.zrange(
        Keys(redis_prefix)("lb", "g", G, "all"), 0, -1, withscores=True
    )
    report = await import_xp(
        dsn, redis_url, redis_prefix, G, csv({ANN: 300, BOB: 50}) + b"bad,line\n", dry_run=True
    )
    assert report.dry_run and report.boards == "unchanged"
    assert (report.applied.changed, report.applied.xp_delta, report.applied.events) == (2, 250, 2)
    assert report.parsed.error_count == 1
    assert await counts(pool) == before
    assert await totals(pool) == {ANN: 100}
    assert sorted(await redis.keys(redis_prefix + "*")) == keys_before
    after = await redis.zrange(Keys(redis_prefix)("lb", "g", G, "all"), 0, -1, withscores=True)
    assert after == board_before


async def test_concurrent_imports_of_one_file_count_once(dsn: str, pool: asyncpg.Pool) -> None:
    parsed = importer.parse(csv({ANN + i: 10 + i for i in range(200)}))
    results = await asyncio.gather(*(importer.apply(pool, G, parsed) for _ in range(3)))
    assert sorted(r.changed for r in results) == [0, 0, 200]
    assert await totals(pool) == {ANN + i: 10 + i for i in range(200)}


async def test_a_refused_file_writes_nothing(dsn: str, pool: asyncpg.Pool, redis_url: str) -> None:
    with pytest.raises(ImportRefused, match="UTF-16"):
        await import_xp(dsn, redis_url, "x:", G, "user_id,xp\n1,2\n".encode("utf-16"))
    assert await counts(pool) == (0, 0, 0)


# -- the CLI, end to end -------------------------------------------------------------------------


def _cli(
    args: list[str], *, dsn: str, redis_url: str, prefix: str, cwd: Path
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "GUILDHOUSE_"))}
    env.update(
        DATABASE_URL=dsn,
        REDIS_URL=redis_url,
        REDIS_PREFIX=prefix,
        LOG_LEVEL="WARNING",
        LOG_FORMAT="text",
        DATA_DIR=str(cwd / "data"),
    )
    return subprocess.run(
        [sys.executable, "-m", "cluster.cli", "leaderboards", "import", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_cli_import(
    dsn: str,
    *,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    good = tmp_path / "good.csv"
    good.write_bytes(csv({ANN: 1200, BOB: 500}))
    bad = tmp_path / "bad.csv"
    bad.write_bytes(
        f"user_id,xp\n{CY},90\n\nnot-an-id,5\n{DEE},-3\n{CY},100\n{DEE},12.5,9\n".encode()
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return _cli(list(args), dsn=dsn, redis_url=redis_url, prefix=redis_prefix, cwd=tmp_path)

    ok = await asyncio.to_thread(run, "--guild", str(G), str(good))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "good.csv: 3 line(s): 2 imported, 1 skipped (0 blank, 1 header, 0 with errors)" in (
        ok.stdout
    )
    assert f"guild {G}: 2 member(s) changed (+1,700 XP), 0 already had this import" in ok.stdout
    assert "leaderboards rebuilt" in ok.stdout
    lb = Leaderboard(redis, Keys(redis_prefix))
    assert await board_of(lb, G) == [(1, ANN, 1200), (2, BOB, 500)]

    report = await asyncio.to_thread(run, "--guild", str(G), str(bad))
    assert report.returncode == 1, report.stdout + report.stderr
    out = report.stdout
    assert "bad.csv: 7 line(s): 1 imported, 6 skipped (1 blank, 1 header, 4 with errors)" in out
    assert "  line 4: user id 'not-an-id' is not a Discord id" in out
    assert "  line 5: xp -3 is negative" in out
    assert f"  line 6: user {CY} is already on line 2 (the first one counts)" in out
    assert "  line 7: expected 2 columns (user_id,xp), found 3" in out
    assert await totals(pool) == {ANN: 1200, BOB: 500, CY: 90}

    dry = await asyncio.to_thread(run, "--guild", str(G), str(good), "--dry-run")
    assert dry.returncode == 0 and dry.stdout.startswith("dry run, nothing written: ")
    assert "0 member(s) would change (+0 XP), 2 already had this import" in dry.stdout

    for args, words in [
        (["--guild", str(G), str(tmp_path / "missing.csv")], "cannot read"),
        (["--guild", "12ab", str(good)], "--guild '12ab' is not a guild id"),
        (["--guild", "0", str(good)], "is not a guild id"),
        (["--guild", str(G), str(tmp_path)], "cannot read"),
    ]:
        refused = await asyncio.to_thread(run, *args)
        assert refused.returncode == 2, refused.stderr
        assert refused.stdout == ""
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("guildhouse: ") and words in lines[0]
    big = tmp_path / "big.csv"
    with big.open("wb") as f:
        f.truncate(16 * 1024 * 1024 + 1)
    too_big = await asyncio.to_thread(run, "--guild", str(G), str(big))
    assert too_big.returncode == 2 and "at most 16,777,216 are accepted" in too_big.stderr
    utf16 = tmp_path / "excel.csv"
    utf16.write_bytes("user_id,xp\n1,2\n".encode("utf-16"))
    refused = await asyncio.to_thread(run, "--guild", str(G), str(utf16))
    assert refused.returncode == 2 and "UTF-16" in refused.stderr
    assert await totals(pool) == {ANN: 1200, BOB: 500, CY: 90}


async def test_boards_wait_for_a_rebuild_in_progress(
    pool: asyncpg.Pool, redis: aioredis.Redis, keys: Keys
) -> None:
    await importer.apply(pool, G, importer.parse(csv({ANN: 300})))
    lb = Leaderboard(redis, keys)
    token = await lb.acquire_rebuild_lock()
    assert token is not None  # another process is rebuilding (from before the import)
    assert await importer.refresh_boards(pool, redis, keys, attempts=2, wait=0) == "busy"
    assert await board_of(lb, G) == []
    await lb.release_rebuild_lock(token)
    assert await importer.refresh_boards(pool, redis, keys, attempts=2, wait=0) == "rebuilt"
    assert await board_of(lb, G) == [(1, ANN, 300)]
