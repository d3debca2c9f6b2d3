"""Gateway events a parser can't read (ids that are not snowflakes, fields missing) reach a
worker over its real websocket: each is dropped and logged, and nothing else happens. discord.py
alone would close the client on the first, every shard of the worker with it."""

from __future__ import annotations

import orjson
import pytest
from e2e_harness import Driver, SandboxProc, place_on_shard, start_cluster

from sandbox.gateway import malformed_events

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

SHARDS = 2


async def test_unreadable_events_are_dropped_and_the_worker_serves_on(
    sandbox: SandboxProc,
    driver: Driver,
    bot_db: str,
    redis_url: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    channel, author = place_on_shard(driver.world, 0, SHARDS)
    sup = await start_cluster(
        sandbox, bot_db, redis_url, shards=SHARDS, clusters=1, owner_id=author
    )
    worker = sup.workers[0]
    pid = worker.pid
    try:
        connected = await driver.identifies()
        for round_ in range(2):  # the second round: no traceback again, still no harm
            body = {"kind": "malformed"}  # every shard
            async with driver.http.post(f"{driver.base}/_sandbox/faults", json=body) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["applied"] == SHARDS
            # A command after them, on the same connection, is answered.
            await driver.drain(channel)
            await driver.say(channel, author, "!ping")
            assert "Pong" in await driver.reply_text(channel), f"round {round_}"
        assert worker.pid == pid and worker.alive() and worker.restarts == 0
        assert await driver.identifies() == connected  # no shard connected again
    finally:
        await sup.stop()
    out, _ = capfd.readouterr()
    logged = [
        e
        for e in map(orjson.loads, (line for line in out.splitlines() if line.startswith("{")))
        if e.get("logger") == "bot.dpy.parser_guard"
    ]
    sent = [event for event, _ in malformed_events(None)] * SHARDS * 2  # two rounds
    assert len(logged) == len(sent), logged
    assert all(e["level"] == "ERROR" and "dropped" in e["message"] for e in logged)
    assert sorted(e["message"].split()[2] for e in logged) == sorted(sent)
