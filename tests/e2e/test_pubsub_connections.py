"""Each worker listens to Redis over one pub/sub connection (ipc/subscriber.py; issue 24,
item 4): the IPC bus, the settings and XP settings invalidations, the throttles' lost-window
channel and the job runner's wake-up share it. Before, each held a connection of its own
(about five a worker)."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from e2e_harness import SandboxProc, running_cluster, world_of

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


async def test_every_worker_holds_one_pubsub_connection(
    sandbox: SandboxProc, bot_db: str, redis_url: str
) -> None:
    world = await world_of(sandbox)
    owner = int(world["guilds"][0]["owner_id"])
    async with running_cluster(
        sandbox, bot_db, redis_url, shards=2, clusters=2, owner_id=owner
    ) as sup:
        pids = {w.pid for w in sup.workers.values()}
        assert len(pids) == 2 and None not in pids
        async with aioredis.Redis.from_url(redis_url) as redis:
            listening = [c for c in await redis.client_list() if int(c["sub"]) + int(c["psub"]) > 0]
    by_worker = {
        pid: [c for c in listening if c["name"] == f"guildhouse:pubsub:{pid}"] for pid in pids
    }
    assert all(len(found) == 1 for found in by_worker.values()), by_worker
    # Everything a worker listens to is on that one connection: the bus's three channels,
    # two settings caches, the throttles' channel, the job runner's wake-up.
    assert all(int(found[0]["sub"]) >= 7 for found in by_worker.values()), by_worker
    # And nothing in the workers subscribes any other way.
    others = [c for c in listening if not c["name"].startswith("guildhouse:pubsub:")]
    assert others == [], others
