"""Batcher: many small requests, one call."""

from __future__ import annotations

import asyncio

import pytest

from ipc.batch import Batcher


class Recorder:
    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail_on = fail_on

    async def send(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        await asyncio.sleep(0.01)  # a round trip
        if self.fail_on is not None and self.fail_on in items:
            raise RuntimeError(f"refused {self.fail_on}")
        return [i * 10 for i in items]


async def test_the_first_goes_at_once_and_the_rest_together() -> None:
    rec = Recorder()
    b: Batcher[int, int] = Batcher(rec.send)
    first = asyncio.create_task(b.submit(1))
    await asyncio.sleep(0)  # the first call is in flight
    rest = [asyncio.create_task(b.submit(i)) for i in range(2, 6)]
    assert [await first, *[await r for r in rest]] == [10, 20, 30, 40, 50]
    assert rec.batches == [[1], [2, 3, 4, 5]]
    assert await b.submit_all([7, 8]) == [70, 80]  # a list keeps its order and stays together
    assert await b.submit_all([]) == []


async def test_linger_gathers_what_arrives_meanwhile_and_max_batch_splits() -> None:
    rec = Recorder()
    b: Batcher[int, int] = Batcher(rec.send, linger=0.05, max_batch=3)
    results = await asyncio.gather(*(b.submit(i) for i in range(7)))
    assert results == [i * 10 for i in range(7)]
    assert rec.batches == [[0, 1, 2], [3, 4, 5], [6]]


async def test_a_failed_call_fails_its_waiters_only() -> None:
    rec = Recorder(fail_on=2)
    b: Batcher[int, int] = Batcher(rec.send)
    first = asyncio.create_task(b.submit(1))
    await asyncio.sleep(0)  # the first call is in flight
    second, third = asyncio.create_task(b.submit(2)), asyncio.create_task(b.submit(3))
    assert await first == 10
    for task in (second, third):  # one batch: both get its failure
        with pytest.raises(RuntimeError, match="refused 2"):
            await task
    assert await b.submit(4) == 40  # and the batcher goes on


async def test_pushed_items_are_sent_and_drain_waits_for_them() -> None:
    rec = Recorder()
    b: Batcher[int, int] = Batcher(rec.send)
    for i in range(3):
        b.push(i)
    await b.drain()
    assert rec.batches == [[0, 1, 2]]  # queued before the sender ran: one call
    await b.drain()  # nothing queued: returns at once


async def test_an_item_pushed_at_once_cuts_the_linger_short() -> None:
    rec = Recorder()
    b: Batcher[int, int] = Batcher(rec.send, linger=30)  # far longer than the test waits
    loop = asyncio.get_running_loop()
    # First in the queue: no linger at all.
    started = loop.time()
    b.push(1, at_once=True)
    await asyncio.wait_for(b.drain(), 5)
    # Behind one that lingers: both leave together, now.
    b.push(2)
    await asyncio.sleep(0.01)  # long enough for a call to start, were 2 to go alone
    assert rec.batches == [[1]]
    b.push(3, at_once=True)
    await asyncio.wait_for(b.drain(), 5)
    assert rec.batches == [[1], [2, 3]] and loop.time() - started < 10
    # And the next item lingers again.
    b.push(4)
    await asyncio.sleep(0.05)  # long enough for a call to start, were 4 to go alone
    assert rec.batches == [[1], [2, 3]]
    b.push(5, at_once=True)
    await asyncio.wait_for(b.drain(), 5)
    assert rec.batches[-1] == [4, 5]


async def test_flush_sends_what_lingers_now_and_waits_for_it() -> None:
    """A stopping worker's flush: what gathers for a long linger leaves at once."""
    rec = Recorder()
    b: Batcher[int, int] = Batcher(
        rec.send, linger=30, linger_each=True
    )  # far longer than the test
    results = [asyncio.ensure_future(b.submit(i)) for i in (1, 2)]
    await asyncio.sleep(0.05)  # long enough for a call to start, were they not lingering
    assert rec.batches == []
    await asyncio.wait_for(b.flush(), 5)
    assert rec.batches == [[1, 2]]
    assert [r.result() for r in results] == [10, 20]
    await asyncio.wait_for(b.flush(), 5)  # nothing queued: returns at once
    assert rec.batches == [[1, 2]]


async def test_with_linger_each_every_batch_lingers() -> None:
    batches: list[list[int]] = []
    calling = asyncio.Event()
    gate = asyncio.Event()

    async def send(items: list[int]) -> list[int]:
        batches.append(items)
        calling.set()
        await gate.wait()
        return items

    b: Batcher[int, int] = Batcher(send, linger=0.5, linger_each=True)
    b.push(1, at_once=True)  # no linger: the first call is in flight at once
    await asyncio.wait_for(calling.wait(), 5)
    b.push(2)  # arrives during the call
    gate.set()
    await asyncio.sleep(0.01)  # long enough for a call to start, were 2 to go alone
    assert batches == [[1]]  # 2 waits for company rather than going alone
    b.push(3)
    await asyncio.wait_for(b.drain(), 5)
    assert batches == [[1], [2, 3]]


async def test_pushed_items_and_lists_share_calls_in_order() -> None:
    rec = Recorder()
    b: Batcher[int, int] = Batcher(rec.send, linger=0.05, max_batch=4)
    b.push(1)
    first = asyncio.create_task(b.submit_all([2, 3]))
    await asyncio.sleep(0)  # 2 and 3 queued behind 1, before 4
    b.push(4)
    second = asyncio.create_task(b.submit_all([5, 6]))  # doesn't fit: waits whole
    assert (await first, await second) == ([20, 30], [50, 60])
    assert rec.batches == [[1, 2, 3, 4], [5, 6]]


def test_bad_parameters_are_named() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        Batcher(Recorder().send, max_batch=0)
