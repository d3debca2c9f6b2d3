"""The process's one pub/sub connection (ipc/subscriber.py) over real Redis: messages reach the
right listeners, subscriptions come and go at run time, and every one of them is made again
after the connection is killed or Redis restarts, with the outage logged once."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from killable import KillableRedis
from waits import until

from ipc.client import Keys, create_redis, redis_outage
from ipc.subscriber import Backoff, Subscriber, Subscription

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

WITHIN = 30.0  # s: bounds a wait for what only Redis can tell (CLIENT LIST, a reconnect)


class Inbox:
    """What one callback received, and a way to wait for a given message."""

    def __init__(self) -> None:
        self.got: list[tuple[str, bytes]] = []
        self._changed = asyncio.Event()

    def __call__(self, channel: str, data: bytes) -> None:
        self.got.append((channel, data))
        self._changed.set()

    async def until(self, data: bytes) -> None:
        while not any(d == data for _, d in self.got):
            self._changed.clear()
            await self._changed.wait()

    def data(self) -> list[bytes]:
        return [d for _, d in self.got]


class Counting(Backoff):
    """A short backoff that counts the delays it gave (each one a failed connection)."""

    def __init__(self) -> None:
        super().__init__(first=0.02, cap=0.1)
        self.given = 0

    def next(self) -> float:
        self.given += 1
        return super().next()


def own_subscriber(redis: aioredis.Redis, **options: object) -> Subscriber:
    return Subscriber(redis, name=f"test-{uuid.uuid4().hex[:8]}", **options)  # type: ignore[arg-type]


async def connections_named(redis: aioredis.Redis, name: str) -> list[dict[str, str]]:
    return [c for c in await redis.client_list() if c.get("name") == name]


async def subscribed(*subs: Subscription) -> None:
    async with asyncio.timeout(10):
        for sub in subs:
            await sub.subscribed()


async def test_messages_reach_the_right_callbacks(redis: aioredis.Redis, keys: Keys) -> None:
    subscriber = own_subscriber(redis)
    a, b, both, pattern = Inbox(), Inbox(), Inbox(), Inbox()
    try:
        subs = [
            await subscriber.subscribe(keys("a"), a),
            await subscriber.subscribe(keys("b"), b),
            await subscriber.subscribe(keys("b"), both),  # a second listener of b
            await subscriber.psubscribe(keys("p", "*"), pattern),
        ]
        queued = await subscriber.subscribe(keys("q"))  # no callback: a queue
        await subscribed(*subs, queued)
        assert await redis.publish(keys("a"), b"1") == 1
        assert await redis.publish(keys("b"), b"2") == 1  # one connection, however many listen
        assert await redis.publish(keys("p", "x"), b"3") == 1
        assert await redis.publish(keys("q"), b"4") == 1
        assert await redis.publish(keys("other"), b"5") == 0
        for channel in ("a", "b", "p:end"):
            await redis.publish(keys(channel), b"end")
        for inbox in (a, b, both, pattern):
            await inbox.until(b"end")  # one connection delivers in order: nothing else comes
        assert a.got == [(keys("a"), b"1"), (keys("a"), b"end")]
        assert b.got == both.got == [(keys("b"), b"2"), (keys("b"), b"end")]
        assert pattern.got == [(keys("p", "x"), b"3"), (keys("p", "end"), b"end")]
        assert await queued.get(within=10) == (keys("q"), b"4")
        assert await queued.get(within=0) is None
    finally:
        await subscriber.close()


async def test_subscriptions_come_and_go_at_run_time(redis: aioredis.Redis, keys: Keys) -> None:
    subscriber = own_subscriber(redis)
    first, later = Inbox(), Inbox()
    try:
        one = await subscriber.subscribe(keys("one"), first)
        await subscribed(one)
        conn = (await connections_named(redis, subscriber.name))[0]
        two = await subscriber.subscribe(keys("two"), later)  # on the connection that is up
        again = await subscriber.subscribe(keys("one"), Inbox())  # already subscribed
        await subscribed(two, again)
        (same,) = await connections_named(redis, subscriber.name)
        assert same["id"] == conn["id"] and same["sub"] == "2"
        await redis.publish(keys("two"), b"x")
        await later.until(b"x")

        await one.close()  # another listener still wants `one`: Redis is not asked
        assert (await redis.pubsub_numsub(keys("one")))[0][1] == 1
        await again.close()
        await two.close()  # the last one: the connection goes too
        assert subscriber.channels == []
        await until(
            "the connection closed (CLIENT LIST)",
            lambda: _equal(connections_named(redis, subscriber.name), []),
            within=WITHIN,
        )
        assert (await redis.pubsub_numsub(keys("one"), keys("two"))) == [
            (keys("one").encode(), 0),
            (keys("two").encode(), 0),
        ]
        back = await subscriber.subscribe(keys("two"), later)  # and comes back when needed
        await subscribed(back)
        await redis.publish(keys("two"), b"y")
        await later.until(b"y")
    finally:
        await subscriber.close()


async def test_a_failing_callback_does_not_stop_the_others(
    redis: aioredis.Redis, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    subscriber = own_subscriber(redis)
    after = Inbox()

    def broken(_: str, __: bytes) -> None:
        raise RuntimeError("bug in a listener")

    try:
        subs = [
            await subscriber.subscribe(keys("c"), broken),
            await subscriber.subscribe(keys("c"), after),
        ]
        await subscribed(*subs)
        await redis.publish(keys("c"), b"1")
        await redis.publish(keys("c"), b"2")
        await after.until(b"2")
        assert after.data() == [b"1", b"2"]
        assert sum("callback of" in r.getMessage() for r in caplog.records) == 2
    finally:
        await subscriber.close()


async def test_every_subscription_comes_back_after_client_kill(
    redis: aioredis.Redis, keys: Keys
) -> None:
    subscriber = own_subscriber(redis, backoff=Counting())
    inboxes = {name: Inbox() for name in ("x", "y", "z")}
    renewed: list[str] = []
    lost: list[str] = []
    try:
        subs = [
            await subscriber.subscribe(
                keys(name),
                inbox,
                on_subscribed=lambda name=name: renewed.append(name),  # type: ignore[misc]
                on_lost=lambda name=name: lost.append(name),  # type: ignore[misc]
            )
            for name, inbox in inboxes.items()
        ]
        pattern = Inbox()
        subs.append(await subscriber.psubscribe(keys("p", "*"), pattern))
        await subscribed(*subs)
        assert sorted(renewed) == ["x", "y", "z"] and lost == []
        (conn,) = await connections_named(redis, subscriber.name)
        assert await redis.client_kill_filter(_id=conn["id"]) == 1

        async def renewed_on_a_new_connection() -> bool:
            found = await connections_named(redis, subscriber.name)
            return (
                len(renewed) == 6
                and len(found) == 1
                and found[0]["id"] != conn["id"]
                and (found[0]["sub"], found[0]["psub"]) == ("3", "1")
            )

        await until("all renewed on a new connection", renewed_on_a_new_connection, within=WITHIN)
        assert sorted(lost) == ["x", "y", "z"]
        assert subscriber.connections == 2
        await subscribed(*subs)
        for name, inbox in inboxes.items():
            await redis.publish(keys(name), b"after")
            await inbox.until(b"after")
        await redis.publish(keys("p", "1"), b"after")
        await pattern.until(b"after")
    finally:
        await subscriber.close()


async def test_without_hiredis_redis_py_reads_the_same(
    redis: aioredis.Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An install without redis's [hiredis] extra reads through redis-py's parser: the same
    messages, and the same renewal after the connection is killed."""
    monkeypatch.setattr("ipc.subscriber.hiredis", None)
    subscriber = own_subscriber(redis, backoff=Counting())
    inbox, pattern = Inbox(), Inbox()
    try:
        subs = [
            await subscriber.subscribe(keys("n"), inbox),
            await subscriber.psubscribe(keys("np", "*"), pattern),
        ]
        await subscribed(*subs)
        await redis.publish(keys("n"), b"1")
        await redis.publish(keys("np", "x"), b"2")
        await inbox.until(b"1")
        await pattern.until(b"2")
        (conn,) = await connections_named(redis, subscriber.name)
        await redis.client_kill_filter(_id=conn["id"])
        await until(
            "subscribed again on a second connection",
            lambda: subscriber.connections == 2 and all(s.active for s in subs),
            within=WITHIN,
        )
        await redis.publish(keys("n"), b"3")
        await inbox.until(b"3")
        assert inbox.got == [(keys("n"), b"1"), (keys("n"), b"3")]
        assert pattern.got == [(keys("np", "x"), b"2")]
    finally:
        await subscriber.close()


