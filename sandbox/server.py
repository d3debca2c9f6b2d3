"""The sandbox server: REST, gateway and control API on one port, and its Python API."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from sandbox.arrange import Arrange
from sandbox.control_http import ControlHttp
from sandbox.errors import BadInput
from sandbox.events import WorldEvents
from sandbox.gateway import Gateway
from sandbox.ratelimit import Fault, Limits
from sandbox.rest import Rest
from sandbox.users import Users
from sandbox.world import World

log = logging.getLogger(__name__)

GATEWAY_FAULTS = ("drop", "reconnect", "invalidate", "stall_acks", "close", "malformed")
REST_FAULTS = ("status", "ratelimit")


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
    # Scales Discord's long windows (gateway send limit, channel renames, the 15 minutes an
    # interaction's token lasts) so tests can exercise them quickly.
    window_scale: float = 1.0
    # Seconds a bot has for the first answer to an interaction (Discord: 3); a later callback
    # gets 404 Unknown interaction (10062).
    interaction_deadline: float = 3.0
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
        self.users = Users(self.rest.state, self.rest.messages_api)
        self.events = WorldEvents(self.rest.state, self.rest.bans)
        self.arrange = Arrange(self.rest.state)
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
        app.router.add_get(
            "/attachments/{channel_id}/{attachment_id}/{filename}", self.rest.attachments.serve
        )
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_get("/", self.gateway.handle)
        ControlHttp(self).add_routes(app)
        return app

    async def start(self) -> None:
        # A short shutdown_timeout: a client long-polling the outbox (up to a minute) would
        # otherwise hold up stop(), and with it a sandbox told to exit.
        self._runner = web.AppRunner(
            self.app(), access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self.gateway.url = self.gateway_url
        self.rest.state.base_url = self.base_url

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

    async def send_message(
        self, channel_id: int, author_id: int, content: str, age: float = 0.0
    ) -> dict[str, Any]:
        """A user says something (with `age`: said that many seconds ago, into the history)."""
        return await self.users.user_message(channel_id, author_id, content, age)

    async def send_interaction(
        self,
        channel_id: int,
        user_id: int,
        name: str,
        options: list[dict[str, Any]] | dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Run a slash command; `options` as Discord writes them (a list of {name, value}) or
        as {name: value}."""
        return await self.users.user_interaction(channel_id, user_id, name, options)

    async def click(
        self, channel_id: int, user_id: int, message_id: int, custom_id: str
    ) -> dict[str, Any]:
        """A user clicks a button of a message."""
        return await self.users.user_component(channel_id, user_id, message_id, custom_id)

    async def pick(
        self, channel_id: int, user_id: int, message_id: int, custom_id: str, values: list[Any]
    ) -> dict[str, Any]:
        """A user picks `values` from a select menu: option values, or the ids of users, roles
        or channels (as the menu's kind takes)."""
        return await self.users.user_component(channel_id, user_id, message_id, custom_id, values)

    async def submit(
        self,
        channel_id: int,
        user_id: int,
        fields: dict[str, Any],
        custom_id: str | None = None,
    ) -> dict[str, Any]:
        """A user submits the modal the bot opened for them: {input custom_id: text}."""
        return await self.users.user_submit(channel_id, user_id, fields, custom_id)

    async def redeliver(self, interaction_id: int) -> dict[str, Any]:
        """Discord delivers an interaction again, with the same id and token."""
        return await self.users.redeliver(interaction_id)

    async def outbox(
        self, channel_id: int | None = None, after: int = 0, wait: float = 0
    ) -> list[dict[str, Any]]:
        return await self.rest.state.wait_outbox(
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
        code: int = 4000,
    ) -> int:
        if kind in GATEWAY_FAULTS:
            if shard is not None and shard < 0:
                raise BadInput("shard", "must be 0 or more")
            if kind == "close" and not 4000 <= code <= 4999:
                raise BadInput("code", "must be a gateway close code, 4000 to 4999")
            return await self.gateway.fault(kind, shard, count, code)
        if kind not in REST_FAULTS:
            raise BadInput("kind", f"must be one of {', '.join(GATEWAY_FAULTS + REST_FAULTS)}")
        key = "*" if route is None else route
        # A misspelt route would otherwise be accepted and never fire.
        if key != "*" and key not in {f"{r.method} {r.template}" for r in self.rest.routes}:
            raise BadInput(
                "route", f'no route {key!r}; "*" or e.g. "POST /channels/{{channel_id}}/messages"'
            )
        if count < 1:
            raise BadInput("count", "must be 1 or more")
        if kind == "status" and not 400 <= status <= 599:
            raise BadInput("status", "must be an error status, 400 to 599")
        if not 0 <= retry_after <= 3600:
            raise BadInput("retry_after", "must be between 0 and 3600 seconds")
        self.rest.limiter.forced[key] = Fault(
            count, 429 if kind == "ratelimit" else status, is_global, retry_after
        )
        return count

    async def event(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        """A user joins or leaves, reacts, changes presence; or the bot is removed."""
        return await self.events.event(kind, data)

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
