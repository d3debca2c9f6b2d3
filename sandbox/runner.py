"""`python -m sandbox` / `guildhouse sandbox`: run the sandbox on its own."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

import orjson

from sandbox.ratelimit import Limits
from sandbox.server import Sandbox, SandboxConfig


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="guildhouse sandbox",
        description="A local Discord (gateway + REST, API v10) for bots and tests. Prints its "
        "URLs and token, then serves until interrupted.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8700, help="port (0: any free port)")
    p.add_argument("--guilds", type=int, default=20, help="guilds in the world")
    p.add_argument("--members", type=int, default=20, help="members of a typical guild")
    p.add_argument("--seed", type=int, default=1, help="seed of the world")
    p.add_argument(
        "--max-concurrency",
        type=int,
        default=1,
        help="IDENTIFY buckets (session_start_limit.max_concurrency)",
    )
    p.add_argument(
        "--identify-interval",
        type=float,
        default=5.0,
        help="seconds between IDENTIFYs in one bucket (Discord: 5)",
    )
    p.add_argument("--shards", type=int, default=None, help="shard count /gateway/bot recommends")
    p.add_argument("--heartbeat-ms", type=int, default=41250, help="heartbeat interval")
    p.add_argument("--global-limit", type=int, default=50, help="REST requests per second")
    p.add_argument("--route-limit", type=int, default=5, help="requests per route bucket")
    p.add_argument("--route-window", type=float, default=5.0, help="route bucket window (s)")
    p.add_argument(
        "--window-scale",
        type=float,
        default=1.0,
        help="scale Discord's long windows (renames, gateway sends) for tests",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("guilds", "members", "max_concurrency", "global_limit", "route_limit"):
        if getattr(args, name) < 1:
            print(f"sandbox: --{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2
    if args.guilds > 50_000 or args.members > 5_000:
        print("sandbox: at most 50000 guilds and 5000 members per guild", file=sys.stderr)
        return 2
    config = SandboxConfig(
        host=args.host,
        port=args.port,
        guilds=args.guilds,
        members=args.members,
        seed=args.seed,
        max_concurrency=args.max_concurrency,
        shards=args.shards,
        identify_interval=args.identify_interval,
        heartbeat_ms=args.heartbeat_ms,
        window_scale=args.window_scale,
        limits=Limits(
            global_limit=args.global_limit,
            route_limit=args.route_limit,
            route_window=args.route_window,
        ),
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(config))
    return 0


async def _serve(config: SandboxConfig) -> None:
    async with Sandbox(config) as sb:
        # First line: machine-readable, for a parent process (guildhouse run, tests).
        print("SANDBOX " + orjson.dumps(sb.banner()).decode(), flush=True)
        print(
            f"sandbox: REST {sb.api_url}\nsandbox: gateway {sb.gateway_url}\n"
            f"sandbox: token {sb.token}\nsandbox: {len(sb.world.guilds)} guilds; control "
            f"API under {sb.control_url}/_sandbox/",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
