"""Wire the shared REST limiter into discord.py's HTTP client.

discord.py accepts an aiohttp `TraceConfig` (`http_trace=`): its request-start hook may wait,
so every REST call takes a slot from the Redis-backed global limit before it is sent, and the
request-end hook turns a global 429 into a pause for every process. The gateway websocket and
interaction callbacks (exempt on Discord) pass straight through.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import aiohttp

from bot import metrics
from ipc.ratelimit import GlobalLimiter, InvalidRequestGuard, is_exempt, route_of

log = logging.getLogger(__name__)


def _number(value: str | None, default: float) -> float:
    try:
        return float(value) if value is not None else default
    except ValueError:
        return default


def trace_config(
    limiter: GlobalLimiter, guard: InvalidRequestGuard | None = None, *, cluster: str = ""
) -> aiohttp.TraceConfig:
    trace = aiohttp.TraceConfig()

    async def on_start(
        _: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestStartParams
    ) -> None:
        if params.headers.get("Upgrade", "").lower() == "websocket" or is_exempt(params.url.path):
            ctx.route = None
            return
        ctx.route = route_of(params.method, params.url.path)
        if guard is not None:
            await guard.check()
        waited = limiter.waited
        await limiter.acquire(*ctx.route)
        if limiter.waited > waited:
            metrics.REST_WAIT.labels(cluster).observe(limiter.waited - waited)

    async def on_end(
        _: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestEndParams
    ) -> None:
        route = getattr(ctx, "route", None)
        if route is None:
            return
        response = params.response
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
        )

    trace.on_request_start.append(on_start)
    trace.on_request_end.append(on_end)
    return trace
