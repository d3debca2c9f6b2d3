"""Who owns a DATA_DIR's run, and that nothing of a run outlives its launcher.

Three rules, each closing a way a deployment answers twice or leaves processes behind:

- One launcher per DATA_DIR (per cluster id, when CLUSTER_ID is set). It holds an exclusive
  `flock` on `launcher.lock` for its whole life; the kernel drops the lock when the launcher
  dies, however it dies. A second `guildhouse run` finds the lock held and exits with one line
  naming the holder's pid and HTTP port, read from `launcher.json`.
- Children die with their launcher. Workers and the sandbox ask the kernel for a signal when
  their parent dies (`PR_SET_PDEATHSIG`, Linux) and also watch `getppid()` from a thread
  (everywhere, and for the race where the parent died before the request was made). A worker
  that sees its launcher gone stops as on SIGTERM and is hard-exited if that takes longer than
  `ORPHAN_EXIT` seconds, so a SIGKILLed launcher's shards are gone within 5 s.
- A launcher that takes over a DATA_DIR whose previous launcher died checks the processes that
  launcher recorded in `launcher.json` (pid and start time, so a reused pid is never touched)
  and kills any still alive before it starts a shard: no shard ever runs twice.

The embedded PostgreSQL and Redis are not children in this sense: they outlive a crashed
launcher on purpose and are adopted by the next one (cluster/embedded.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import orjson
import psutil

log = logging.getLogger(__name__)

LOCK_FILE = "launcher.lock"
STATE_FILE = "launcher.json"
# After its launcher is gone, a worker gets this long to stop cleanly before it is exited hard.
ORPHAN_EXIT = 4.0
_PR_SET_PDEATHSIG = 1


class LauncherBusy(RuntimeError):
    """Another launcher runs on this DATA_DIR; the message names it."""


def _names(cluster_id: int | None) -> tuple[str, str]:
    if cluster_id is None:
        return LOCK_FILE, STATE_FILE
    return f"launcher-{cluster_id}.lock", f"launcher-{cluster_id}.json"


class OwnerLock:
    """An exclusive flock held for the owner's lifetime (released by the kernel on death)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._fh is not None

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


def _process_key(pid: int) -> list[float] | None:
    """[pid, start time] of a live process, the pair that names it across pid reuse."""
    try:
        return [float(pid), psutil.Process(pid).create_time()]
    except psutil.Error:
        return None


class LauncherLock:
    """The one launcher of a DATA_DIR, and what it records about its run for its successor."""

    def __init__(self, data_dir: Path, cluster_id: int | None = None) -> None:
        lock_name, state_name = _names(cluster_id)
        self.data_dir = data_dir
        self.lock = OwnerLock(data_dir / lock_name)
        self.state_path = data_dir / state_name
        self._state: dict[str, Any] = {}

    def acquire(self) -> dict[str, Any] | None:
        """Take the lock; returns what the previous launcher recorded (None if nothing).

        Raises LauncherBusy if a live launcher holds it."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.lock.try_acquire():
            raise LauncherBusy(self._busy_message())
        previous = self._read()
        self._state = {"pid": os.getpid(), "started": time.time(), "http_port": None}
        self._write()
        return previous

    def _read(self) -> dict[str, Any] | None:
        try:
            data = orjson.loads(self.state_path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def _busy_message(self) -> str:
        state = self._read() or {}
        pid = state.get("pid", "?")
        port = state.get("http_port")
        where = f"HTTP port {port}" if port else "still starting, no HTTP port yet"
        return (
            f"another launcher is running on {self.data_dir} (pid {pid}, {where}); "
            "stop it first, or use another DATA_DIR"
        )

    def _write(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(self._state))
        tmp.replace(self.state_path)

    def record(self, **fields: Any) -> None:
        """Add to the run's record (HTTP port; the sandbox's pid)."""
        self._state.update(fields)
        self._write()

    def record_child(self, role: str, pid: int | None) -> None:
        """Remember a child process (`cluster-0`, `sandbox`) by pid and start time."""
        children: dict[str, Any] = self._state.setdefault("children", {})
        key = _process_key(pid) if pid is not None else None
        if key is None:
            children.pop(role, None)
        else:
            children[role] = key
        self._write()

    def release(self) -> None:
        if self.lock.held:
            self.state_path.unlink(missing_ok=True)
            self.lock.release()


def reap_leftovers(previous: dict[str, Any] | None, *, timeout: float = 10.0) -> list[str]:
    """Kill the processes a dead launcher recorded that are still alive; what was killed.

    Children normally die with their launcher (see `die_with_parent`); this is the net under
    it (a kernel without PDEATHSIG, a child stuck in uninterruptible sleep past its exit)."""
    children = (previous or {}).get("children") or {}
    victims: list[tuple[str, psutil.Process]] = []
    for role, key in children.items():
        try:
            pid, started = int(key[0]), float(key[1])
            proc = psutil.Process(pid)
            if abs(proc.create_time() - started) > 0.01 or pid == os.getpid():
                continue  # the pid was reused by an unrelated process
        except (psutil.Error, TypeError, ValueError, IndexError):
            continue
        victims.append((role, proc))
    for role, proc in victims:
        log.warning(
            "%s (pid %d) of a launcher that is gone is still running; stopping it",
            role,
            proc.pid,
        )
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs([p for _, p in victims], timeout=timeout)
    return [role for role, _ in victims]


def _set_pdeathsig(sig: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(parent_pid: int, *, grace: float = ORPHAN_EXIT) -> None:
    """Called first thing in a child: stop (SIGTERM to ourselves) when `parent_pid` dies, and
    exit hard `grace` seconds later if the stop has not finished by then."""
    _set_pdeathsig(signal.SIGTERM)

    def watch() -> None:
        # The kernel's signal covers the common case at once; this loop covers the race with
        # a parent that died before prctl, and systems without prctl. Either way the hard
        # exit below bounds how long an orphan can keep its gateway sessions.
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        with contextlib.suppress(ProcessLookupError):
            os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
