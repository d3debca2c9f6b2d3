"""A command's reply reservation (ipc/ratelimit/, `reserve`/`settle`) reaching its requests
through the one place that carries it, bot/rest_limits.py's `answering`: the prepaid slot is
spent once, by the command's own first message, and goes back when the command sends nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from bot.rest_limits import answering, middleware
from ipc.client import Keys
from ipc.ratelimit import GlobalLimiter, Reservation

pytestmark = pytest.mark.integration

ANSWER = ("POST /channels/{major}/messages", "42")


@pytest.fixture(autouse=True)
def unhurried(monkeypatch: pytest.MonkeyPatch) -> None:
    """Allotments and prepaid slots good for seconds, not a quarter of one: what is checked is
    which request spends a slot, not how fast a busy machine gets to it."""
    monkeypatch.setattr("ipc.ratelimit.allotment.ALLOT_FOR", 5.0)
    monkeypatch.setattr("ipc.ratelimit.allotment.PREPAID_FOR", 5.0)


@pytest.fixture
async def api() -> AsyncIterator[str]:
    """A stand-in for Discord's REST API that answers every call with 200 and no headers."""

    async def ok(_: web.Request) -> web.Response:
        return web.json_response({"id": "1"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/api/v10"
    await runner.cleanup()


async def allotted(limiter: GlobalLimiter) -> None:
    """Prime the allotment: the first reservation finds none and starts a refill."""
    assert limiter.reserve(*ANSWER).allotment == -1
    assert limiter.allotment._job is not None
    await limiter.allotment._job


async def test_the_reserved_slot_is_spent_once_by_the_commands_first_message(
    redis: aioredis.Redis, keys: Keys, api: str
) -> None:
    limiter = GlobalLimiter(redis, keys, rate=50)
    await allotted(limiter)
    window = keys("rest", "global", "window")
    async with aiohttp.ClientSession(middlewares=[middleware(limiter)]) as http:
        in_window = await redis.zcard(window)

        async def command() -> Reservation:
            reservation = limiter.reserve(*ANSWER, owns=("42", "7"))
            answering(reservation)
            await (await http.post(f"{api}/channels/42/messages", json={})).read()  # the answer
            await (await http.post(f"{api}/channels/42/messages", json={})).read()  # a second
            return reservation

        reservation = await asyncio.create_task(command())
        assert reservation.spent and reservation.allotment >= 0
        assert limiter.prepaid_used == 1  # the first message, only
        # The second took another slot of the allotment (its channel is the command's own);
        # neither went to Redis for a slot.
        assert limiter.allotted_used == 2
        assert await redis.zcard(window) == in_window
        assert not limiter.settle(reservation)  # spent: nothing goes back

        # A request outside the command's task knows nothing of its reservation: Redis.
        await (await http.post(f"{api}/channels/42/messages", json={})).read()
        assert limiter.prepaid_used == 1 and await redis.zcard(window) == in_window + 1


async def test_a_command_that_sends_nothing_gives_its_slot_back(
    redis: aioredis.Redis, keys: Keys, api: str
) -> None:
    limiter = GlobalLimiter(redis, keys, rate=50)
    await allotted(limiter)
    used = limiter.allotment.used
    async with aiohttp.ClientSession(middlewares=[middleware(limiter)]) as http:

        async def quiet_command() -> Reservation:
            reservation = limiter.reserve(*ANSWER, owns=("42", "7"))
            answering(reservation)
            return reservation

        reservation = await asyncio.create_task(quiet_command())
        assert reservation.holds_slot and limiter.allotment.used == used + 1
        assert limiter.settle(reservation) and limiter.released == 1
        assert limiter.allotment.used == used  # back in the allotment, for the next command
        assert not reservation.holds_slot and not limiter.settle(reservation)  # once

        # Settled, it buys nothing more, even in the command's own task.
        async def late_send() -> None:
            answering(reservation)
            await (await http.post(f"{api}/channels/42/messages", json={})).read()

        await asyncio.create_task(late_send())
        assert limiter.prepaid_used == 0 and not reservation.spent


async def test_a_bought_slot_is_spent_once_and_lapses_unspent(
    redis: aioredis.Redis, keys: Keys
) -> None:
    limiter = GlobalLimiter(redis, keys, rate=50)
    bought = Reservation(*ANSWER)
    call = limiter.buy_call(bought)
    assert call is not None
    limiter.bought(bought, 0)  # what the script answers when it grants the slot
    assert limiter.buy_call(bought) is None  # it holds one: nothing more to buy
    await limiter.acquire(*ANSWER, reservation=bought)
    await limiter.acquire(*ANSWER, reservation=bought)
    assert limiter.prepaid_used == 1 and bought.spent
    unspent = Reservation(*ANSWER)
    limiter.bought(unspent, 0)
    assert not limiter.settle(unspent)  # nothing to give back: it lapses in Redis
    assert unspent.settled and not unspent.holds_slot
    refused = Reservation(*ANSWER)
    limiter.bought(refused, 250)  # the window was full: wait 250 ms
    assert not refused.holds_slot
