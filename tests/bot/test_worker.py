"""The worker's registry publish through a Redis outage: the outage is the worker's one WARNING
(bot/outages.py), the publish's own line is INFO, and its next success ends the outage."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, cast

import pytest
from redis import exceptions as redis_errors

from bot import outages, worker
from bot.guildhouse import Guildhouse


class Registry:
    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.published: list[Any] = []

    async def publish(self, info: Any) -> None:
        if self.errors:
            raise self.errors.pop(0)
        self.published.append(info)


class Bot:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def cluster_info(self, state: str) -> str:
        return state


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Redis reachable and the publish not failing, before and after (the state is the
    process's)."""
    monkeypatch.setattr(worker, "_publish_failed", False)
    outages.redis.reachable()
    yield
    outages.redis.reachable()


async def test_a_publish_that_meets_an_outage_logs_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    refused = redis_errors.ConnectionError("Error 111 connecting to 127.0.0.1:6379.")
    registry = Registry(refused, refused, refused)
    bot = cast(Guildhouse, Bot(registry))
    for _ in range(4):
        await worker._publish(bot, "ready")
    assert registry.published == ["ready"] and not outages.redis.down
    assert [(r.levelname, r.name, r.getMessage()[:31]) for r in caplog.records] == [
        ("WARNING", "bot.outages", "Redis is unreachable (the clust"),
        ("INFO", "bot.worker", "cannot publish to the cluster r"),
        ("INFO", "bot.outages", "Redis is reachable again after "),
    ]


async def test_a_publish_refused_for_another_reason_is_its_own_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    bot = cast(Guildhouse, Bot(Registry(redis_errors.ResponseError("OOM command not allowed"))))
    await worker._publish(bot, "ready")
    assert not outages.redis.down
    assert [(r.levelname, r.name) for r in caplog.records] == [("WARNING", "bot.worker")]


def test_the_report_loop_collects_young_garbage_and_now_and_then_all_of_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`_collect_young`, which the report loop runs once a second: a reference cycle made since
    is gone, the interpreter's own count of new objects starts again from nothing, and after
    FULL_COLLECTION_AFTER young collections without a full one, the whole heap is collected."""
    import gc
    import weakref

    class Node:
        other: Any = None

    monkeypatch.setattr(worker, "FULL_COLLECTION_AFTER", 3)
    gc.collect()
    full = gc.get_stats()[2]["collections"]
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    assert gone() is not None  # a cycle: no reference count reaches zero
    worker._collect_young()
    assert gone() is None
    assert gc.get_count()[0] < 50  # what the interpreter counts toward its next collection
    assert gc.get_stats()[2]["collections"] == full  # one young collection: no full one yet
    worker._collect_young()
    worker._collect_young()  # the third young one since the last full collection
    assert gc.get_stats()[2]["collections"] == full + 1
