"""Finding the sandbox: DATA_DIR/sandbox.json, which `guildhouse run` writes when it starts a
sandbox (with the pid of the launcher that runs it) and removes when it stops it."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import orjson
import psutil

from cluster.console.errors import ChatError

SANDBOX_FILE = "sandbox.json"


def write_sandbox_file(path: Path, info: dict[str, Any]) -> None:
    """Publish a running sandbox's addresses (with `owner_pid`, the launcher that runs it)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps(info))
    tmp.replace(path)


def remove_sandbox_file(path: Path) -> None:
    """Remove the file only if this process wrote it: another launcher's sandbox stays found."""
    with contextlib.suppress(OSError, orjson.JSONDecodeError, TypeError, ValueError):
        if int(orjson.loads(path.read_bytes()).get("owner_pid", 0)) == os.getpid():
            path.unlink(missing_ok=True)


def running_sandbox(data_dir: Path) -> dict[str, Any]:
    """The sandbox a running launcher started under DATA_DIR; ChatError if there is none."""
    path = data_dir / SANDBOX_FILE
    hint = (
        "start `guildhouse run` without DISCORD_TOKEN first, or pass --url of a sandbox's "
        "control API"
    )
    try:
        info = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        raise ChatError(f"no sandbox is running ({path} is missing): {hint}") from None
    owner = info.get("owner_pid") if isinstance(info, dict) else None
    if not isinstance(owner, int) or not psutil.pid_exists(owner):
        raise ChatError(f"no sandbox is running (the launcher that wrote {path} is gone): {hint}")
    return dict(info)


def find_control_url(data_dir: Path, url: str | None) -> str:
    if url:
        return url.rstrip("/")
    return str(running_sandbox(data_dir)["control_url"]).rstrip("/")
