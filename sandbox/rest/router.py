"""The REST API (`/api/v10`): a router over the resources, each a module of routes
(identity, application commands, channels, messages, guilds and members, bans and the audit
log, interactions and webhooks), with authentication, rate limits and body parsing here."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from sandbox.errors import ApiError
from sandbox.ratelimit import RateLimiter
from sandbox.rest.attachments import Attachments, Upload, read_multipart
from sandbox.rest.bans import Bans
from sandbox.rest.base import Handler, State, not_json
from sandbox.rest.channels import Channels
from sandbox.rest.commands import Commands
from sandbox.rest.guild_channels import GuildChannels
from sandbox.rest.guilds import Guilds
from sandbox.rest.identity import Identity
from sandbox.rest.interactions import Interactions
from sandbox.rest.limits import admit
from sandbox.rest.messages import Messages

if TYPE_CHECKING:
    from sandbox.gateway import Gateway
    from sandbox.server import SandboxConfig
    from sandbox.world import World

log = logging.getLogger(__name__)

JSON = "application/json"
# Discord's major parameters: a channel, a guild, or a webhook with its token. An interaction's
# callback is its own bucket (its id and token), as on Discord, where every interaction can be
# answered at once.
MAJORS = ("channel_id", "guild_id", "webhook_id", "interaction_id")


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    template: str
    major: str | None
    handler: Handler
    exempt_global: bool = False
    auth: bool = True


class Rest:
    def __init__(self, world: World, gateway: Gateway, config: SandboxConfig) -> None:
        self.state = State(world, gateway, config)
        self.world = world
        self.limiter = RateLimiter(config.limits)
        self.messages_api = Messages(self.state)
        self.bans = Bans(self.state, self.messages_api)
        # The busiest routes first: a request is matched against them in this order.
        self.resources = [
            self.messages_api,
            Interactions(self.state, self.messages_api),
            Channels(self.state),
            Guilds(self.state),
            GuildChannels(self.state),
            self.bans,
            Commands(self.state),
            Identity(self.state),
        ]
        self.attachments = Attachments(self.state)
        self.routes: list[Route] = []
        for resource in self.resources:
            for spec in resource.routes():
                self.route(spec.method, spec.template, spec.handler, spec.exempt_global, spec.auth)

    # The stores, for whoever drives the sandbox.
    @property
    def commands(self) -> dict[int | None, dict[int, dict[str, Any]]]:
        return self.state.commands

    @property
    def messages(self) -> dict[int, dict[int, dict[str, Any]]]:
        return self.state.messages

    @property
    def interactions(self) -> dict[str, dict[str, Any]]:
        return self.state.interactions

    @property
    def outbox(self) -> list[dict[str, Any]]:
        return self.state.outbox

    def route(
        self,
        method: str,
        template: str,
        handler: Handler,
        exempt_global: bool = False,
        auth: bool = True,
    ) -> None:
        regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$"
        major = next((m for m in MAJORS if "{" + m + "}" in template), None)
        self.routes.append(
            Route(method, re.compile(regex), template, major, handler, exempt_global, auth)
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        for r in self.routes:
            m = r.pattern.match(path)
            if m and r.method == request.method:
                return await self._run(r, m.groupdict(), request)
        known = any(r.pattern.match(path) for r in self.routes)
        if known:
            return self._json(405, {"message": "405: Method Not Allowed", "code": 0})
        return self._json(404, {"message": "404: Not Found", "code": 0})

    @staticmethod
    def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
        out = {"Content-Type": JSON, **(headers or {})}
        if status == 204:
            return web.Response(
                status=204, headers={k: v for k, v in out.items() if k != "Content-Type"}
            )
        return web.Response(status=status, body=orjson.dumps(body), headers=out)

    async def _run(
        self, r: Route, params: dict[str, str], request: web.Request
    ) -> web.StreamResponse:
        if r.auth and request.headers.get("Authorization") != f"Bot {self.world.token}":
            self.limiter.record_status(401)
            return self._json(401, {"message": "401: Unauthorized", "code": 0})
        major = params.get(r.major, "") if r.major else ""
        if r.major in ("webhook_id", "interaction_id") and "token" in params:
            major += "/" + params["token"]
        refusal, headers = admit(
            self.limiter, f"{r.method} {r.template}", major, exempt_global=r.exempt_global
        )
        if refusal is not None:
            return self._json(refusal.status, refusal.body, refusal.headers)
        try:
            body, files = await self._body(request)
            result = await r.handler(request=request, body=body, files=files, **params)
        except ApiError as err:
            self.limiter.record_status(err.status)
            return self._json(err.status, err.body(), headers)
        if result is None:
            return self._json(204, None, headers)
        return self._json(200, result, headers)

    async def _body(self, request: web.Request) -> tuple[Any, list[Upload]]:
        """The JSON body (None when there is none) and the files of a multipart upload."""
        if request.method in ("GET", "DELETE") or not request.can_read_body:
            return None, []
        if request.headers.get("Content-Type", "").startswith("multipart/form-data"):
            raw, files = await read_multipart(request)
            return (self._parse(raw) if raw is not None else {}), files
        return self._parse(await request.read()), []

    @staticmethod
    def _parse(raw: bytes) -> Any:
        if not raw:
            return None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise not_json() from None
