"""Who the bot is and where to connect: the gateway's URL, users, the application, and the
DM channels it opens."""

from __future__ import annotations

from typing import Any

from sandbox.rest.base import Resource, RouteSpec, path_id, unknown
from sandbox.rest.form import Form


class Identity(Resource):
    def routes(self) -> list[RouteSpec]:
        return [
            RouteSpec("GET", "/gateway", self.get_gateway, auth=False),
            RouteSpec("GET", "/gateway/bot", self.get_gateway_bot),
            RouteSpec("GET", "/users/@me", self.get_me),
            RouteSpec("GET", "/users/{user_id}", self.get_user),
            RouteSpec("GET", "/oauth2/applications/@me", self.get_application),
            RouteSpec("GET", "/applications/@me", self.get_application),
            RouteSpec("POST", "/users/@me/channels", self.create_dm),
        ]

    async def get_gateway(self, **_: Any) -> dict[str, Any]:
        return {"url": self.gateway.url}

    async def get_gateway_bot(self, **_: Any) -> dict[str, Any]:
        return {
            "url": self.gateway.url,
            "shards": self.config.shards or self.world.recommended_shards(),
            "session_start_limit": {
                "total": 1000,
                "remaining": 1000,
                "reset_after": 86_400_000,
                "max_concurrency": self.config.max_concurrency,
            },
        }

    async def get_me(self, **_: Any) -> dict[str, Any]:
        return self.world.bot.to_dict()

    async def get_user(self, user_id: str, **_: Any) -> dict[str, Any]:
        user = self.world.users.get(path_id(user_id))
        if user is None:
            raise unknown("user")
        return user.to_dict()

    async def get_application(self, **_: Any) -> dict[str, Any]:
        return {
            "id": str(self.world.application_id),
            "name": self.world.bot.username,
            "icon": None,
            "description": "A Discord sandbox application",
            "type": None,
            "rpc_origins": [],
            "bot_public": True,
            "bot_require_code_grant": False,
            "bot": self.world.bot.to_dict(),
            "owner": self.world.owner.to_dict(),
            "verify_key": self.world.public_key,
            "team": None,
            "flags": 0,
            "flags_new": "0",
            "approximate_guild_count": len(self.world.guilds),
            "approximate_user_install_count": 0,
            "approximate_user_authorization_count": 0,
            "explicit_content_filter": 0,
            "eligible_oauth2_scopes": ["bot", "applications.commands"],
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "role_connections_verification_url": None,
            "event_webhooks_url": None,
            "event_webhooks_status": 1,
            "event_webhooks_types": [],
            "tags": [],
            "integration_types_config": {},
        }

    async def create_dm(self, body: Any, **_: Any) -> dict[str, Any]:
        form = Form(body)
        user_id = form.snowflake("recipient_id", required=True)
        form.check()
        if user_id not in self.world.users:
            raise unknown("user")
        return self.world.dm_channel(user_id).to_dict(self.world)
