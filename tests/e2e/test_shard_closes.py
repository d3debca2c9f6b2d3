"""A fatal gateway close of one shard, after it has been READY, takes down nothing else: the
shard comes back with a new IDENTIFY, and after repeated closes it is marked FAILED while its
sibling in the same worker process serves on."""

from __future__ import annotations

import uuid

import orjson
import pytest
import redis.asyncio as aioredis
from e2e_harness import Driver, SandboxProc, place_on_shard, start_cluster, until

from bot.shards import ShardState
from ipc.client import Keys
from ipc.registry import Registry

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

SHARDS = 2


async def close_shard(driver: Driver, shard: int, code: int) -> None:
    body = {"kind": "close", "shard": shard, "code": code}
    async with driver.http.post(f"{driver.base}/_sandbox/faults", json=body) as resp:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["applied"] == 1


async def test_fatal_closes_of_a_ready_shard_spare_its_sibling_and_the_process(
    sandbox: SandboxProc,
    driver: Driver,
    bot_db: str,
    redis_url: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    prefix = f"e2e:{uuid.uuid4().hex[:8]}:"
    channel, author = place_on_shard(driver.world, 1, SHARDS)
    sup = await start_cluster(
        sandbox,
        bot_db,
        redis_url,
        shards=SHARDS,
        clusters=1,
        owner_id=author,
        prefix=prefix,
    )
    worker = sup.workers[0]
    report = worker.report
    assert report is not None
    pid = worker.pid

    async def state(shard: int) -> ShardState:
        return ShardState(report.shard_states()[shard][0])

    redis = aioredis.Redis.from_url(redis_url)
    try:
        sibling_identifies = await driver.identifies(1)
        # Closes the bot cannot recover from by itself, each once: the shard comes back.
        for code in (4014, 4004):
            before = await driver.identifies(0)
            await close_shard(driver, 0, code)

            async def back(before: int = before) -> bool:
                return await driver.identifies(0) > before and await state(0) == ShardState.READY

            await until(f"shard 0 is READY again after {code}", back, within=60)
        # The third fatal close within the window: the shard is given up on.
        await close_shard(driver, 0, 4013)

        async def failed() -> bool:
            return await state(0) == ShardState.FAILED

        await until("shard 0 is FAILED", failed, within=60)
        registry = Registry(redis, Keys(prefix))

        async def published() -> bool:
            clusters = await registry.clusters()
            return bool(clusters) and clusters[0].shards[0].state == "failed"

        await until("the registry shows shard 0 failed", published, within=60)

        # Its sibling never left, and still answers; the process is the one that started.
        assert await state(1) == ShardState.READY
        assert await driver.identifies(1) == sibling_identifies
        await driver.drain(channel)
        await driver.say(channel, author, "!ping")
        assert "Pong" in await driver.reply_text(channel)
        assert worker.pid == pid and worker.alive() and worker.restarts == 0
    finally:
        await sup.stop()
        await redis.aclose()
    out, _ = capfd.readouterr()
    critical = [
        e
        for e in map(orjson.loads, (line for line in out.splitlines() if line.startswith("{")))
        if e.get("level") == "CRITICAL"
    ]
    assert [(e.get("shard"), e["logger"]) for e in critical] == [(0, "bot.shard_lifecycle")] * 3, (
        critical
    )
    for entry, code in zip(critical, (4014, 4004, 4013), strict=True):
        assert f"with {code} (" in entry["message"]
    assert "reconnecting" in critical[0]["message"] and "FAILED" in critical[2]["message"]