async def test_one_connection_for_every_listener_of_a_worker(
    redis_url: str, redis: aioredis.Redis, keys: Keys
) -> None:
    """What a worker listens to (the guild caches, the throttles, the IPC bus, the reminders'
    wake-up) shares one pub/sub connection; before, each held its own (about five)."""
    from bot.guild_cache import GuildCache
    from ipc.bus import Bus
    from ipc.registry import Registry
    from ipc.throttle import Throttle

    worker = create_redis(redis_url)  # the worker's one client

    async def load(guild_id: int) -> str:
        return str(guild_id)

    def subscribed_connections(clients: list[dict[str, str]]) -> list[dict[str, str]]:
        return [c for c in clients if int(c["sub"]) + int(c["psub"]) > 0]

    before = {c["id"] for c in subscribed_connections(await redis.client_list())}
    caches = [
        GuildCache(worker, keys("events", "guild-settings"), load, what="guild settings"),
        GuildCache(worker, keys("events", "xp-settings"), load, what="XP settings"),
    ]
    throttle = Throttle(worker, keys)
    bus = Bus(worker, keys, 0, Registry(worker, keys))
    wake = await Subscriber.of(worker).subscribe(keys("reminders", "wake"))
    try:
        for cache in caches:
            await cache.start()
        await throttle.start()
        await bus.start()
        await subscribed(wake)
        now = subscribed_connections(await redis.client_list())
        new = [c for c in now if c["id"] not in before]
        assert len(new) == 1, new
        assert new[0]["name"] == Subscriber.of(worker).name
        # Both caches, the throttles' lost-window channel, the bus's three, the wake-up.
        assert int(new[0]["sub"]) == 7
    finally:
        await wake.close()
        await bus.stop()
        await throttle.close()
        for cache in caches:
            await cache.stop()
        name = Subscriber.of(worker).name
        await until(
            "the worker's connection closed (CLIENT LIST)",
            lambda: _equal(connections_named(redis, name), []),
            within=WITHIN,
        )
        await worker.aclose()


