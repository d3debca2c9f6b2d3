"""Embedded PostgreSQL and Redis: start, persistence, sharing, recovery after a crashed run."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import asyncpg
import psutil
import pytest

from cluster.embedded import EmbeddedPostgres, EmbeddedRedis, services
from ipc.client import create_redis

pytestmark = pytest.mark.slow

HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from cluster.embedded import services
    with services(Path(sys.argv[1]), postgres=True, redis=True) as found:
        print(found["postgres"].url, found["redis"].url, flush=True)
        time.sleep(600)
""")


async def _write_and_read(pg_url: str, redis_url: str, value: str | None) -> tuple[str, str]:
    conn = await asyncpg.connect(pg_url)
    r = create_redis(redis_url)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS kv (k text PRIMARY KEY, v text)")
        if value is not None:
            await conn.execute(
                "INSERT INTO kv VALUES ('x', $1) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                value,
            )
            await r.set("gh:x", value)
        return (
            await conn.fetchval("SELECT v FROM kv WHERE k = 'x'"),
            (await r.get("gh:x") or b"").decode(),
        )
    finally:
        await conn.close()
        await r.aclose()


def _alive(pid: int | None) -> bool:
    return pid is not None and psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"


async def test_start_stop_and_data_survives_restart(tmp_path: Path) -> None:
    with services(tmp_path, postgres=True, redis=True) as found:
        pg, rd = found["postgres"], found["redis"]
        assert pg.owned and rd.owned
        assert await _write_and_read(pg.url, rd.url, "one") == ("one", "one")
    assert not _alive(pg.pid) and not _alive(rd.pid)
    assert not (tmp_path / "postgres" / "postmaster.pid").exists()
    with services(tmp_path, postgres=True, redis=True) as found:
        # Redis's AOF and PostgreSQL's data directory both persisted.
        assert await _write_and_read(found["postgres"].url, found["redis"].url, None) == (
            "one",
            "one",
        )


async def test_a_second_process_shares_and_does_not_stop(tmp_path: Path) -> None:
    with services(tmp_path, postgres=True, redis=True) as owner:
        pg2, rd2 = EmbeddedPostgres(tmp_path), EmbeddedRedis(tmp_path)
        shared_pg, shared_rd = pg2.start(), rd2.start()
        assert not shared_pg.owned and not shared_rd.owned
        assert shared_pg.url == owner["postgres"].url and shared_rd.url == owner["redis"].url
        pg2.stop()
        rd2.stop()
        # The owner's servers are untouched by the guest's stop.
        assert await _write_and_read(owner["postgres"].url, owner["redis"].url, "two") == (
            "two",
            "two",
        )


async def test_recovers_servers_left_by_a_crashed_run(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        pg_url, rd_url = proc.stdout.readline().split()
        await _write_and_read(pg_url, rd_url, "before-crash")
    finally:
        proc.send_signal(signal.SIGKILL)  # the launcher dies; its servers keep running
        proc.wait()
    with services(tmp_path, postgres=True, redis=True) as found:
        # Adopted, not started twice on the same data directory.
        assert found["postgres"].url == pg_url and found["redis"].url == rd_url
        assert found["postgres"].owned and found["redis"].owned
        assert await _write_and_read(pg_url, rd_url, None) == ("before-crash", "before-crash")
        pids = found["postgres"].pid, found["redis"].pid
    assert not any(_alive(p) for p in pids)  # and the adopter stopped them


async def test_stale_pid_files_of_dead_servers(tmp_path: Path) -> None:
    with services(tmp_path, postgres=True, redis=True) as found:
        await _write_and_read(found["postgres"].url, found["redis"].url, "kept")
        pg_pid, rd_pid = found["postgres"].pid, found["redis"].pid
    assert pg_pid and rd_pid
    # Leave pid files pointing at live processes that are not our servers (pid reuse):
    # PostgreSQL alone would refuse to start over such a postmaster.pid.
    decoy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lines = [
            str(decoy.pid),
            str(tmp_path / "postgres"),
            "0",
            "5999",
            "",
            "127.0.0.1",
            "0 0",
            "ready",
        ]
        (tmp_path / "postgres" / "postmaster.pid").write_text("\n".join(lines) + "\n")
        (tmp_path / "redis" / "server.json").write_text(f"{decoy.pid} 6999\n")
        with services(tmp_path, postgres=True, redis=True) as found:
            assert ":5999/" not in found["postgres"].url
            assert await _write_and_read(found["postgres"].url, found["redis"].url, None) == (
                "kept",
                "kept",
            )
        assert decoy.poll() is None  # the decoy was never touched
    finally:
        decoy.kill()
        decoy.wait()


def test_half_initialised_data_dir_is_not_mistaken_for_data(tmp_path: Path) -> None:
    (tmp_path / "postgres.initdb").mkdir()
    (tmp_path / "postgres.initdb" / "junk").write_text("crash during initdb")
    with services(tmp_path, postgres=True, redis=False) as found:
        assert found["postgres"].owned
    assert not (tmp_path / "postgres.initdb").exists()
    assert (tmp_path / "postgres" / "PG_VERSION").exists()


def test_unrelated_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "postgres").mkdir()
    (tmp_path / "postgres" / "my-notes.txt").write_text("not a database")
    from cluster.embedded import EmbeddedError

    with (
        pytest.raises(EmbeddedError, match="not a PostgreSQL data directory"),
        services(tmp_path, postgres=True, redis=False),
    ):
        pass
    assert (tmp_path / "postgres" / "my-notes.txt").exists()


def test_run_uses_embedded_services_and_stops_them_on_sigterm(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "DISCORD_TOKEN")
    }
    env.update(DATA_DIR=str(tmp_path), LOG_FORMAT="json", HTTP_PORT="0")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cluster.cli", "run"], env=env, stdout=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "guildhouse is up" in line:
                break
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, "".join(lines)
    text = "".join(lines) + rest
    assert "starting embedded PostgreSQL" in text and "starting embedded Redis" in text
    assert "stopping embedded PostgreSQL" in text
    assert not (tmp_path / "postgres" / "postmaster.pid").exists()
    assert asyncio.run(_applied(tmp_path)) >= 1


async def _applied(data_dir: Path) -> int:
    with services(data_dir, postgres=True, redis=False) as found:
        conn = await asyncpg.connect(found["postgres"].url)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM schema_migrations"))
        finally:
            await conn.close()
