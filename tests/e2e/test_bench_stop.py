"""A benchmark stopped by SIGTERM or SIGHUP (`timeout`, a cancelled CI job, a closed terminal)
stops what it started, as Ctrl-C does: the Guildhouse worker, the embedded PostgreSQL and Redis
(which run in sessions of their own, made to outlive a crashed launcher) and the temporary
directory they use, and exits 128 + the signal's number (bench/interrupt.py).

The run is `startup` with one worker for two shards and a 60 s identify interval: the second
shard waits a minute for its turn, so a run stopped once the worker is connected is stopped
while it waits for READY, with the servers and the worker up."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(150)]

ARGS = ("--shards", "2", "--clusters", "1", "--max-concurrency", "1", "--interval", "60")
STARTED_WITHIN = 60.0  # s for PostgreSQL, Redis and the worker to be up
STOPPED_WITHIN = 45.0  # s from the signal to the exit: the worker's drain, pg_ctl stop, Redis's

Found = dict[str, list[psutil.Process]]


def _gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


def _started(bench: psutil.Process, tmp: Path) -> Found:
    """What the run started, by kind: its descendants (Redis, the worker, pg_ctl, initdb...),
    and the postmaster, which pg_ctl detaches (found by its data directory, under `tmp`), with
    its backends."""
    found: Found = {"postgres": [], "redis": [], "worker": [], "other": []}
    with contextlib.suppress(psutil.Error):
        for proc in bench.children(recursive=True):
            line = _cmdline(proc)
            kind = "redis" if "redis-server" in line else "worker" if "spawn_main" in line else ""
            found[kind or "other"].append(proc)
    for proc in psutil.process_iter():
        if str(tmp) not in _cmdline(proc):
            continue
        with contextlib.suppress(psutil.Error):
            if proc.name() == "postgres":
                found["postgres"] += [proc, *proc.children(recursive=True)]
            else:  # initdb, pg_ctl
                found["other"].append(proc)
    return found


def _connected(found: Found) -> bool:
    """Are PostgreSQL and Redis up, and the worker past its imports (connected to them)?"""
    if not (found["postgres"] and found["redis"] and found["worker"]):
        return False
    with contextlib.suppress(psutil.Error):
        return any(
            c.status == psutil.CONN_ESTABLISHED for c in found["worker"][0].net_connections()
        )
    return False


def _starting(found: Found) -> bool:
    """Is PostgreSQL being set up (initdb, pg_ctl start), Redis not yet?"""
    return bool(found["other"] or found["postgres"]) and not found["redis"]


def _stop_and_check(
    tmp_path: Path, repo_root: Path, argv: list[str], when: Callable[[Found], bool], sig: int
) -> None:
    """Run `argv` until `when(what it started)`, send `sig`, and check that it exits with
    128 + sig within STOPPED_WITHIN, leaving no process and no temporary directory behind."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["TMPDIR"] = str(tmp)  # where backing() makes its directory
    err_path = tmp_path / "stderr"
    seen: list[psutil.Process] = []
    with (tmp_path / "stdout").open("wb") as out, err_path.open("wb") as err:
        run = subprocess.Popen(
            [sys.executable, *argv], cwd=repo_root, env=env, stdout=out, stderr=err
        )
    try:
        bench = psutil.Process(run.pid)
        deadline = time.monotonic() + STARTED_WITHIN
        while True:
            found = _started(bench, tmp)
            seen += [p for procs in found.values() for p in procs]
            if when(found):
                break
            assert run.poll() is None, err_path.read_text()[-3000:]
            assert time.monotonic() < deadline, f"not started within {STARTED_WITHIN}s: {found}"
            time.sleep(0.02)
        sent = time.monotonic()
        run.send_signal(sig)
        try:
            code = run.wait(STOPPED_WITHIN)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {STOPPED_WITHIN}s after {signal.Signals(sig).name}")
        print(f"stopped {time.monotonic() - sent:.1f}s after {signal.Signals(sig).name}")
        # Its children were waited for, and pg_ctl stop waits for the postmaster; a resource
        # tracker (multiprocessing's) leaves when its parent has exited.
        left = [p for p in seen if not _gone(p)]
        if left:
            time.sleep(3)
            left = [p for p in left if not _gone(p)]
        assert not left, [(p.pid, _cmdline(p)) for p in left]
        assert not [p for p in psutil.process_iter() if str(tmp) in _cmdline(p)]
        assert not list(tmp.iterdir()), "the temporary directory was not removed"
        stderr = err_path.read_text()
        assert code == 128 + sig, stderr[-3000:]
        assert f"bench: stopped by {signal.Signals(sig).name}" in stderr
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        for proc in seen:  # what this test started, should it have failed
            with contextlib.suppress(psutil.Error):
                if not _gone(proc):
                    proc.kill()


def test_sigterm_to_python_m_bench_stops_the_worker_and_the_servers(
    tmp_path: Path, repo_root: Path
) -> None:
    """The signal goes to `python -m bench`, which passes it on to the benchmark's process and
    waits for it; the worker is connected, the run waits for the second shard's READY."""
    argv = ["-m", "bench", "startup", *ARGS]
    _stop_and_check(tmp_path, repo_root, argv, _connected, signal.SIGTERM)


def test_sighup_while_the_servers_start_stops_them_once_up(tmp_path: Path, repo_root: Path) -> None:
    """A stop that comes while PostgreSQL is being set up waits until both servers are up,
    then stops them: none is left half-started, with nothing to stop it."""
    argv = ["-m", "bench.startup", *ARGS]
    _stop_and_check(tmp_path, repo_root, argv, _starting, signal.SIGHUP)
