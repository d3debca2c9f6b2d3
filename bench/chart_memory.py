"""What the statistics chart costs a worker: its RSS before and after it draws its first chart,
and whether Pillow is loaded before (it should not be: the renderer is imported on first use).

One Guildhouse worker (every feature loaded, the members intent on) on a sandbox world of
`--guilds` guilds; after READY and `--settle` seconds its RSS is read, then `stats` is asked in
one server (the chart is drawn and sent), and RSS is read again after the answer and `--settle`
seconds. Pillow's presence is read from the worker's memory map (its `_imaging` library).

    python -m bench.chart_memory [--guilds 100] [--settle 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import urllib.request
from typing import Any

import orjson
import psutil

from bench import interrupt
from bench.common import backing, guildhouse_worker, start_sandbox, stop


def _pillow_loaded(pid: int) -> bool:
    return any("PIL" in m.path for m in psutil.Process(pid).memory_maps())


async def _rss(pid: int, settle: float) -> int:
    await asyncio.sleep(settle)  # not in a thread: a stopped run does not wait for it
    return int(psutil.Process(pid).memory_info().rss)


def _control(info: dict[str, Any], method: str, path: str, body: Any = None) -> Any:
    req = urllib.request.Request(
        info["control_url"] + path,
        data=None if body is None else orjson.dumps(body),
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=70) as resp:
        return orjson.loads(resp.read() or b"null")


def _ask_stats(info: dict[str, Any]) -> bool:
    """Say `!stats` as a guild's owner; True once the answer with its chart is in the outbox."""
    world = _control(info, "GET", "/_sandbox/world")
    g = world["guilds"][0]
    general = next(c["id"] for c in g["channels"] if c["name"] == "general")
    seq = max(
        (int(e["seq"]) for e in _entries(_control(info, "GET", "/_sandbox/outbox"))), default=0
    )
    _control(
        info,
        "POST",
        "/_sandbox/messages",
        {"channel_id": general, "author_id": g["owner_id"], "content": "!stats"},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = _entries(
            _control(info, "GET", f"/_sandbox/outbox?channel_id={general}&after={seq}&wait=5")
        )
        for e in got:
            seq = max(seq, int(e["seq"]))
            inner = e.get("data")
            data: dict[str, Any] = inner if isinstance(inner, dict) else e
            if data.get("attachments"):
                return True
    return False


def _entries(data: Any) -> list[dict[str, Any]]:
    return list(data.get("entries", data) if isinstance(data, dict) else data)


async def run(guilds: int, settle: float) -> dict[str, Any]:
    with backing() as urls:
        proc, info = start_sandbox(
            "--guilds",
            str(guilds),
            "--members",
            "50",
            "--identify-interval",
            "0.2",
            "--route-limit",
            "100000",
        )
        try:
            async with guildhouse_worker(
                info["token"], info["api_url"], info["gateway_url"], urls, shards=2, name="chart"
            ) as (pid, _):
                before = await _rss(pid, settle)
                pil_before = _pillow_loaded(pid)
                answered = await asyncio.to_thread(_ask_stats, info)
                after = await _rss(pid, settle)
                pil_after = _pillow_loaded(pid)
        finally:
            stop(proc)
    return {
        "bench": "chart_memory",
        "params": {"guilds": guilds, "settle": settle},
        "chart_sent": answered,
        "rss_mib_before": round(before / 2**20, 1),
        "rss_mib_after": round(after / 2**20, 1),
        "rss_mib_added": round((after - before) / 2**20, 1),
        "pillow_loaded_before": pil_before,
        "pillow_loaded_after": pil_after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--guilds", type=int, default=100)
    parser.add_argument("--settle", type=float, default=3.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.guilds, args.settle))))


if __name__ == "__main__":
    interrupt.main(main)
