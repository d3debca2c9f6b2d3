"""The IPC bus over real Redis: typed requests, gather with partial results, fail-fast calls."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis

from ipc.bus import LIVE_TTL, Bus, BusError, ClusterDown
from ipc.client import Keys
from ipc.registry import ClusterInfo, Registry

pytestmark = pytest.mark.timeout(30)


@dataclass
class Echo:
    text: str
    times: int = 1


async def _node(redis_url: str, keys: Keys, cluster_id: int) -> tuple[Bus, aioredis.Redis]:
    r = aioredis.Redis.from_url(redis_url)
    registry = Registry(r, keys)
    bus = Bus(r, keys, cluster_id, registry)

    async def echo(req: Echo) -> str:
        return f"{cluster_id}:{req.text * req.times}"

    async def boom(_: dict[str, object]) -> None:
        raise RuntimeError("bug")

    bus.handle("echo", Echo, echo)
    bus.handle("boom", None, boom)
    await bus.start()
    await registry.publish(
        ClusterInfo(cluster_id, [cluster_id], os.getpid(), "test", "ready", time.time())
    )
    return bus, r


@pytest.fixture
async def nodes(redis_url: str, keys: Keys) -> AsyncIterator[list[tuple[Bus, aioredis.Redis]]]:
    made = [await _node(redis_url, keys, i) for i in range(3)]
    yield made
    for bus, r in made:
        await bus.stop()
        await r.aclose()


async def test_gather_reaches_every_cluster(nodes: list[tuple[Bus, aioredis.Redis]]) -> None:
    bus = nodes[0][0]
    result = await bus.gather("echo", Echo("ab", 2), within=5)
    assert result.results == {0: "0:abab", 1: "1:abab", 2: "2:abab"}
    assert not result.partial


async def test_without_hiredis_publishes_are_packed_by_redis_py(
    nodes: list[tuple[Bus, aioredis.Redis]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An install without redis's [hiredis] extra: requests and answers go out as redis-py
    packs them, and read the same."""
    import ipc.bus

    monkeypatch.setattr(ipc.bus, "hiredis", None)
    result = await nodes[0][0].gather("echo", Echo("é\r\n", 2), within=5)
    assert result.results == {i: f"{i}:é\r\né\r\n" for i in range(3)}


async def test_a_silent_cluster_makes_the_result_partial_not_a_hang(
    nodes: list[tuple[Bus, aioredis.Redis]],
) -> None:
    await nodes[2][0].stop()  # cluster 2 stops listening but is still in the registry
    started = time.monotonic()
    result = await nodes[0][0].gather("echo", Echo("x"), within=0.5)
    assert time.monotonic() - started < 3
    assert result.partial and result.missing == [2]
    assert result.results == {0: "0:x", 1: "1:x"}


async def test_call_one_cluster_and_fail_fast_on_an_unknown_one(
    nodes: list[tuple[Bus, aioredis.Redis]],
) -> None:
    bus = nodes[1][0]
    assert await bus.call(2, "echo", Echo("hi")) == "2:hi"
    started = time.monotonic()
    with pytest.raises(ClusterDown):
        await bus.call(7, "echo", Echo("hi"), within=10)
    assert time.monotonic() - started < 1  # no waiting for a cluster known to be down


async def test_errors_are_answers_not_crashes(nodes: list[tuple[Bus, aioredis.Redis]]) -> None:
    bus = nodes[0][0]
    with pytest.raises(BusError, match="unknown request 'evaluate'"):
        await bus.call(1, "evaluate", {"code": "__import__('os').system('x')"})
    with pytest.raises(BusError, match="bad payload for 'echo'"):
        await bus.call(1, "echo", {"txt": "wrong field"})
    with pytest.raises(BusError, match="'boom' failed: RuntimeError"):
        await bus.call(1, "boom")
    # The listener survived all of that.
    assert await bus.call(1, "echo", Echo("ok")) == "1:ok"


