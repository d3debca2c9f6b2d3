"""`python -m sandbox` / `guildhouse sandbox`: run the sandbox on its own."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
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
    p.add_argument(
        "--interaction-deadline",
        type=float,
        default=3.0,
        help="seconds a bot has to answer an interaction (Discord: 3)",
    )
    p.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="shut down (cleanly, as on SIGTERM) when the process that started this one dies, "
        "even by SIGKILL: on Linux the kernel sends SIGTERM (PR_SET_PDEATHSIG); everywhere the "
        "parent is also checked once a second",
    )
    return p


def main(argv: list[str] | None = None, *, parent_pid: int | None = None) -> int:
    """`parent_pid`: the parent as it was when this process started (`python -m sandbox` notes
    it before importing anything heavy); by default, the parent now."""
    parent = os.getppid() if parent_pid is None else parent_pid
    args = build_parser().parse_args(argv)
    for name in ("guilds", "members", "max_concurrency", "global_limit", "route_limit"):
        if getattr(args, name) < 1:
            print(f"sandbox: --{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2
    if not 0 < args.interaction_deadline <= 900:
        print(
            "sandbox: --interaction-deadline must be more than 0 and at most 900", file=sys.stderr
        )
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
        interaction_deadline=args.interaction_deadline,
        limits=Limits(
            global_limit=args.global_limit,
            route_limit=args.route_limit,
            route_window=args.route_window,
        ),
    )
    watch: int | None = None
    if args.exit_with_parent:
        set_parent_death_signal(signal.SIGTERM)
        # The parent may have died before the prctl, when there was no one to tell us: then
        # we have a new parent already.
        if os.getppid() != parent:
            _note(f"sandbox: the parent process {parent} is gone; not starting")
            return 0
        watch = parent
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(config, watch))
    return 0


def set_parent_death_signal(sig: int) -> bool:
    """Linux: ask the kernel to send `sig` to this process when its parent dies, whatever
    kills the parent. (Precisely: when the thread that started this process ends, so a parent
    must start the sandbox from a thread that lives as long as the parent does, such as its
    main thread.) False where that can't be done."""
    if not sys.platform.startswith("linux"):
        return False
    pr_set_pdeathsig = 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(pr_set_pdeathsig, ctypes.c_ulong(sig), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _note(line: str) -> None:
    # The parent that read our output may be gone, and with it the pipe's reader.
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr, flush=True)


async def _watch_parent(parent: int, stop: asyncio.Event) -> None:
    """The portable fallback (and a second check on Linux): the parent is gone once this
    process has been handed to another one."""
    while not stop.is_set():
        if os.getppid() != parent:
            stop.set()
            return
        await asyncio.sleep(1.0)


async def _serve(config: SandboxConfig, parent: int | None = None) -> None:
    """Serve until SIGINT or SIGTERM, or, with `parent`, until that process is gone."""
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
        # Until here a SIGTERM (the parent-death signal too) kills the process outright, which
        # is as good as a clean stop while nothing is being served yet.
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        watcher = None
        if parent is not None:
            watcher = asyncio.create_task(_watch_parent(parent, stop), name="watch-parent")
        await stop.wait()
        if watcher is not None:
            watcher.cancel()
        if parent is not None and os.getppid() != parent:
            _note(f"sandbox: the parent process {parent} is gone; shutting down")
