"""The shared REST limiter, as an aiohttp middleware on discord.py's HTTP client.

An aiohttp client middleware (`middleware`) wraps every request the bot's HTTP session sends:
before it, the request takes a slot from the Redis-backed global limit (and may wait for one);
after the response's headers, a global 429 becomes a pause for every process and what the
`X-RateLimit-*` headers say about the route's bucket is shared. The gateway websocket and
interaction callbacks (exempt on Discord) pass straight through.

A middleware, not an aiohttp `TraceConfig` (discord.py's `http_trace=`): tracing sends about
ten signals a request, and cost several times the middleware's CPU a request (README,
Benchmarks). discord.py takes no middlewares: bot/dpy/http_session.py puts this one on every
session its HTTP client makes.

A command's reservation (ipc/ratelimit/, `Reservation`: the slot prepaid for its answer, the
buckets it owns) reaches the requests it sends through `answering`, here and nowhere else:
discord.py's HTTP client takes nothing per request (`ctx.send` -> `Messageable.send` ->
`HTTPClient.request` -> aiohttp), so the reservation travels in a ContextVar of the command's
task, set by `answering` (the gate, when it reserves) and read by this middleware, which hands
it to the limiter explicitly. asyncio gives every task its own context, so a command's
reservation reaches its own requests (and those of tasks it starts), no other command's.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

import aiohttp

from bot import metrics
from ipc.ratelimit import GlobalLimiter, InvalidRequestGuard, Reservation, is_exempt, route_of

log = logging.getLogger(__name__)

# The reservation of the command the current task runs (see the module's docstring).
_answering: ContextVar[Reservation | None] = ContextVar("guildhouse_answering", default=None)


def answering(reservation: Reservation) -> None:
    """The REST requests of the current task (a command's), and of the tasks it starts from
    now on, spend `reservation`."""
    _answering.set(reservation)


def _number(value: str | None, default: float) -> float:
    try:
        return float(value) if value is not None else default
    except ValueError:
        return default


def middleware(
    limiter: GlobalLimiter, guard: InvalidRequestGuard | None = None, *, cluster: str = ""
) -> aiohttp.ClientMiddlewareType:
    async def limit(
        request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket" or is_exempt(request.url.path):
            return await handler(request)
        route = route_of(request.method, request.url.path)
        if guard is not None:
            await guard.check()
        reservation = _answering.get()
        waited = limiter.waited
        await limiter.acquire(*route, reservation=reservation)
        if limiter.waited > waited:
            metrics.REST_WAIT.labels(cluster).observe(limiter.waited - waited)
        response = await handler(request)
        owned = reservation is not None and route[1] in reservation.owns
        await _learn(limiter, guard, cluster, route, response, owned=owned)
        return response

    return limit


async def _learn(
    limiter: GlobalLimiter,
    guard: InvalidRequestGuard | None,
    cluster: str,
    route: tuple[str, str],
    response: aiohttp.ClientResponse,
    *,
    owned: bool,
) -> None:
    """What a response's status and headers say: counted, and shared with every process."""
    headers = response.headers
    metrics.REST_REQUESTS.labels(cluster, route[0], str(response.status)).inc()
    if guard is not None:
        await guard.record(response.status)
        metrics.REST_INVALID.labels(cluster).set(guard.count)
    if response.status == 429:
        scope = "global" if headers.get("X-RateLimit-Global") else "bucket"
        metrics.REST_429.labels(cluster, scope).inc()
    retry = _number(headers.get("Retry-After"), 1.0)
    if response.status == 429 and headers.get("X-RateLimit-Global"):
        log.warning("global 429 from Discord: pausing every process for %.1fs", retry)
        await limiter.pause(retry)
        return
    bucket = headers.get("X-RateLimit-Bucket")
    if bucket is None:
        return
    reset_after = _number(headers.get("X-RateLimit-Reset-After"), 0.0)
    if response.status == 429:
        log.info("429 on %s: holding its bucket in every process for %.1fs", route[0], retry)
    await limiter.learn(
        route[0],
        route[1],
        bucket,
        int(_number(headers.get("X-RateLimit-Remaining"), 1)),
        reset_after,
        max(retry, reset_after) if response.status == 429 else 0.0,
        owned=owned,
    )
