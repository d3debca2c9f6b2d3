"""The IDENTIFY queue: one IDENTIFY per interval per bucket, across every process and pod.

Discord allows `max_concurrency` IDENTIFYs per 5 seconds, one per bucket
`shard_id % max_concurrency`; a faster one earns an INVALID_SESSION (op 9) and counts against
the daily session-start limit. Each worker calls `acquire(shard_id)` from discord.py's
`before_identify_hook`.

How it stays correct:
- One Lua script does the whole decision atomically against Redis's own clock, so processes on
  different machines agree on time.
- Waiters of a bucket queue in a sorted set scored by shard id: lower shards go first, as
  Discord starts them, and nobody starves.
- Every waiter holds a short lease (a key with an expiry) that it refreshes while it polls; a
  waiter that died is dropped from the head of the queue once its lease lapses, so a crash never
  blocks the bucket. The last grant time itself expires after a few intervals.
- Turns are spaced by the interval plus a small margin (5 %, at least 0.2 s): a turn is
  granted before the IDENTIFY is sent, and sending can be late. The turn is taken in
  discord.py's `before_identify_hook`, right before the send, so the lateness is the event
  loop's: in `bench scale` (8 workers on 2 cores, "can't keep up" warnings) consecutive
  IDENTIFYs of a bucket reached the gateway at most 30 ms closer than their turns were.
- A shard first `approach`es its turn without a connection, and connects only when the turn is
  near: waiting after HELLO would leave the new connection unread for as long as the queue is.
- If Redis is unreachable, a worker paces its own IDENTIFYs locally (one per interval) and says
  so once at INFO (the outage's one WARNING is the process's: `ipc.client.redis_outage`);
  that can only be slower than the shared queue, never faster for this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import redis.asyncio as aioredis
import redis.exceptions

from ipc.client import Degraded, Keys

log = logging.getLogger(__name__)

# KEYS: last grant time, waiting set.  ARGV: shard, interval ms, lease ms, lease key prefix,
# peek ('1': report when the turn would come, keep the place in the queue, claim nothing).
# Returns 0 when granted (or, peeking, grantable now), -1 while another shard is ahead,
# otherwise milliseconds until this shard's turn.
_CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local shard, interval, lease, alive = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
redis.call('ZADD', KEYS[2], 'NX', tonumber(shard), shard)
redis.call('SET', alive .. shard, '1', 'PX', lease)
redis.call('PEXPIRE', KEYS[2], lease * 4)
while true do
  local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  if not head or redis.call('EXISTS', alive .. head) == 1 then break end
  redis.call('ZREM', KEYS[2], head)
end
local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
if head ~= shard then
  return -1
end
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if now - last < interval then
  return interval - (now - last)
end
if ARGV[5] == '1' then
  return 0
end
redis.call('SET', KEYS[1], now, 'PX', interval * 4)
redis.call('ZREM', KEYS[2], shard)
redis.call('DEL', alive .. shard)
return 0
"""

POLL = 0.1  # seconds between asks while another shard is ahead in the queue


class IdentifyQueue:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        max_concurrency: int = 1,
        interval: float = 5.0,
        lease: float = 10.0,
        margin: float | None = None,
    ) -> None:
        if max_concurrency < 1 or interval <= 0 or lease <= 0:
            raise ValueError("max_concurrency >= 1, interval > 0 and lease > 0 are required")
        self.redis = redis
        self.keys = keys
        self.max_concurrency = max_concurrency
        self.interval = interval
        # Turns are granted a little further apart than Discord requires: the IDENTIFY leaves
        # the worker a moment after its turn, and a busy process can be late by more than the
        # next one is, which Discord would punish with an op 9.
        self.spacing = interval + (max(0.2, 0.05 * interval) if margin is None else margin)
        self.lease = lease
        self._claim = redis.register_script(_CLAIM)
        self._local_last: dict[int, float] = {}
        self._redis_state = Degraded(
            log,
            "identify queue: Redis unreachable (%s); pacing IDENTIFYs locally",
            "identify queue: Redis is back; shared pacing resumed",
            what="the IDENTIFY queue",
        )

    def bucket(self, shard_id: int) -> int:
        return shard_id % self.max_concurrency

    async def approach(self, shard_id: int, *, within: float = 2.0) -> float:
        """Wait, holding this shard's place in the queue, until its turn is at most `within`
        seconds away; return the seconds waited. Claims nothing: `acquire` does.

        Call it before opening the shard's gateway connection: a shard that waited its turn
        after HELLO would read nothing meanwhile (its heartbeat ACKs pile up unread, and past
        discord.py's heartbeat timeout its connection is closed as a zombie)."""
        return await self._wait(shard_id, within=within, claim=False)

    async def acquire(self, shard_id: int) -> float:
        """Wait until this shard may IDENTIFY; return the seconds waited."""
        return await self._wait(shard_id, within=0.0, claim=True)

    async def _wait(self, shard_id: int, *, within: float, claim: bool) -> float:
        started = time.monotonic()
        bucket = self.bucket(shard_id)
        keys = [self.keys("identify", bucket, "last"), self.keys("identify", bucket, "waiting")]
        args: list[str | int] = [
            str(shard_id),
            int(self.spacing * 1000),
            int(self.lease * 1000),
            self.keys("identify", bucket, "alive", ""),
            "0" if claim else "1",
        ]
        try:
            while True:
                try:
                    wait_ms = int(await self._claim(keys=keys, args=args))
                except (redis.exceptions.RedisError, OSError) as exc:
                    self._redis_state.failed(exc)
                    if claim:  # without Redis, IDENTIFYs are paced locally
                        await self._local(bucket)
                    return time.monotonic() - started
                self._redis_state.succeeded()
                if 0 <= wait_ms <= within * 1000:
                    return time.monotonic() - started
                pause = POLL if wait_ms < 0 else min(wait_ms / 1000 - within, self.lease / 2)
                await asyncio.sleep(pause)
        except asyncio.CancelledError:
            # A waiter that gives up (its worker is stopping) leaves the queue now: otherwise
            # the shards behind it wait for its lease to lapse.
            await self._leave(keys[1], str(args[3]), shard_id)
            raise

    async def _leave(self, waiting: str, alive: str, shard_id: int) -> None:
        with contextlib.suppress(redis.exceptions.RedisError, OSError, TimeoutError):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zrem(waiting, str(shard_id))
                pipe.delete(alive + str(shard_id))
                await asyncio.wait_for(pipe.execute(), 1.0)

    async def _local(self, bucket: int) -> None:
        last = self._local_last.get(bucket)
        if last is not None:
            await asyncio.sleep(max(0.0, last + self.spacing - time.monotonic()))
        self._local_last[bucket] = time.monotonic()
