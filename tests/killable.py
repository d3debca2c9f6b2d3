"""Embedded PostgreSQL and Redis of a test's own, which it can kill -9 and bring back.

The servers are cluster/embedded.py's, and so is the way back: `kill` sends SIGKILL to the
server process (for PostgreSQL, the postmaster: its backends notice and exit by themselves)
and waits until it is gone; `restart` starts the server again on the same port over the same
data (PostgreSQL recovers through its WAL, Redis reloads its AOF), as the launcher's watch
does. Both block: from async code, call them through `asyncio.to_thread`.
"""

from __future__ import annotations

import time
from pathlib import Path

from cluster.embedded import EmbeddedError, EmbeddedPostgres, EmbeddedRedis

WAIT = 60.0


class _Killable:
    def __init__(self, embedded: EmbeddedPostgres | EmbeddedRedis) -> None:
        self.embedded = embedded
        self.url = ""

    @property
    def running(self) -> bool:
        return self.embedded.alive()

    def start(self) -> str:
        self.url = self.embedded.start().url
        return self.url

    def kill(self) -> None:
        self.embedded.kill()
        assert not self.embedded.alive(), "the server survived SIGKILL"

    def restart(self) -> None:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                service = self.embedded.restart()
            except EmbeddedError:
                # One attempt failed (a PostgreSQL whose killed backends still hold its shared
                # memory past the wait, say): the launcher's watch tries again, and so do we.
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)
                continue
            assert service.url == self.url, "back on another port"
            return

    def stop(self) -> None:
        self.embedded.stop()


class KillablePostgres(_Killable):
    def __init__(self, data_dir: Path) -> None:
        super().__init__(EmbeddedPostgres(data_dir))


class KillableRedis(_Killable):
    def __init__(self, data_dir: Path) -> None:
        super().__init__(EmbeddedRedis(data_dir))
