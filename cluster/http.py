"""The launcher's HTTP side: /metrics, /healthz and /readyz."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from cluster.metrics import render
from cluster.workers import Supervisor

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[None]]


class Probes:
    """Dependency checks for /readyz, cached briefly so a probe storm stays cheap."""

    def __init__(self, checks: dict[str, Probe], *, ttl: float = 2.0, timeout: float = 2.0):
        self.checks = checks
        self.ttl = ttl
        self.timeout = timeout
        self._at = 0.0
        self._problems: list[str] = []
        self._lock = asyncio.Lock()

    async def problems(self) -> list[str]:
        async with self._lock:
            if time.monotonic() - self._at > self.ttl:
                self._problems = [
                    p
                    for p in await asyncio.gather(
                        *(self._run(name, check) for name, check in self.checks.items())
                    )
                    if p
                ]
                self._at = time.monotonic()
            return list(self._problems)

    async def _run(self, name: str, check: Probe) -> str | None:
        try:
            await asyncio.wait_for(check(), self.timeout)
        except Exception as exc:  # any failure means "not ready", with its name
            return f"{name} unreachable: {exc.__class__.__name__}"
        return None


def build_app(supervisor: Supervisor, probes: Probes) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        # Answering at all shows the launcher's loop is responsive; workers' loops are watched
        # by the supervisor, which restarts a hung one.
        alive = sum(1 for w in supervisor.workers.values() if w.alive())
        return web.json_response(
            {"status": "ok", "workers_alive": alive, "workers": len(supervisor.workers)}
        )

    async def readyz(_: web.Request) -> web.Response:
        problems = await probes.problems()
        if not supervisor.ready():
            problems.append("not every shard is READY")
        status = 200 if not problems else 503
        return web.json_response({"ready": not problems, "problems": problems}, status=status)

    async def metrics(_: web.Request) -> web.Response:
        body, content_type = await asyncio.to_thread(render)
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def serve(app: web.Application, port: int) -> tuple[web.AppRunner, int]:
    """Start serving on all interfaces (probes come from the kubelet); return the bound port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "0.0.0.0", port)  # noqa: S104
    await site.start()
    bound = int(runner.addresses[0][1]) if runner.addresses else port
    log.info("http server on port %d (/metrics, /healthz, /readyz)", bound)
    return runner, bound
