"""The sandbox server: REST, gateway and control API on one port, and its Python API."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from sandbox.gateway import Gateway
from sandbox.ratelimit import Fault, Limits
from sandbox.rest import ApiError, Rest
from sandbox.world import World

log = logging.getLogger(__name__)


@dataclass
class SandboxConfig:
    host: str = "127.0.0.1"
    port: int = 0
    guilds: int = 20
    members: int = 20
    seed: int = 1
    max_concurrency: int = 1
    # Overrides the shard count GET /gateway/bot recommends (None: one per 1,000 guilds).
    shards: int | None = None
    identify_interval: float = 5.0  # seconds between IDENTIFYs per concurrency bucket
    heartbeat_ms: int = 41_250
    # Scales Discord's long windows (gateway send limit, channel renames, interaction expiry)
    # so tests can exercise them quickly.
    window_scale: float = 1.0
    allowed_privileged: int = (1 << 1) | (1 << 8) | (1 << 15)  # members, presences, content
    limits: Limits = field(default_factory=Limits)


class Sandbox:
    """`async with Sandbox(SandboxConfig(...)) as sb:` a local Discord until the block ends."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.world = World(
            guilds=self.config.guilds, members=self.config.members, seed=self.config.seed
        )
        self.gateway = Gateway(self.world, self.config)
        self.rest = Rest(self.world, self.gateway, self.config)
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- URLs --------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://{self.config.host}:{self.port}/gateway"

    @property
    def control_url(self) -> str:
        return self.base_url

    @property
    def token(self) -> str:
        return self.world.token

    def banner(self) -> dict[str, Any]:
        return {
            "api_url": self.api_url,
            "gateway_url": self.gateway_url,
            "control_url": self.control_url,
            "token": self.token,
            "application_id": str(self.world.application_id),
            "identify_interval": self.config.identify_interval,
            "max_concurrency": self.config.max_concurrency,
            "guilds": len(self.world.guilds),
        }

    # -- lifecycle -----------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=25 * 1024 * 1024)
        app.router.add_route("*", "/api/v{version:\\d+}/{tail:.*}", self.rest.handle)
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_get("/", self.gateway.handle)
        app.router.add_get("/_sandbox/world", self._world)
        app.router.add_post("/_sandbox/messages", self._messages)
        app.router.add_post("/_sandbox/interactions", self._interactions)
        app.router.add_get("/_sandbox/outbox", self._outbox)
        app.router.add_post("/_sandbox/faults", self._faults)
        app.router.add_post("/_sandbox/events", self._events)
        app.router.add_get("/_sandbox/stats", self._stats)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self.gateway.url = self.gateway_url

    async def stop(self) -> None:
        await self.gateway.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- Python control API ----------------------------------------------------------------------

    async def send_message(self, channel_id: int, author_id: int, content: str) -> dict[str, Any]:
        return await self.rest.user_message(channel_id, author_id, content)

    async def send_interaction(
        self, channel_id: int, user_id: int, name: str, options: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        return await self.rest.user_interaction(channel_id, user_id, name, options or [])

    async def click(
        self, channel_id: int, user_id: int, message_id: int, custom_id: str
    ) -> dict[str, Any]:
        return await self.rest.user_interaction(
            channel_id, user_id, "", [], kind=3, custom_id=custom_id, message_id=message_id
        )

    async def outbox(
        self, channel_id: int | None = None, after: int = 0, wait: float = 0
    ) -> list[dict[str, Any]]:
        return await self.rest.wait_outbox(
            None if channel_id is None else str(channel_id), after, wait
        )

    async def fault(
        self,
        kind: str,
        *,
        shard: int | None = None,
        route: str | None = None,
        count: int = 1,
        status: int = 500,
        is_global: bool = False,
        retry_after: float = 1.0,
    ) -> int:
        if kind in ("drop", "reconnect", "invalidate", "stall_acks"):
            return await self.gateway.fault(kind, shard, count)
        if kind in ("status", "ratelimit"):
            key = route or "*"
            self.rest.limiter.forced[key] = Fault(
                count, 429 if kind == "ratelimit" else status, is_global, retry_after
            )
            return count
        raise ValueError(f"unknown fault kind {kind!r}")

    async def event(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        """A user joins or leaves, reacts, changes presence; or the bot is removed."""
        return await self.rest.world_event(kind, data)

    def stats(self) -> dict[str, Any]:
        gw = self.gateway.stats
        rl = self.rest.limiter.stats
        return {
            "identifies_per_bucket": dict(gw["identifies"]),
            "identify_times": list(gw["identify_times"]),
            "op9": gw["op9_identify_too_fast"],
            "invalid_sessions": gw["invalid_sessions"],
            "close_codes": dict(gw["close_codes"]),
            "connections": gw["connections"],
            "rest_requests": rl["requests"],
            "requests_per_route": dict(rl["requests_by_route"]),
            "max_requests_in_1s": rl["max_per_second"],
            "rate_limited": dict(rl["rate_limited"]),
            "invalid_requests": rl["invalid_requests"],
            "banned": rl["banned"],
        }

    # -- HTTP control API -----------------------------------------------------------------------

    @staticmethod
    def _error(err: ApiError) -> web.Response:
        return web.json_response(err.body(), status=err.status)

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        try:
            data = await request.json()
        except ValueError:
            raise ApiError(400, 50109, "The request body contains invalid JSON.") from None
        if not isinstance(data, dict):
            raise ApiError(400, 50109, "Expected a JSON object.")
        return data

    async def _world(self, _: web.Request) -> web.Response:
        return web.json_response(self.world.summary(self.base_url))

    async def _messages(self, request: web.Request) -> web.Response:
        try:
            data = await self._json_body(request)
            msg = await self.send_message(
                int(data["channel_id"]), int(data["author_id"]), str(data.get("content", ""))
            )
        except ApiError as err:
            return self._error(err)
        except (KeyError, ValueError, TypeError):
            return web.json_response(
                {"message": "expected channel_id, author_id, content", "code": 50035}, status=400
            )
        return web.json_response({"id": msg["id"]})

    async def _interactions(self, request: web.Request) -> web.Response:
        try:
            data = await self._json_body(request)
            if data.get("custom_id"):
                payload = await self.click(
                    int(data["channel_id"]),
                    int(data["user_id"]),
                    int(data["message_id"]),
                    str(data["custom_id"]),
                )
            else:
                payload = await self.send_interaction(
                    int(data["channel_id"]),
                    int(data["user_id"]),
                    str(data["name"]),
                    list(data.get("options") or []),
                )
        except ApiError as err:
            return self._error(err)
        except (KeyError, ValueError, TypeError):
            return web.json_response(
                {
                    "message": "expected channel_id, user_id and name (or message_id and "
                    "custom_id for a button)",
                    "code": 50035,
                },
                status=400,
            )
        return web.json_response({"id": payload["id"]})

    async def _outbox(self, request: web.Request) -> web.Response:
        try:
            after = int(request.query.get("after", "0"))
            wait = min(60.0, max(0.0, float(request.query.get("wait", "0"))))
        except ValueError:
            return web.json_response({"message": "after and wait must be numbers"}, status=400)
        channel = request.query.get("channel_id")
        entries = await self.rest.wait_outbox(channel, after, wait)
        return web.json_response(entries)

    async def _faults(self, request: web.Request) -> web.Response:
        try:
            data = await self._json_body(request)
            hit = await self.fault(
                str(data["kind"]),
                shard=data.get("shard"),
                route=data.get("route"),
                count=int(data.get("count", 1)),
                status=int(data.get("status", 500)),
                is_global=bool(data.get("global", False)),
                retry_after=float(data.get("retry_after", 1.0)),
            )
        except ApiError as err:
            return self._error(err)
        except (KeyError, ValueError, TypeError) as exc:
            return web.json_response({"message": f"bad fault: {exc}"}, status=400)
        return web.json_response({"applied": hit})

    async def _events(self, request: web.Request) -> web.Response:
        try:
            data = await self._json_body(request)
            payload = await self.event(str(data.pop("kind")), data)
        except ApiError as err:
            return self._error(err)
        except (KeyError, ValueError, TypeError) as exc:
            return web.json_response({"message": f"bad event: {exc}"}, status=400)
        return web.json_response(payload)

    async def _stats(self, _: web.Request) -> web.Response:
        return web.json_response(self.stats())
