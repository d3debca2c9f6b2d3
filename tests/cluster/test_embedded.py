"""Embedded PostgreSQL and Redis: start, persistence, sharing, recovery after a crashed run."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest
from waits import until, wait_until

from cluster.embedded import (
    EmbeddedError,
    EmbeddedPostgres,
    EmbeddedRedis,
    NotRunning,
    Service,
    locate,
    services,
)
from ipc.client import create_redis

pytestmark = pytest.mark.slow


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A DATA_DIR outside pytest's base temp: every pytest session that starts on the machine
    resets that to mode 0700, and PostgreSQL, run as `nobody` under root, then can't reach
    its files (a restart, or an initdb in progress, fails)."""
    path = Path(tempfile.mkdtemp(prefix="guildhouse-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from cluster.embedded import services
    with services(Path(sys.argv[1]), postgres=True, redis=True) as found:
        print(found["postgres"].url, found["redis"].url, flush=True)
        time.sleep(600)
""")

# Waits for "go" so that two of it start at the same moment, prints what it got, then keeps it
# (owned servers included) until its stdin closes.
RACER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from cluster.embedded import services
    sys.stdin.readline()
    with services(Path(sys.argv[1]), postgres=True, redis=True) as found:
        print(json.dumps({n: [s.url, s.owned] for n, s in found.items()}), flush=True)
        sys.stdin.read()
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


async def test_start_stop_and_data_survives_restart(data_dir: Path) -> None:
    with services(data_dir, postgres=True, redis=True) as found:
        pg, rd = found["postgres"], found["redis"]
        assert pg.owned and rd.owned
        assert await _write_and_read(pg.url, rd.url, "one") == ("one", "one")
    assert not _alive(pg.pid) and not _alive(rd.pid)
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
    with services(data_dir, postgres=True, redis=True) as found:
        # Redis's AOF and PostgreSQL's data directory both persisted.
        assert await _write_and_read(found["postgres"].url, found["redis"].url, None) == (
            "one",
            "one",
        )


async def test_a_second_process_shares_and_does_not_stop(data_dir: Path) -> None:
    with services(data_dir, postgres=True, redis=True) as owner:
        pg2, rd2 = EmbeddedPostgres(data_dir), EmbeddedRedis(data_dir)
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


async def test_recovers_servers_left_by_a_crashed_run(data_dir: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(data_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        pg_url, rd_url = proc.stdout.readline().split()
        await _write_and_read(pg_url, rd_url, "before-crash")
    finally:
        proc.send_signal(signal.SIGKILL)  # the launcher dies; its servers keep running
        proc.wait()
    with services(data_dir, postgres=True, redis=True) as found:
        # Adopted, not started twice on the same data directory.
        assert found["postgres"].url == pg_url and found["redis"].url == rd_url
        assert found["postgres"].owned and found["redis"].owned
        assert await _write_and_read(pg_url, rd_url, None) == ("before-crash", "before-crash")
        pids = found["postgres"].pid, found["redis"].pid
    assert not any(_alive(p) for p in pids)  # and the adopter stopped them


async def test_stale_pid_files_of_dead_servers(data_dir: Path) -> None:
    with services(data_dir, postgres=True, redis=True) as found:
        await _write_and_read(found["postgres"].url, found["redis"].url, "kept")
        pg_pid, rd_pid = found["postgres"].pid, found["redis"].pid
    assert pg_pid and rd_pid
    # Leave pid files pointing at live processes that are not our servers (pid reuse):
    # PostgreSQL alone would refuse to start over such a postmaster.pid.
    decoy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lines = [
            str(decoy.pid),
            str(data_dir / "postgres"),
            "0",
            "5999",
            "",
            "127.0.0.1",
            "0 0",
            "ready",
        ]
        (data_dir / "postgres" / "postmaster.pid").write_text("\n".join(lines) + "\n")
        (data_dir / "redis" / "server.json").write_text(f"{decoy.pid} 6999\n")
        with services(data_dir, postgres=True, redis=True) as found:
            assert ":5999/" not in found["postgres"].url
            assert await _write_and_read(found["postgres"].url, found["redis"].url, None) == (
                "kept",
                "kept",
            )
        assert decoy.poll() is None  # the decoy was never touched
    finally:
        decoy.kill()
        decoy.wait()


def test_half_initialised_data_dir_is_not_mistaken_for_data(data_dir: Path) -> None:
    (data_dir / "postgres.initdb").mkdir()
    (data_dir / "postgres.initdb" / "junk").write_text("crash during initdb")
    with services(data_dir, postgres=True, redis=False) as found:
        assert found["postgres"].owned
    assert not (data_dir / "postgres.initdb").exists()
    assert (data_dir / "postgres" / "PG_VERSION").exists()


def test_unrelated_directory_is_refused(data_dir: Path) -> None:
    (data_dir / "postgres").mkdir()
    (data_dir / "postgres" / "my-notes.txt").write_text("not a database")
    from cluster.embedded import EmbeddedError

    with (
        pytest.raises(EmbeddedError, match="not a PostgreSQL data directory"),
        services(data_dir, postgres=True, redis=False),
    ):
        pass
    assert (data_dir / "postgres" / "my-notes.txt").exists()


def test_run_uses_embedded_services_and_stops_them_on_sigterm(data_dir: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "DISCORD_TOKEN")
    }
    env.update(DATA_DIR=str(data_dir), LOG_FORMAT="json", HTTP_PORT="0")
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
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
    assert asyncio.run(_applied(data_dir)) >= 1


async def _applied(data_dir: Path) -> int:
    with services(data_dir, postgres=True, redis=False) as found:
        conn = await asyncpg.connect(found["postgres"].url)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM schema_migrations"))
        finally:
            await conn.close()


def _tree(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under root with its modification time and content."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _descendants() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def test_locate_with_nothing_running_starts_nothing_and_writes_nothing(data_dir: Path) -> None:
    data = data_dir / "never-run"
    before = _descendants()
    with pytest.raises(NotRunning) as caught:
        locate(data)
    message = str(caught.value)
    assert "\n" not in message
    assert "PostgreSQL and Redis are not running" in message
    assert f"DATA_DIR={data}" in message and "start `guildhouse run` first" in message
    assert set(caught.value.missing) == {"postgres", "redis"}
    assert not data.exists()
    assert _descendants() == before


def test_locate_ignores_files_of_servers_that_are_gone(data_dir: Path) -> None:
    with services(data_dir, postgres=True, redis=True) as found:
        pg_pid, rd_pid = found["postgres"].pid, found["redis"].pid
    # What a machine crash leaves behind: pid files naming a dead and a live non-server pid.
    lines = [str(pg_pid), str(data_dir / "postgres"), "0", "5999", "", "127.0.0.1", "0 0", "ready"]
    (data_dir / "postgres" / "postmaster.pid").write_text("\n".join(lines) + "\n")
    (data_dir / "redis" / "server.json").write_text(f"{os.getpid()} {6999}\n")
    before, children = _tree(data_dir), _descendants()
    with pytest.raises(NotRunning, match=r"pid \d+ of .* is gone") as caught:
        locate(data_dir)
    assert "PostgreSQL and Redis" in str(caught.value)
    assert _tree(data_dir) == before  # no lock taken (that would create or touch a file)
    assert _descendants() == children
    assert not _alive(pg_pid) and not _alive(rd_pid)


async def test_locate_finds_the_running_pair(data_dir: Path) -> None:
    with services(data_dir, postgres=True, redis=True) as owner:
        found = locate(data_dir)
        assert {n: (s.url, s.pid, s.owned) for n, s in found.items()} == {
            n: (s.url, s.pid, False) for n, s in owner.items()
        }
        assert await _write_and_read(found["postgres"].url, found["redis"].url, "seen") == (
            "seen",
            "seen",
        )
        assert set(locate(data_dir, redis=False)) == {"postgres"}
        # One of the two gone: the message names that one only.
        os.kill(owner["redis"].pid or 0, signal.SIGKILL)
        await until("the killed Redis gone", lambda: not _alive(owner["redis"].pid))
        with pytest.raises(NotRunning, match="Redis is not running") as caught:
            locate(data_dir)
        assert "PostgreSQL" not in str(caught.value)
        assert set(locate(data_dir, redis=False)) == {"postgres"}


async def test_two_processes_starting_together_share_one_pair(data_dir: Path) -> None:
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(data_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for racer in racers:
            assert racer.stdin is not None
            racer.stdin.write("go\n")
            racer.stdin.flush()
        got: list[dict[str, list[str | bool]]] = []
        for racer in racers:
            assert racer.stdout is not None
            line = racer.stdout.readline()
            assert line, "a racer exited without servers"
            got.append(json.loads(line))
        for name in ("postgres", "redis"):
            assert got[0][name][0] == got[1][name][0]
            assert sorted(bool(g[name][1]) for g in got) == [False, True]  # exactly one owner
        assert await _write_and_read(
            str(got[0]["postgres"][0]), str(got[0]["redis"][0]), "shared"
        ) == ("shared", "shared")
    finally:
        for racer in racers:
            assert racer.stdin is not None
            racer.stdin.close()
        codes = [racer.wait(60) for racer in racers]
    assert codes == [0, 0]
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
    assert not (data_dir / "redis" / "server.json").exists()


def test_a_waiting_start_takes_over_when_the_lock_holder_lets_go(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from cluster.embedded import _OwnerLock

    caplog.set_level(logging.INFO, logger="cluster.embedded")
    holder = _OwnerLock(data_dir / "redis.lock")
    assert holder.try_acquire()
    waiting = EmbeddedRedis(data_dir)
    with pytest.raises(EmbeddedError, match=r"held redis\.lock for 0\.2 s without embedded Redis"):
        waiting.start(wait=0.2)
    caplog.clear()
    got: list[Service] = []
    thread = threading.Thread(target=lambda: got.append(waiting.start()))
    thread.start()
    try:
        wait_until("the start waiting for the lock", lambda: "waiting for it" in caplog.text, 30)
        holder.release()  # the other process died before its server came up
    finally:
        thread.join(60)
    try:
        assert got and got[0].owned
        assert sum("waiting for it" in r.message for r in caplog.records) == 1  # said once
    finally:
        waiting.stop()
