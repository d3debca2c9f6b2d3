"""The shards' presence pacer (bot/presence_pacer.py) with an injected clock: never more than
5 updates in any 21 s of a shard, the excess coalesced to the latest and sent when allowed."""

from __future__ import annotations

from typing import Any

from bot.presence_pacer import PresencePacer, Window, pacer_of


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakeBot:
    def __init__(self, clock: Clock, shards: int = 2) -> None:
        self.shards: dict[int, Any] = {i: object() for i in range(shards)}
        self.clock = clock
        self.sent: list[tuple[int, Any, Any, float]] = []  # shard, status, activity, at
        self.failing: set[int] = set()

    async def change_presence(
        self, *, activity: Any = None, status: Any = None, shard_id: int | None = None
    ) -> None:
        assert shard_id is not None  # always one shard at a time
        if shard_id in self.failing:
            raise ConnectionError("shard down")
        self.sent.append((shard_id, status, activity, self.clock()))


def of_shard(bot: FakeBot, shard_id: int) -> list[tuple[Any, float]]:
    return [(activity, at) for s, _, activity, at in bot.sent if s == shard_id]


def assert_within_limit(times: list[float], limit: int = 5, window: float = 21.0) -> None:
    for i in range(len(times) - limit):
        assert times[i + limit] - times[i] >= window, times


async def test_eight_quick_updates_send_five_then_the_latest_when_allowed() -> None:
    clock = Clock()
    bot = FakeBot(clock)
    pacer = PresencePacer(bot, clock=clock, sleep=clock.sleep)
    waits = [await pacer.change(status="idle", activity=f"a{i}") for i in range(8)]
    assert waits[:5] == [0.0] * 5
    assert all(w == 21.0 for w in waits[5:])  # the first send leaves the window 21 s later
    await pacer.idle()
    for shard in (0, 1):
        sent = of_shard(bot, shard)
        assert [a for a, _ in sent] == ["a0", "a1", "a2", "a3", "a4", "a7"]  # the latest won
        assert_within_limit([at for _, at in sent])


async def test_a_steady_stream_never_exceeds_the_limit() -> None:
    clock = Clock()
    bot = FakeBot(clock, shards=1)
    pacer = PresencePacer(bot, clock=clock, sleep=clock.sleep)
    for i in range(40):
        await pacer.change(activity=i)
        clock.now += 1.5
        if i % 7 == 6:
            await pacer.idle()
    await pacer.idle()
    sent = of_shard(bot, 0)
    assert_within_limit([at for _, at in sent])
    assert sent[-1][0] == 39  # the last one is always applied


async def test_a_failing_shard_does_not_stop_the_others() -> None:
    clock = Clock()
    bot = FakeBot(clock)
    bot.failing.add(0)
    pacer = PresencePacer(bot, clock=clock, sleep=clock.sleep)
    assert await pacer.change(status="dnd") == 0.0
    assert [s for s, *_ in bot.sent] == [1]


def test_window_waits_until_the_oldest_send_leaves() -> None:
    w = Window(2, 10.0)
    w.take(0.0)
    w.take(4.0)
    assert w.wait(5.0) == 5.0
    assert w.wait(10.0) == 0.0  # the first left the window


def test_one_pacer_per_bot() -> None:
    a, b = FakeBot(Clock()), FakeBot(Clock())
    assert pacer_of(a) is pacer_of(a) and pacer_of(a) is not pacer_of(b)
