"""`guildhouse restart --rolling`: restart every worker, one at a time, across all launchers.

The CLI publishes a request on a control channel that every launcher listens to. Launchers
take turns through a Redis lock (a lease, so a launcher that dies mid-turn doesn't block the
others): holding it, a launcher restarts one of its workers and waits until that worker's
shards are READY again, then lets the next one go. At most one cluster is down at any moment.
Progress goes back to the CLI on a reply channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from cluster.workers import Supervisor
from ipc.client import Keys, is_outage, redis_outage
from ipc.registry import Registry
from ipc.subscriber import Subscriber

log = logging.getLogger(__name__)

LOCK_LEASE = 180.0  # seconds; longer than one worker's restart takes


def _channels(keys: Keys) -> tuple[str, str]:
    return keys("control", "launchers"), keys("control", "rolling-lock")


async def _report(redis: aioredis.Redis, reply: str, **fields: Any) -> None:
    with contextlib.suppress(RedisError, OSError):
        await redis.publish(reply, orjson.dumps(fields))


async def _with_turn(redis: aioredis.Redis, lock: str, token: str) -> None:
    # Another launcher's turn ends by a DEL or the lease running out: poll for it.
    while not await redis.set(lock, token, nx=True, px=int(LOCK_LEASE * 1000)):  # noqa: ASYNC110
        await asyncio.sleep(0.2)


async def _release(redis: aioredis.Redis, lock: str, token: str) -> None:
    # Only the holder may release: compare and delete in one step.
    await redis.eval(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
        "return 0",
        1,
        lock,
        token,
    )


async def restart_all(
    redis: aioredis.Redis, keys: Keys, supervisor: Supervisor, reply: str, ready_timeout: float
) -> None:
    _, lock = _channels(keys)
    for cluster_id in sorted(supervisor.workers):
        token = uuid.uuid4().hex
        await _with_turn(redis, lock, token)
        try:
            await _report(redis, reply, cluster=cluster_id, state="restarting")
            ok = await supervisor.restart_one(cluster_id, ready_timeout=ready_timeout)
            await _report(redis, reply, cluster=cluster_id, state="ready" if ok else "failed")
        finally:
            await _release(redis, lock, token)


async def control_loop(
    redis: aioredis.Redis, keys: Keys, supervisor: Supervisor, *, ready_timeout: float = 120.0
) -> None:
    """Run in every launcher: carry out rolling restarts asked for on the control channel.

    The channel is one of the process's one pub/sub connection (ipc/subscriber.py), which
    subscribes again after an outage and logs it; requests are taken one at a time."""
    channel, _ = _channels(keys)
    subscription = await Subscriber.of(redis).subscribe(channel)
    try:
        async for _, data in subscription:
            try:
                request = orjson.loads(data)
                action, reply = request["action"], str(request["reply"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                log.warning("control: ignored a malformed request")
                continue
            try:
                if action != "rolling_restart":
                    await _report(redis, reply, state="error", error=f"unknown action {action!r}")
                    continue
                log.info("control: rolling restart of %d worker(s)", len(supervisor.workers))
                await restart_all(redis, keys, supervisor, reply, ready_timeout)
            except (RedisError, OSError) as exc:
                # Redis went away during the restart: the CLI waiting for it gives up after
                # its own timeout; the next request is taken when Redis is back.
                if is_outage(exc):
                    redis_outage.failed(exc, "the rolling restart")
                log.warning("control: rolling restart interrupted (%s)", exc)
    finally:
        await subscription.close()


async def request_rolling_restart(
    redis: aioredis.Redis, keys: Keys, *, give_up_after: float = 600.0
) -> int:
    """The CLI side: ask, print progress, return 0 when every live cluster is back."""
    expected = {c.cluster_id for c in await Registry(redis, keys).clusters()}
    if not expected:
        print("no clusters are running")
        return 1
    reply = keys("control", "reply", uuid.uuid4().hex)
    channel, _ = _channels(keys)
    done: set[int] = set()
    failed: set[int] = set()
    subscription = await Subscriber.of(redis).subscribe(reply)
    try:
        await asyncio.wait_for(subscription.subscribed(), 10)
        listeners = await redis.publish(
            channel, orjson.dumps({"action": "rolling_restart", "reply": reply})
        )
        if not listeners:
            print("no launcher is listening (is `guildhouse run` up?)")
            return 1
        print(
            f"rolling restart of clusters {sorted(expected)} through {listeners} launcher(s)",
            flush=True,
        )
        deadline = time.monotonic() + give_up_after
        while done | failed < expected and time.monotonic() < deadline:
            message = await subscription.get(within=1.0)
            if message is None:
                continue
            event = orjson.loads(message[1])
            cluster, state = event.get("cluster"), event.get("state")
            print(f"cluster {cluster}: {state}", flush=True)
            if state == "ready":
                done.add(int(cluster))
            elif state == "failed":
                failed.add(int(cluster))
    finally:
        await subscription.close()
    if failed or done < expected:
        print(f"not back: {sorted(expected - done)}")
        return 1
    print("all clusters restarted")
    return 0
