"""Waiting on a condition, for what sends the test no event when it turns true (another
process, Redis, a subscription's reconnect): poll it up to a deadline, which only bounds a
broken run. A wait on this process's own work should await that work (a task, an Event)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

EVERY = 0.05  # s between looks


async def until(
    what: str,
    check: Callable[[], bool | Awaitable[bool]],
    within: float = 60,
    every: float = EVERY,
) -> None:
    """Return once `check()` (a function or a coroutine function) is true; fail naming `what`
    if it is not within `within` seconds."""
    start = time.monotonic()
    deadline = start + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            if (took := time.monotonic() - start) >= 1:
                print(f"waited {took:.1f}s: {what}")  # captured; shown when the test fails
            return
        assert time.monotonic() < deadline, f"not within {within}s: {what}"
        await asyncio.sleep(every)


def wait_until(
    what: str, check: Callable[[], bool], within: float = 60, every: float = EVERY
) -> None:
    """`until` for blocking code (a test that drives subprocesses without an event loop)."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not within {within}s: {what}"
        time.sleep(every)
