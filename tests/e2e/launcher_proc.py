"""`guildhouse run` as a real subprocess, for the tests of what an operator sees."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import psutil

CLI = (sys.executable, "-m", "cluster.cli")


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class Launcher:
    """`guildhouse run` as a subprocess in its own session (as a terminal would start it)."""

    def __init__(self, env: dict[str, str], data_dir: Path) -> None:
        self.data_dir = data_dir
        self.env = env
        self.lines: list[str] = []
        self.readyz_seen: list[int] = []  # every /readyz status wait_ready saw, in order
        self.proc = subprocess.Popen(
            [*CLI, "run"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def state(self) -> dict[str, Any]:
        try:
            data = orjson.loads((self.data_dir / "launcher.json").read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return {}
        return data if isinstance(data, dict) and data.get("pid") == self.proc.pid else {}

    def children(self) -> dict[str, int]:
        return {role: int(key[0]) for role, key in (self.state().get("children") or {}).items()}

    def wait_for(self, what: str, check: Any, timeout: float = 120) -> Any:
        """Poll `check` until it returns something true, and return that; fail with the
        launcher's last lines if it exits or `timeout` passes first."""
        deadline = time.monotonic() + timeout
        while not (found := check()):
            assert self.proc.poll() is None, f"launcher exited:\n{''.join(self.lines[-40:])}"
            assert time.monotonic() < deadline, f"{what}:\n{''.join(self.lines[-40:])}"
            time.sleep(0.05)
        return found

    def wait_ready(self) -> int:
        """Its HTTP port, once /readyz answers 200 (the statuses seen are in readyz_seen)."""
        port = int(self.wait_for("no HTTP port recorded", lambda: self.state().get("http_port")))

        def ready() -> bool:
            status = get(f"http://127.0.0.1:{port}/readyz", timeout=5)[0]
            if status:
                self.readyz_seen.append(status)
            return status == 200

        self.wait_for("never ready", ready)
        return port

    def stop(self, grace: float = 60) -> None:
        """SIGTERM, as a service manager stops it; SIGKILL if it is not gone in `grace` s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    """(status, body) of a GET; (0, b"") when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def json_lines(lines: list[str]) -> list[dict[str, Any]]:
    out = []
    for line in lines:
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise AssertionError(f"not a JSON log line: {line!r}") from None
        out.append(entry)
    return out


def launcher_env(**extra: str) -> dict[str, str]:
    """The test's environment without Guildhouse settings, plus `extra`: JSON logs, any port."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DISCORD_", "THROTTLE_", "DATABASE_URL", "REDIS_URL", "DATA_DIR"))
    }
    env.update(LOG_FORMAT="json", LOG_LEVEL="INFO", HTTP_PORT="0", **extra)
    return env
