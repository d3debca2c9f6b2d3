"""The cluster registry: who runs which shards, where, and how they are doing.

Each worker publishes its entry every few seconds; an entry lives `ttl` seconds unless
refreshed, so a dead cluster drops out by itself. An index (a sorted set by last heartbeat)
lists the clusters without SCANning the keyspace. Launchers add their restart counts, which
the workers themselves can't know.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis

from ipc.client import Keys


@dataclass
class ShardInfo:
    state: str  # starting, connecting, ready, disconnected, failed
    latency_ms: float | None
    guilds: int
    last_event_age: float | None = None  # seconds since the shard last heard from the gateway


@dataclass
class ClusterInfo:
    cluster_id: int
    shard_ids: list[int]
    pid: int
    host: str
    state: str  # starting, ready, stopping
    started: float
    heartbeat: float = field(default_factory=time.time)
    guilds: int = 0
    shards: dict[int, ShardInfo] = field(default_factory=dict)
    restarts: int = 0

    def to_json(self) -> bytes:
        data = asdict(self)
        data["shards"] = {str(k): v for k, v in data["shards"].items()}
        return orjson.dumps(data)

    @classmethod
    def from_json(cls, raw: bytes | str) -> ClusterInfo:
        data: dict[str, Any] = orjson.loads(raw)
        data["shards"] = {int(k): ShardInfo(**v) for k, v in data.get("shards", {}).items()}
        return cls(**data)


class Registry:
    def __init__(self, redis: aioredis.Redis, keys: Keys, *, ttl: float = 15.0) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl = ttl
        self.index = keys("clusters")
        self.restarts = keys("clusters", "restarts")

    def _key(self, cluster_id: int) -> str:
        return self.keys("cluster", cluster_id)

    async def publish(self, info: ClusterInfo) -> None:
        info.heartbeat = time.time()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key(info.cluster_id), info.to_json(), px=int(self.ttl * 1000))
            pipe.zadd(self.index, {str(info.cluster_id): info.heartbeat})
            await pipe.execute()

    async def remove(self, cluster_id: int) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._key(cluster_id))
            pipe.zrem(self.index, str(cluster_id))
            await pipe.execute()

    async def count_restart(self, cluster_id: int) -> None:
        await self.redis.hincrby(self.restarts, str(cluster_id), 1)

    async def reset_restarts(self, cluster_ids: list[int]) -> None:
        """A launch starts its clusters' restart counts at 0 (the counts are per launch; the
        launcher's metrics keep totals)."""
        if cluster_ids:
            await self.redis.hdel(self.restarts, *(str(c) for c in cluster_ids))

    async def clusters(self) -> list[ClusterInfo]:
        """Live clusters, by id; entries whose heartbeat lapsed are dropped from the index."""
        members = await self.redis.zrange(self.index, 0, -1)
        ids = [int(i) for i in members if isinstance(i, bytes | str)]
        if not ids:
            return []
        raws = await self.redis.mget([self._key(i) for i in ids])
        restarts = await self.redis.hgetall(self.restarts)
        found: list[ClusterInfo] = []
        gone: list[str] = []
        for cid, raw in zip(ids, raws, strict=True):
            if raw is None:
                gone.append(str(cid))
                continue
            info = ClusterInfo.from_json(raw)
            info.restarts = int(restarts.get(str(cid).encode(), 0))
            found.append(info)
        if gone:
            await self.redis.zrem(self.index, *gone)
        return sorted(found, key=lambda c: c.cluster_id)

    async def find_guild_cluster(self, guild_id: int, shard_count: int) -> ClusterInfo | None:
        """The live cluster serving a guild (shard `(guild_id >> 22) % shard_count`)."""
        shard = (guild_id >> 22) % shard_count
        for info in await self.clusters():
            if shard in info.shard_ids:
                return info
        return None
