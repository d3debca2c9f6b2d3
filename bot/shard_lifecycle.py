"""Connecting this worker's shards, reconnecting one after a fatal close, and never past a stop.

Every shard's connection waits its turn in the shared IDENTIFY queue (ipc/identify.py): it
`approach`es the turn before discord.py connects it, and takes it in the identify hook, so
that only the last second or two are waited with the connection open. Every wait of a
start-up (login, the queue, a connection, a reconnect's backoff) runs through
`until_closing`, and `interrupt()` cancels them all once close() has begun: nothing keeps
connecting into a closed client.

A fatal close of a shard that has been READY reconnects that shard alone, after a backoff,
and leaves it FAILED when the closes repeat (bot/shards.py, `FatalClosePolicy`); discord.py
would end the whole client. How discord.py is hooked for all this: bot/dpy/shard_hooks.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import discord

from bot.dpy import shard_hooks
from bot.shards import FATAL_CLOSES, ShardState, ShardTracker
from ipc.identify import IdentifyQueue

log = logging.getLogger(__name__)

T = TypeVar("T")


class ClientClosing(Exception):
    """close() has begun: what was being waited for will not be needed."""


class ShardLifecycle:
    def __init__(
        self, client: discord.AutoShardedClient, queue: IdentifyQueue, tracker: ShardTracker
    ) -> None:
        self.client = client
        self.queue = queue
        self.tracker = tracker
        # Set when close() begins; the waits in `_interruptible` are cancelled then.
        self.closing = asyncio.Event()
        self._interruptible: set[asyncio.Task[Any]] = set()
        self._guarded: set[int] = set()
        self._recoveries: set[asyncio.Task[None]] = set()

    async def until_closing(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` unless close() begins first: then it is cancelled and ClientClosing
        raised, so that a stop never waits for a start-up step that no longer matters."""
        if self.closing.is_set():
            coro.close()
            raise ClientClosing
        task = asyncio.ensure_future(coro)
        self._interruptible.add(task)
        try:
            await asyncio.wait({task})
        finally:
            self._interruptible.discard(task)
            task.cancel()  # a no-op once done; if we were cancelled, the work stops too
        if task.cancelled():
            raise ClientClosing
        return task.result()

    async def interrupt(self) -> None:
        """Cancel every start-up wait (close() has begun), a shard's recovery too, and give
        them a moment to unwind before the HTTP session closes under them."""
        self.closing.set()
        pending = list(self._interruptible)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)

    # -- connecting --------------------------------------------------------------------------

    async def launch(self, shard_id: int, connect: Callable[[], Awaitable[None]]) -> None:
        """Connect the shard with `connect` (discord.py's launch_shard) after approaching its
        IDENTIFY turn, then guard it against fatal closes; nothing once close() has begun (a
        wait in progress, the queue or the connection, is cancelled by it)."""
        try:
            await self.until_closing(self._launch(shard_id, connect))
        except ClientClosing:
            return

    async def _launch(self, shard_id: int, connect: Callable[[], Awaitable[None]]) -> None:
        # Queue for the IDENTIFY turn before connecting; the hook then waits only the last
        # second or two, with the new connection open.
        waited = await self.queue.approach(shard_id)
        if waited > 1:
            log.info(
                "shard %s waited %.1fs in the IDENTIFY queue before connecting",
                shard_id,
                waited,
                extra={"shard": shard_id},
            )
        await connect()
        self._guard(shard_id)

    async def identify_turn(self, shard_id: int) -> None:
        """Wait for the shard's turn to IDENTIFY: every IDENTIFY of every worker and pod waits
        its turn in the shared Redis queue."""
        try:
            waited = await self.until_closing(self.queue.acquire(shard_id))
        except ClientClosing:
            # Not an Exception: discord.py's reconnect paths end quietly on a cancellation,
            # where an error would be logged and retried against the closed session.
            raise asyncio.CancelledError from None
        if waited > 1:
            log.info(
                "shard %s waited %.1fs for its IDENTIFY turn",
                shard_id,
                waited,
                extra={"shard": shard_id},
            )

    async def reconnect(self, shard_id: int, *, delay: float = 0.0) -> None:
        """Connect the shard again with a new IDENTIFY (after `delay` s), through the IDENTIFY
        queue; a no-op once close() has begun."""
        try:
            await self.until_closing(self._reconnect(shard_id, delay))
        except ClientClosing:
            return

    async def _reconnect(self, shard_id: int, delay: float) -> None:
        await asyncio.sleep(delay)
        info = self.client.get_shard(shard_id)
        if info is None or self.tracker.states.get(shard_id) == ShardState.FAILED:
            return
        self.tracker.update(shard_id, ShardState.STARTING)
        await self.queue.approach(shard_id)
        await info.reconnect()

    # -- fatal closes ------------------------------------------------------------------------

    def _guard(self, shard_id: int) -> None:
        """Keep a fatal close of this shard from ending the whole client."""
        if shard_id in self._guarded:
            return  # launch_shard retries by recursion: the innermost call guarded it
        if not shard_hooks.install(
            self.client.get_shard(shard_id), lambda code: self._on_fatal_close(shard_id, code)
        ):
            log.warning("shard %d: cannot guard it against fatal closes", shard_id)
            return
        self._guarded.add(shard_id)

    def _on_fatal_close(self, shard_id: int, code: int) -> bool:
        """Handle a fatal close of one shard; False leaves it to discord.py (the client ends)."""
        if self.closing.is_set():
            return True  # the client is closing: nothing to reconnect, nothing to report
        if not self.tracker.was_ready(shard_id):
            return False  # never READY: the token or the intents are wrong; the worker says so
        meaning = FATAL_CLOSES.get(code, "fatal close")
        closes = self.tracker.fatal_close(shard_id)
        policy = self.tracker.policy
        if self.tracker.states.get(shard_id) == ShardState.FAILED:
            log.critical(
                "shard %d closed by the gateway with %d (%s), %d times within %.0fs: "
                "marking it FAILED; it stays offline until this worker restarts, the "
                "other shards run on",
                shard_id,
                code,
                meaning,
                closes,
                policy.window,
                extra={"shard": shard_id},
            )
            return True
        delay = policy.delay(closes)
        log.critical(
            "shard %d closed by the gateway with %d (%s); reconnecting it with a new IDENTIFY "
            "in %.1fs (the other shards run on)",
            shard_id,
            code,
            meaning,
            delay,
            extra={"shard": shard_id},
        )
        task = asyncio.create_task(
            self.reconnect(shard_id, delay=delay), name=f"recover-shard-{shard_id}"
        )
        self._recoveries.add(task)
        task.add_done_callback(self._recoveries.discard)
        return True
