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

from ipc.ratelimit import GlobalLimiter, InvalidRequestGuard, is_exempt

log = logging.getLogger(__name__)


def trace_config(
    limiter: GlobalLimiter, guard: InvalidRequestGuard | None = None
) -> aiohttp.TraceConfig:
    trace = aiohttp.TraceConfig()

    async def on_start(
        _: aiohttp.ClientSession, __: SimpleNamespace, params: aiohttp.TraceRequestStartParams
    ) -> None:
        if params.headers.get("Upgrade", "").lower() == "websocket" or is_exempt(params.url.path):
            return
        if guard is not None:
            await guard.check()
        await limiter.acquire()

    async def on_end(
        _: aiohttp.ClientSession, __: SimpleNamespace, params: aiohttp.TraceRequestEndParams
    ) -> None:
        response = params.response
        if guard is not None and not is_exempt(params.url.path):
            await guard.record(response.status)
        if response.status == 429 and response.headers.get("X-RateLimit-Global"):
            try:
                retry = float(response.headers.get("Retry-After", "1"))
            except ValueError:
                retry = 1.0
            log.warning("global 429 from Discord: pausing every process for %.1fs", retry)
            await limiter.pause(retry)

    trace.on_request_start.append(on_start)
    trace.on_request_end.append(on_end)
    return trace