async def test_a_cluster_answers_itself_without_redis(redis_url: str, keys: Keys) -> None:
    """Its own part of a gather (and a call to itself) is answered in-process: nothing is
    published for it, and the answer reads the same (JSON round trip, errors as errors)."""
    bus, r = await _node(redis_url, keys, 5)
    spy = r.pubsub()
    await spy.subscribe(bus.all, bus.own, bus.reply)
    try:
        await spy.get_message(timeout=1)  # the subscribe confirmations
        await spy.get_message(timeout=1)
        await spy.get_message(timeout=1)
        alone = await bus.gather("echo", Echo("x"), within=2)
        assert alone.results == {5: "5:x"} and not alone.partial
        assert await bus.call(5, "echo", {"text": "y", "times": 2}, within=2) == "5:yy"
        with pytest.raises(BusError, match="failed"):
            await bus.call(5, "boom", within=2)
        failed = await bus.gather("boom", within=2)
        assert 5 in failed.errors and failed.partial
        assert await spy.get_message(ignore_subscribe_messages=True, timeout=0.3) is None
    finally:
        await spy.aclose()
        await bus.stop()
        await r.aclose()


async def test_the_bus_comes_back_after_redis_drops_its_connections(
    nodes: list[tuple[Bus, aioredis.Redis]],
) -> None:
    """Redis closes every subscription and every plain connection (a restart, a failover):
    the subscriptions come back, and no answer is written into a dead socket for good."""
    bus, r = nodes[0]
    assert not (await bus.gather("echo", Echo("a"), within=5)).partial
    await r.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    await r.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    deadline = time.monotonic() + 15
    while True:
        result = await bus.gather("echo", Echo("b"), within=1)
        if not result.partial or time.monotonic() > deadline:
            break
    assert result.results == {0: "0:b", 1: "1:b", 2: "2:b"}
    # And it stays whole: not one lucky gather.
    for _ in range(20):
        assert not (await bus.gather("echo", Echo("c"), within=5)).partial


async def test_where_client_reply_is_refused_publishes_are_confirmed_ones(
    redis_url: str, keys: Keys
) -> None:
    """An ACL (or a proxy) that refuses CLIENT REPLY: the bus publishes the ordinary way."""
    admin = aioredis.Redis.from_url(redis_url)
    user = "bus_" + keys("x").replace(":", "_")[-12:]
    try:
        # Every command but CLIENT, then back the CLIENT subcommands a connection uses
        # (Redis before 7 can allow a subcommand but not deny one).
        rules = ["+@all", "-client", "+client|setname", "+client|id", "+client|info"]
        await admin.execute_command("ACL", "SETUSER", user, "on", ">pw", "~*", "&*", *rules)
    except aioredis.ResponseError as exc:  # a server without ACLs or without this rule
        await admin.aclose()
        pytest.skip(f"this Redis cannot refuse CLIENT REPLY to a user: {exc}")
    url = redis_url.replace("redis://", f"redis://{user}:pw@", 1)
    made = []
    try:
        made = [await _node(url, keys, i) for i in range(2)]
        result = await made[0][0].gather("echo", Echo("z"), within=5)
        assert result.results == {0: "0:z", 1: "1:z"}
        assert await made[1][0].call(0, "echo", Echo("y")) == "0:y"
        assert not made[0][0]._publisher._lean  # it noticed, and asks no more
    finally:
        for bus, r in made:
            await bus.stop()
            await r.aclose()
        await admin.execute_command("ACL", "DELUSER", user)
        await admin.aclose()


async def test_the_registry_is_read_ahead_not_inside_a_request(
    nodes: list[tuple[Bus, aioredis.Redis]], keys: Keys
) -> None:
    """Past half its TTL the bus's view of the live clusters is read again in the background
    (the request uses the view it has, at most LIVE_TTL old); past the TTL, before asking."""
    bus, r = nodes[0]
    assert sorted((await bus.gather("echo", Echo("a"))).results) == [0, 1, 2]
    await Registry(r, keys).remove(2)  # cluster 2 leaves the registry (still listening)
    bus._live_at -= LIVE_TTL * 0.6  # the view is older than half the TTL
    stale_at = bus._live_at
    ahead = await bus.gather("echo", Echo("b"))
    assert sorted(ahead.results) == [0, 1, 2]  # the view it had: no read in the request
    if bus._reading_live is not None:  # the read it started meanwhile may still be running
        await bus._reading_live
    assert bus._live_at > stale_at  # it was read again, in the background
    assert sorted((await bus.gather("echo", Echo("c"))).results) == [0, 1]
    await Registry(r, keys).publish(ClusterInfo(2, [2], os.getpid(), "test", "ready", time.time()))
    bus._live_at -= LIVE_TTL * 1.5  # too old to use: read first
    assert sorted((await bus.gather("echo", Echo("d"))).results) == [0, 1, 2]
