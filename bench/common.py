"""Shared by the benchmarks: Redis/PostgreSQL URLs (embedded when not given) and percentiles."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from cluster.embedded import services


@contextlib.contextmanager
def backing() -> Iterator[dict[str, str]]:
    with (
        tempfile.TemporaryDirectory(prefix="guildhouse-bench-") as tmp,
        services(
            Path(tmp),
            postgres=not os.environ.get("DATABASE_URL"),
            redis=not os.environ.get("REDIS_URL"),
        ) as found,
    ):
        yield {
            "database_url": os.environ.get("DATABASE_URL") or found["postgres"].url,
            "redis_url": os.environ.get("REDIS_URL") or found["redis"].url,
        }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start_sandbox(*args: str) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Run `python -m sandbox` on a free port; returns the process and its banner."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--host", "127.0.0.1", "--port", "0", *args],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.decode()
        if line.startswith("SANDBOX "):
            info = orjson.loads(line[len("SANDBOX ") :])
            with urllib.request.urlopen(f"{info['control_url']}/_sandbox/world") as resp:
                world = orjson.loads(resp.read())
            info["text_channels"] = [
                c["id"] for g in world["guilds"] for c in g["channels"] if int(c["type"]) == 0
            ]
            return proc, info
    proc.kill()
    raise RuntimeError("the sandbox did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
