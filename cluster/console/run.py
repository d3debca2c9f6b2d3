"""`guildhouse chat`'s loop: stdin in, the console's follower and rate-limit watch beside it,
piped input paced (see the package's docstring), exit 0 at the end of input."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import time

import aiohttp

from cluster.console.console import Console
from cluster.console.markup import Style
from cluster.console.rate_limits import RateLimitWatch

QUIET = 2.0  # s of silence after the last line before the console exits
TAIL = 10.0  # s at most that it waits for that silence


def _read_lines(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
    """Stdin, line by line, into the loop's queue (None at the end). A daemon thread: a read
    that never returns (a terminal nobody types in) must not keep the process alive."""

    def run() -> None:
        try:
            for line in sys.stdin:
                loop.call_soon_threadsafe(queue.put_nowait, line)
        except (OSError, ValueError):
            pass
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
                loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=run, name="stdin", daemon=True).start()


async def chat(
    base: str,
    channel: int | None,
    user: int | None,
    *,
    standing: str = "member",
    history: int = 0,
    redis_url: str | None = None,
    redis_prefix: str = "gh:",
) -> int:
    interactive = sys.stdin.isatty()
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    info = sys.stdout if sys.stdout.isatty() else sys.stderr
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=40)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        console = Console(
            http,
            base,
            out=sys.stdout,
            info=info,
            style=Style(colour),
            interactive=interactive,
        )
        await console.setup(channel, user, standing, history)
        console.limits = RateLimitWatch(redis_url, redis_prefix, console.channel_id)
        await console.limits.baseline(http, base)
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        _read_lines(asyncio.get_running_loop(), lines)
        follower = asyncio.create_task(console.follow(), name="chat-follow")
        watcher = asyncio.create_task(console.watch_limits(), name="chat-limits")
        try:
            while True:
                getter = asyncio.ensure_future(lines.get())
                done, _ = await asyncio.wait(
                    {getter, follower}, return_when=asyncio.FIRST_COMPLETED
                )
                if follower in done:
                    getter.cancel()
                    follower.result()  # the sandbox went away: its ChatError
                line = getter.result()
                if line is None:
                    break
                seen = console.answers
                try:
                    asks = await console.handle(line, lines)
                except EOFError:
                    break
                if asks and console.answers <= seen:
                    console.asks.append(time.monotonic())  # watch_limits looks into a delay
                if asks and not interactive:
                    await console.until_answered(seen)
            if not interactive:
                await console.until_quiet(QUIET, TAIL)
        finally:
            for task in (follower, watcher):
                task.cancel()
            await asyncio.gather(follower, watcher, return_exceptions=True)
            await console.limits.close()
    return 0
