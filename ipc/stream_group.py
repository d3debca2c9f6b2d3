"""A Redis Stream read through a consumer group: the durable buffer between a write that was
counted in Redis and its arrival in Postgres.

Every worker runs a consumer. An entry is delivered to one consumer and stays in the group's
pending list until that consumer acknowledges it (after its Postgres transaction committed).
Entries of a consumer that died (SIGKILL, lost host) stay pending; any other consumer claims
them once they have been idle long enough (XAUTOCLAIM). Acknowledged entries are kept for
`retention` seconds (a leaderboard rebuild replays the recent ones) and then trimmed; entries
that are pending or not yet delivered are never trimmed.

If the stream or the group vanished (Redis was wiped), the group is created again from the
start of whatever the stream holds.
"""

from __future__ import annotations

import logging
import time
from typing import Any, NamedTuple

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

log = logging.getLogger(__name__)


class StreamEntry(NamedTuple):  # one per entry read: a tuple is the cheapest to make
    entry_id: str
    fields: dict[str, str]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entries(raw: Any) -> list[StreamEntry]:
    out = []
    for entry_id, fields in raw or []:
        if fields is None:  # deleted while pending (XAUTOCLAIM on Redis 6.2 reports these)
            continue
        try:  # bytes, as the worker's client returns them; str from a decoding client
            decoded = {k.decode(): v.decode() for k, v in fields.items()}
        except AttributeError:
            decoded = {_text(k): _text(v) for k, v in fields.items()}
        out.append(StreamEntry(_text(entry_id), decoded))
    return out


def _id_tuple(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class StreamGroup:
    def __init__(self, redis: aioredis.Redis, stream: str, group: str, consumer: str) -> None:
        self.redis = redis
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self._claim_cursor = "0-0"

    async def ensure(self) -> None:
        """Create the group (and the stream) if missing; reading starts at the first entry."""
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await getattr(self.redis, method)(*args, **kwargs)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            log.warning("stream %s lost its group (Redis wiped?); creating it again", self.stream)
            await self.ensure()
            return await getattr(self.redis, method)(*args, **kwargs)

    async def read(self, count: int = 500, block_ms: int | None = 1000) -> list[StreamEntry]:
        """New entries for this consumer (waits up to `block_ms` for the first)."""
        raw = await self._call(
            "xreadgroup",
            self.group,
            self.consumer,
            {self.stream: ">"},
            count=count,
            block=block_ms,
        )
        if not raw:
            return []
        return _entries(raw[0][1])

    async def pending_mine(self, count: int = 500) -> list[StreamEntry]:
        """Entries delivered to this consumer name and not acknowledged (after a restart under
        the same name)."""
        raw = await self._call(
            "xreadgroup", self.group, self.consumer, {self.stream: "0"}, count=count
        )
        if not raw:
            return []
        return _entries(raw[0][1])

    async def claim_stale(self, min_idle: float, count: int = 500) -> list[StreamEntry]:
        """Take over entries other consumers left pending for `min_idle` seconds or more."""
        result = await self._call(
            "xautoclaim",
            self.stream,
            self.group,
            self.consumer,
            int(min_idle * 1000),
            start_id=self._claim_cursor,
            count=count,
        )
        self._claim_cursor = _text(result[0]) if result else "0-0"
        return _entries(result[1] if result else [])

    async def ack(self, entry_ids: list[str]) -> int:
        if not entry_ids:
            return 0
        return int(await self._call("xack", self.stream, self.group, *entry_ids))

    async def oldest_unacked(self) -> str | None:
        """Id of the oldest entry not acknowledged yet (pending or not delivered), or None."""
        candidates: list[str] = []
        try:
            summary = await self.redis.xpending(self.stream, self.group)
            groups = await self.redis.xinfo_groups(self.stream)
        except ResponseError:  # no stream or no group: nothing waits
            return None
        if summary and int(summary.get("pending") or 0) > 0 and summary.get("min"):
            candidates.append(_text(summary["min"]))
        info = next((g for g in groups if _text(g.get("name")) == self.group), None)
        if info is not None:
            delivered = _text(info.get("last-delivered-id") or "0-0")
            after = await self.redis.xrange(self.stream, min=f"({delivered}", max="+", count=1)
            if after:
                candidates.append(_text(after[0][0]))
        if not candidates:
            return None
        return min(candidates, key=_id_tuple)

    async def lag_seconds(self) -> float:
        """Age of the oldest entry not acknowledged yet; 0 when everything is."""
        oldest = await self.oldest_unacked()
        if oldest is None:
            return 0.0
        return max(0.0, time.time() - _id_tuple(oldest)[0] / 1000)

    async def trim(self, retention: float) -> int:
        """Drop acknowledged entries older than `retention` seconds."""
        cutoff = (int((time.time() - retention) * 1000), 0)
        oldest = await self.oldest_unacked()
        if oldest is not None:
            cutoff = min(cutoff, _id_tuple(oldest))
        if cutoff[0] <= 0:
            return 0
        minid = f"{cutoff[0]}-{cutoff[1]}"
        return int(await self.redis.xtrim(self.stream, minid=minid, approximate=False))

    async def forget_idle_consumers(self, idle: float) -> list[str]:
        """Remove consumers with nothing pending that were idle for `idle` seconds."""
        try:
            consumers = await self.redis.xinfo_consumers(self.stream, self.group)
        except ResponseError:
            return []
        gone = []
        for c in consumers:
            name = _text(c.get("name"))
            if name == self.consumer or int(c.get("pending") or 0) > 0:
                continue
            if int(c.get("idle") or 0) >= idle * 1000:
                await self.redis.xgroup_delconsumer(self.stream, self.group, name)
                gone.append(name)
        return gone
