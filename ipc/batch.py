"""Many small requests, one call: `Batcher` queues requests for a function that takes a list.

The first request is sent at once (or after `linger` seconds); those that arrive while a call is
in flight, or lingering, go together in the next one, up to `max_batch` items a call. Under load
one round trip (and one script run or statement) serves many requests; no request waits for a
timer unless `linger` asks for it. Used for XP for chat (one Lua call for many messages), the
command counts behind achievements (one statement), and throttle counts sent in the background.

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
        linger_each: bool = False,
        name: str = "batch",
    ) -> None:
        """`send` gets the items of a batch and returns one result per item, in order.

        `linger_each`: every batch that isn't full lingers, not only the first. For work that
        nobody waits for and whose cost is per call (XP for chat): at any busy rate it then
        costs one call per `linger`, where a call as soon as the last one returned would carry
        only the few items that arrived meanwhile."""
        if max_batch < 1 or linger < 0:
            raise ValueError("max_batch >= 1 and linger >= 0 are required")
        self._send = send
        self.max_batch = max_batch
        self.linger = linger
        self.linger_each = linger_each
        self.name = name
        # What is queued, in order, and the parts of it someone waits for: (index of the first
        # item in _items, how many, the future of their results). A pushed item is in _items
        # alone, so a push costs an append and nothing else.
        self._items: list[T] = []
        self._waiting: list[tuple[int, int, asyncio.Future[list[R]]]] = []
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
        self._waiting.append((len(self._items), len(items), future))
        self._items.extend(items)
        self._start()
        return await future

    def push(self, item: T, *, at_once: bool = False) -> None:
        """Send `item` without waiting for it; `send` deals with its result and failures.
        `at_once`: someone waits on it, so a lingering batch leaves now."""
        if at_once:
            self._hurry = True
            if self._lingering is not None and not self._lingering.done():
                self._lingering.set_result(None)
        self._items.append(item)
        if self._sender is None or self._sender.done():
            self._start()

    async def flush(self) -> None:
        """Send what is queued now, cutting a linger short, and wait for it (a stop)."""
        if self._items:
            self._hurry = True
            if self._lingering is not None and not self._lingering.done():
                self._lingering.set_result(None)
        await self.drain()

    async def drain(self) -> None:
        """Wait until everything queued so far has been sent and answered."""
        sender = self._sender
        if sender is not None and not sender.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(sender)

    def _start(self) -> None:
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._run(), name=self.name)

    async def _run(self) -> None:
        first = True
        try:
            while self._items:
                lingers = self.linger and (first or self.linger_each)
                if lingers and not self._hurry and len(self._items) < self.max_batch:
                    await self._linger()
                first = False
                self._hurry = False
                await self._send_one(self._cut())
        except asyncio.CancelledError:
            for _, _, future in self._waiting:
                future.cancel()
            self._waiting.clear()
            self._items.clear()
            raise

    async def _linger(self) -> None:
        loop = asyncio.get_running_loop()
        self._lingering = lingering = loop.create_future()
        timer = loop.call_later(self.linger, _settle, lingering)
        try:
            await lingering
        finally:
            timer.cancel()
            self._lingering = None

    def _cut(self) -> int:
        """How many queued items the next call takes: up to `max_batch`, without splitting
        a list someone submitted (a list longer than `max_batch` goes alone)."""
        n = min(len(self._items), self.max_batch)
        for start, count, _ in self._waiting:
            if start >= n:
                break
            if start + count > n:
                return start or count
        return n

    async def _send_one(self, n: int) -> None:
        batch = self._items[:n]
        del self._items[:n]
        waiting = self._waiting
        mine = [w for w in waiting if w[0] < n]
        self._waiting = [(start - n, count, f) for start, count, f in waiting if start >= n]
        self.calls += 1
        try:
            results = await self._send(batch)
        except asyncio.CancelledError:
            for _, _, future in mine:
                future.cancel()
            raise
        except Exception as exc:  # every waiter gets the failure, as if it had called
            if not mine:
                log.warning("%s: a batch failed: %s", self.name, exc)
            for _, _, future in mine:
                if not future.done():
                    future.set_exception(exc)
            return
        for start, count, future in mine:
            if not future.done():
                future.set_result(list(results[start : start + count]))


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
