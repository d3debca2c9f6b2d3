"""The soak's world: its own PostgreSQL and Redis (so it can restart them), the sandbox, and a
real `guildhouse run` launcher (two clusters) pointed at all three, with what it logs."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil

from bench.common import start_sandbox, stop
from cluster.embedded import EmbeddedPostgres, EmbeddedRedis, Service

SHARDS, CLUSTERS = 4, 2
GUILDS, MEMBERS = 12, 8
HEARTBEAT_MS = 3000  # so that a stalled heartbeat ACK is noticed within seconds


@dataclass
class LogLine:
    at: float  # time.monotonic() when it was read
    text: str


def _http_get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


@dataclass
class Launcher:
    """`guildhouse run` as a subprocess in its own session; every line it prints is kept."""

    env: dict[str, str]
    data_dir: Path
    lines: list[LogLine]
    proc: subprocess.Popen[str] = field(init=False)

    def __post_init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cluster.cli", "run"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(LogLine(time.monotonic(), line.rstrip("\n")))

    def state(self) -> dict[str, Any]:
        try:
            data = orjson.loads((self.data_dir / "launcher.json").read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return {}
        return data if isinstance(data, dict) and data.get("pid") == self.proc.pid else {}

    def workers(self) -> dict[str, int]:
        """{"cluster-0": pid, ...} as the launcher recorded them."""
        children = self.state().get("children") or {}
        return {r: int(k[0]) for r, k in children.items() if r.startswith("cluster-")}

    def ready(self) -> bool:
        port = self.state().get("http_port")
        return bool(port) and _http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, grace: float = 60) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill()


class Rig:
    """Everything the soak runs against; `start()` then `close()`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.postgres = EmbeddedPostgres(root / "services")
        self.redis = EmbeddedRedis(root / "services")
        self.lines: list[LogLine] = []
        self.launcher: Launcher | None = None
        self.launches = 0
        self.sandbox: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self.pg: Service | None = None
        self.rd: Service | None = None

    @property
    def control(self) -> str:
        return str(self.info["control_url"])

    def start_services(self) -> None:
        self.pg = self.postgres.start()
        self.rd = self.redis.start()
        self.sandbox, self.info = start_sandbox(
            "--guilds",
            str(GUILDS),
            "--members",
            str(MEMBERS),
            "--identify-interval",
            "0.2",
            "--max-concurrency",
            "4",
            "--heartbeat-ms",
            str(HEARTBEAT_MS),
            "--exit-with-parent",
        )

    def env(self) -> dict[str, str]:
        assert self.pg is not None and self.rd is not None
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DISCORD_", "THROTTLE_", "DATABASE_URL", "REDIS_URL", "DATA_DIR"))
        }
        env.update(
            LOG_FORMAT="json",
            LOG_LEVEL="WARNING",
            HTTP_PORT="0",
            DISCORD_TOKEN=self.info["token"],
            DISCORD_API_URL=self.info["api_url"],
            DATABASE_URL=self.pg.url,
            REDIS_URL=self.rd.url,
            SHARD_COUNT=str(SHARDS),
            CLUSTER_COUNT=str(CLUSTERS),
            DATA_DIR=str(self.root / "run"),
            THROTTLE_USER="off",
            THROTTLE_COMMAND="off",
            THROTTLE_GUILD="off",
        )
        return env

    def sync_commands(self) -> None:
        subprocess.run(
            [sys.executable, "-m", "cluster.cli", "commands", "sync"],
            env=self.env(),
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def launch(self) -> Launcher:
        self.launcher = Launcher(self.env(), self.root / "run", self.lines)
        self.launches += 1
        return self.launcher

    def wait_ready(self, within: float) -> float | None:
        """Seconds until the launcher's /readyz says every shard is READY; None if not within."""
        began = time.monotonic()
        while time.monotonic() - began < within:
            if self.launcher is not None and self.launcher.ready():
                return time.monotonic() - began
            time.sleep(0.2)
        return None

    def rss(self) -> dict[int, int]:
        """{worker pid: resident bytes} of the running launcher's workers."""
        out = {}
        for pid in (self.launcher.workers() if self.launcher else {}).values():
            with contextlib.suppress(psutil.Error):
                out[pid] = psutil.Process(pid).memory_info().rss
        return out

    def close(self) -> None:
        if self.launcher is not None:
            self.launcher.stop()
        if self.sandbox is not None:
            stop(self.sandbox)
        for server in (self.redis, self.postgres):
            try:
                server.stop()
            except Exception as exc:
                print(f"soak: stopping {server.label}: {exc}", file=sys.stderr)