# -- a Redis of the test's own, killed and brought back --------------------------------------


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KillableRedis]:
    server = KillableRedis(Path(tmp_path_factory.mktemp("subscriber")))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def killable(own_redis: KillableRedis) -> AsyncIterator[KillableRedis]:
    if not own_redis.running:
        await asyncio.to_thread(own_redis.restart)
    yield own_redis
    if not own_redis.running:
        await asyncio.to_thread(own_redis.restart)


async def test_a_redis_restart_is_one_outage_and_every_channel_is_back(
    killable: KillableRedis, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = create_redis(killable.url)
    backoff = Counting()
    subscriber = own_subscriber(client, backoff=backoff)
    inboxes = {name: Inbox() for name in ("s", "t")}
    try:
        subs = [await subscriber.subscribe(keys(n), inbox) for n, inbox in inboxes.items()]
        await subscribed(*subs)
        await asyncio.to_thread(killable.kill)

        async def retried() -> bool:
            return backoff.given >= 3 and not any(s.active for s in subs)

        await until("several attempts, all failed", retried, within=WITHIN)
        assert redis_outage.down
        await asyncio.to_thread(killable.restart)
        await subscribed(*subs)
        assert not redis_outage.down
        for name, inbox in inboxes.items():
            assert await client.publish(keys(name), b"back") == 1
            await inbox.until(b"back")
    finally:
        await subscriber.close()
        await client.aclose()
    lines = [r for r in caplog.records if r.levelno >= logging.INFO]
    unreachable = [r for r in lines if "is unreachable" in r.getMessage()]
    assert len(unreachable) == 1 and unreachable[0].levelno == logging.WARNING
    assert sum("reachable again" in r.getMessage() for r in lines) == 1
    mine = [r for r in lines if r.name == "ipc.subscriber"]
    assert [r.levelno for r in mine] == [logging.INFO, logging.INFO], [
        r.getMessage() for r in mine
    ]  # lost, then connected again: once each however many retries


async def test_a_connection_that_stops_answering_is_replaced(
    killable: KillableRedis, keys: Keys
) -> None:
    """An idle connection gets a PING; one that answers nothing (here: Redis paused, as a
    half-open TCP connection would look) is dropped and made again."""
    client = create_redis(killable.url)
    subscriber = own_subscriber(client, health_every=0.2)
    inbox = Inbox()
    try:
        sub = await subscriber.subscribe(keys("h"), inbox)
        await subscribed(sub)
        await client.execute_command("CLIENT", "PAUSE", 1500, "ALL")
        await until(
            "the connection given up on during the pause", lambda: not sub.active, within=WITHIN
        )
        await subscribed(sub)  # and made again after it
        assert subscriber.connections == 2
        await client.publish(keys("h"), b"after")
        await inbox.until(b"after")
    finally:
        await subscriber.close()
        await client.aclose()


async def _equal(got: Awaitable[object], expected: object) -> bool:
    return await got == expected
