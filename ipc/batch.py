"""Many small requests, one call: `Batcher` queues requests for a function that takes a list.

The first request is sent at once (or after `linger` seconds); those that arrive while a call is
in flight, or lingering, go together in the next one, up to `max_batch` items a call. Under load
one round trip (and one script run or statement) serves many requests; no request waits for a
timer unless `linger` asks for it. Used for XP awards (one Lua call for many), the command
counts behind achievements (one statement), and throttle counts sent in the background.

A process killed with requests in the queue loses them: nothing was promised for them yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    def __init__(
        self,
        send: Callable[[list[T]], Awaitable[Sequence[R]]],
        *,
        max_batch: int = 500,
        linger: float = 0.0,
        name: str = "batch",
    ) -> None:
        """`send` gets the items of a batch and returns one result per item, in order."""
        if max_batch < 1 or linger < 0:
            raise ValueError("max_batch >= 1 and linger >= 0 are required")
        self._send = send
        self.max_batch = max_batch
        self.linger = linger
        self.name = name
        self._queue: list[tuple[list[T], asyncio.Future[list[R]] | None]] = []
        self._sender: asyncio.Task[None] | None = None
        self._lingering: asyncio.Future[None] | None = None  # set: cuts the linger short
        self._hurry = False  # an item someone waits for is queued: no linger
        self.calls = 0  # for benchmarks and tests

    async def submit(self, item: T) -> R:
        (result,) = await self.submit_all([item])
        return result

    async def submit_all(self, items: Sequence[T]) -> list[R]:
        """The results of these items, in order (or the exception `send` raised for them)."""
        if not items:
            return []
        future: asyncio.Future[list[R]] = asyncio.get_running_loop().create_future()
        self._enqueue(list(items), future)
        return await future

    def push(self, item: T, *, at_once: bool = False) -> None:
        """Send `item` without waiting for it; `send` deals with its result and failures.
        `at_once`: someone waits on it, so a lingering batch leaves now."""
        if at_once:
            self._hurry = True
            if self._lingering is not None and not self._lingering.done():
                self._lingering.set_result(None)
        self._enqueue([item], None)

    async def drain(self) -> None:
        """Wait until everything queued so far has been sent and answered."""
        sender = self._sender
        if sender is not None and not sender.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(sender)

    def _enqueue(self, items: list[T], future: asyncio.Future[list[R]] | None) -> None:
        self._queue.append((items, future))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._run(), name=self.name)

    async def _run(self) -> None:
        if self.linger and not self._hurry:
            loop = asyncio.get_running_loop()
            self._lingering = lingering = loop.create_future()
            timer = loop.call_later(self.linger, _settle, lingering)
            try:
                await lingering
            finally:
                timer.cancel()
                self._lingering = None
        self._hurry = False
        while self._queue:
            batch: list[tuple[list[T], asyncio.Future[list[R]] | None]] = []
            size = 0
            while self._queue and (not batch or size + len(self._queue[0][0]) <= self.max_batch):
                request = self._queue.pop(0)
                batch.append(request)
                size += len(request[0])
            self.calls += 1
            try:
                results = await self._send([item for items, _ in batch for item in items])
            except asyncio.CancelledError:
                for _, future in batch + self._queue:
                    if future is not None:
                        future.cancel()
                self._queue.clear()
                raise
            except Exception as exc:  # every waiter gets the failure, as if it had called
                if all(future is None for _, future in batch):
                    log.warning("%s: a batch failed: %s", self.name, exc)
                for _, future in batch:
                    if future is not None and not future.done():
                        future.set_exception(exc)
                continue
            at = 0
            for items, future in batch:
                if future is not None and not future.done():
                    future.set_result(list(results[at : at + len(items)]))
                at += len(items)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
