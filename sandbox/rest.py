"""The REST API (`/api/v10`), as Discord answers a bot, and the control API (`/_sandbox/`)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from sandbox import components as ui
from sandbox.control import Fields, OptionResolver, describe
from sandbox.errors import ApiError, BadInput
from sandbox.ratelimit import RateLimiter
from sandbox.world import (
    BAN_MEMBERS,
    CHANNEL_CATEGORY,
    CHANNEL_DM,
    KICK_MEMBERS,
    MANAGE_CHANNELS,
    MANAGE_MESSAGES,
    MANAGE_ROLES,
    MODERATE_MEMBERS,
    PRESENCE_STATUSES,
    SEND_MESSAGES,
    VIEW_CHANNEL,
    Channel,
    Guild,
    Member,
    iso,
)

if TYPE_CHECKING:
    from sandbox.gateway import Gateway
    from sandbox.server import SandboxConfig
    from sandbox.world import World

log = logging.getLogger(__name__)

JSON = "application/json"
MAX_CONTENT = 2000
EMBED_LIMITS = {
    "title": 256,
    "description": 4096,
    "fields": 25,
    "field_name": 256,
    "field_value": 1024,
    "footer": 2048,
    "author": 256,
    "total": 6000,
}


def unknown(kind: str) -> ApiError:
    codes = {
        "channel": 10003,
        "guild": 10004,
        "member": 10007,
        "message": 10008,
        "user": 10013,
        "role": 10011,
        "interaction": 10062,
        "command": 10063,
        "ban": 10026,
        "webhook": 10015,
    }
    return ApiError(404, codes[kind], f"Unknown {kind.title()}")


# Message flags (https://discord.com/developers/docs/resources/message#message-object-message-flags)
EPHEMERAL = 1 << 6
LOADING = 1 << 7

# Interaction types, and the callback types Discord accepts for each (https://discord.com/
# developers/docs/interactions/receiving-and-responding#interaction-response-object)
COMMAND, COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 2, 3, 4, 5
MESSAGE, DEFERRED_MESSAGE, DEFERRED_UPDATE, UPDATE, CHOICES, MODAL = 4, 5, 6, 7, 8, 9
CALLBACKS = {
    COMMAND: (MESSAGE, DEFERRED_MESSAGE, MODAL),
    COMPONENT: (MESSAGE, DEFERRED_MESSAGE, DEFERRED_UPDATE, UPDATE, MODAL),
    AUTOCOMPLETE: (CHOICES,),
    # A modal opened from a component can update that component's message; one opened from a
    # command has no message to update.
    MODAL_SUBMIT: (MESSAGE, DEFERRED_MESSAGE),
}
TOKEN_LIFE = 15 * 60  # an interaction's token answers follow-ups for 15 minutes


def missing_permissions() -> ApiError:
    return ApiError(403, 50013, "Missing Permissions")


def field_error(path: list[str], code: str, message: str) -> ApiError:
    errors: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for key in reversed(path):
        errors = {key: errors}
    return ApiError(400, 50035, "Invalid Form Body", errors)


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    template: str
    major: str | None
    handler: Callable[..., Awaitable[Any]]
    exempt_global: bool = False
    auth: bool = True


class Rest:
    def __init__(self, world: World, gateway: Gateway, config: SandboxConfig) -> None:
        self.world = world
        self.gateway = gateway
        self.config = config
        self.limiter = RateLimiter(config.limits)
        self.messages: dict[int, dict[int, dict[str, Any]]] = {}  # channel -> id -> message
        self.commands: dict[int | None, dict[int, dict[str, Any]]] = {None: {}}  # guild -> ...
        self.interactions: dict[str, dict[str, Any]] = {}  # token -> interaction state
        self.ephemeral: dict[int, int] = {}  # ephemeral message id -> the one user who sees it
        self.modals: dict[int, dict[str, Any]] = {}  # user id -> the modal open on their screen
        self.outbox: list[dict[str, Any]] = []
        self.outbox_changed = asyncio.Condition()
        self.routes: list[Route] = []
        self._add_routes()

    # -- plumbing ------------------------------------------------------------------------------

    def route(
        self,
        method: str,
        template: str,
        handler: Callable[..., Awaitable[Any]],
        *,
        exempt_global: bool = False,
        auth: bool = True,
    ) -> None:
        regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$"
        # Discord's major parameters: a channel, a guild, or a webhook with its token. An
        # interaction's callback is its own bucket (its id and token), as on Discord, where every
        # interaction can be answered at once.
        majors = ("channel_id", "guild_id", "webhook_id", "interaction_id")
        major = next((m for m in majors if "{" + m + "}" in template), None)
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

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
        out = {"Content-Type": JSON, **(headers or {})}
        if status == 204:
            return web.Response(
                status=204, headers={k: v for k, v in out.items() if k != "Content-Type"}
            )
        return web.Response(status=status, body=orjson.dumps(body), headers=out)

    async def _run(
        self, r: Route, params: dict[str, str], request: web.Request
    ) -> web.StreamResponse:
        route_key = f"{r.method} {r.template}"
        if r.auth and request.headers.get("Authorization") != f"Bot {self.world.token}":
            self.limiter.record_status(401)
            return self._json(401, {"message": "401: Unauthorized", "code": 0})
        fault = self.limiter.forced_status(route_key)
        forced = fault.status if fault else None
        major = params.get(r.major, "") if r.major else ""
        if r.major in ("webhook_id", "interaction_id") and "token" in params:
            major += "/" + params["token"]
        decision = self.limiter.check(route_key, major, exempt_global=r.exempt_global)
        if fault is not None and fault.status == 429:
            scope = "global" if fault.is_global else "user"
            decision.allowed = False
            decision.headers.update(
                {"Retry-After": str(max(1, round(fault.retry_after))), "X-RateLimit-Scope": scope}
            )
            if fault.is_global:
                decision.headers["X-RateLimit-Global"] = "true"
            decision.body = {
                "message": "You are being rate limited.",
                "retry_after": fault.retry_after,
                "global": fault.is_global,
                "code": 0,
            }
            self.limiter.stats["rate_limited"][f"forced_{scope}"] += 1
        if not decision.allowed:
            self.limiter.record_status(429)
            headers = {**decision.headers, "Via": "1.1 google"}
            return self._json(429, decision.body, headers)
        if forced is not None:
            self.limiter.record_status(forced)
            return self._json(
                forced, {"message": f"{forced}: forced by the sandbox", "code": 0}, decision.headers
            )
        try:
            body = await self._body(request)
            result = await r.handler(
                request=request, body=body, **{k: v for k, v in params.items()}
            )
        except ApiError as err:
            self.limiter.record_status(err.status)
            return self._json(err.status, err.body(), decision.headers)
        if result is None:
            return self._json(204, None, decision.headers)
        return self._json(200, result, decision.headers)

    async def _body(self, request: web.Request) -> Any:
        if request.method in ("GET", "DELETE") or not request.can_read_body:
            return None
        ctype = request.headers.get("Content-Type", "")
        if ctype.startswith("multipart/form-data"):
            form = await request.post()
            raw = form.get("payload_json")
            if raw is None:
                return {}
            if isinstance(raw, str):
                text = raw
            elif isinstance(raw, bytes | bytearray):
                text = raw.decode()
            else:
                text = raw.file.read().decode()
            return self._parse(text)
        return self._parse(await request.text())

    @staticmethod
    def _parse(text: str) -> Any:
        if not text:
            return None
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            raise ApiError(400, 50109, "The request body contains invalid JSON.") from None

    # -- lookups and checks ------------------------------------------------------------------

    def _channel(self, channel_id: str) -> tuple[Guild | None, Channel]:
        try:
            found = self.world.channel(int(channel_id))
        except ValueError:
            found = None
        if found is None:
            raise unknown("channel")
        return found

    def _guild(self, guild_id: str) -> Guild:
        try:
            guild = self.world.guilds.get(int(guild_id))
        except ValueError:
            guild = None
        if guild is None:
            raise unknown("guild")
        return guild

    def _require(self, guild: Guild | None, channel: Channel | None, *perms: int) -> None:
        if guild is None:
            return
        have = guild.permissions(self.world.bot.id, channel)
        for p in perms:
            if not have & p:
                raise missing_permissions()

    def _message(
        self, channel_id: int, message_id: str, *, ephemeral: bool = False
    ) -> dict[str, Any]:
        """A message of the channel. An ephemeral one exists only for its interaction's webhook
        (`ephemeral=True`): the channel's own routes don't know it, as on Discord."""
        try:
            msg = self.messages.get(channel_id, {}).get(int(message_id))
        except ValueError:
            msg = None
        if msg is None or (not ephemeral and int(msg["id"]) in self.ephemeral):
            raise unknown("message")
        return msg

    # -- message objects -------------------------------------------------------------------

    def validate_message(self, body: Any, *, partial: bool = False) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, 50109, "The request body contains invalid JSON.")
        content = body.get("content")
        if content is not None and not isinstance(content, str):
            raise field_error(["content"], "BASE_TYPE_STRING", "Must be a string.")
        if content is not None and len(content) > MAX_CONTENT:
            raise field_error(
                ["content"], "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CONTENT} or fewer in length."
            )
        embeds = body.get("embeds") or []
        if len(embeds) > 10:
            raise field_error(["embeds"], "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
        total = 0
        for i, e in enumerate(embeds):
            for key in ("title", "description"):
                value = e.get(key) or ""
                total += len(value)
                if len(value) > EMBED_LIMITS[key]:
                    raise field_error(
                        ["embeds", str(i), key],
                        "BASE_TYPE_MAX_LENGTH",
                        f"Must be {EMBED_LIMITS[key]} or fewer in length.",
                    )
            fields = e.get("fields") or []
            if len(fields) > EMBED_LIMITS["fields"]:
                raise field_error(
                    ["embeds", str(i), "fields"],
                    "BASE_TYPE_MAX_LENGTH",
                    "Must be 25 or fewer in length.",
                )
            for j, f in enumerate(fields):
                for key, limit in (("name", 256), ("value", 1024)):
                    value = str(f.get(key) or "")
                    total += len(value)
                    if not value or len(value) > limit:
                        raise field_error(
                            ["embeds", str(i), "fields", str(j), key],
                            "BASE_TYPE_MAX_LENGTH" if value else "BASE_TYPE_REQUIRED",
                            f"Must be between 1 and {limit} in length.",
                        )
            footer = (e.get("footer") or {}).get("text") or ""
            author = (e.get("author") or {}).get("name") or ""
            total += len(footer) + len(author)
            if len(footer) > 2048:
                raise field_error(
                    ["embeds", str(i), "footer", "text"],
                    "BASE_TYPE_MAX_LENGTH",
                    "Must be 2048 or fewer in length.",
                )
        if total > EMBED_LIMITS["total"]:
            raise field_error(
                ["embeds"], "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000"
            )
        if body.get("components") is not None:
            flags = body.get("flags")
            body = {
                **body,
                "components": ui.message_components(
                    body["components"], flags if isinstance(flags, int) else 0
                ),
            }
        if (
            not partial
            and not content
            and not embeds
            and not body.get("components")
            and not (body.get("sticker_ids") or body.get("attachments") or body.get("poll"))
        ):
            raise ApiError(400, 50006, "Cannot send an empty message")
        checked: dict[str, Any] = body
        return checked

    def make_message(
        self,
        channel: Channel,
        guild: Guild | None,
        author_id: int,
        body: dict[str, Any],
        *,
        webhook_id: int | None = None,
        interaction: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        mid = self.world.ids.now()
        user = self.world.users[author_id]
        content = body.get("content") or ""
        mentions = [
            self.world.users[int(u)].to_dict()
            for u in re.findall(r"<@!?(\d+)>", content)
            if int(u) in self.world.users
        ]
        msg: dict[str, Any] = {
            "id": str(mid),
            "channel_id": str(channel.id),
            "author": user.to_dict(),
            "content": content,
            "timestamp": iso(time.time()),
            "edited_timestamp": None,
            "tts": bool(body.get("tts")),
            "mention_everyone": "@everyone" in content,
            "mentions": mentions,
            "mention_roles": [],
            "mention_channels": [],
            "attachments": [],
            "embeds": body.get("embeds") or [],
            "reactions": [],
            "nonce": body.get("nonce"),
            "pinned": False,
            "webhook_id": str(webhook_id) if webhook_id else None,
            # A command's answer is a CHAT_INPUT_COMMAND message; a component's or a modal's, a
            # DEFAULT one.
            "type": 20
            if interaction and interaction["type"] == COMMAND
            else (19 if body.get("message_reference") else 0),
            "application_id": str(self.world.application_id) if interaction else None,
            "flags": int(body.get("flags") or 0),
            "message_reference": body.get("message_reference"),
            "referenced_message": None,
            "components": body.get("components") or [],
            "sticker_items": [],
            "interaction_metadata": interaction["metadata"] if interaction else None,
        }
        # Optional (not nullable) fields are left out when they have no value, as Discord does.
        for key in (
            "webhook_id",
            "application_id",
            "message_reference",
            "interaction_metadata",
            "nonce",
        ):
            if msg[key] is None:
                del msg[key]
        if guild is not None:
            msg["guild_id"] = str(guild.id)
            member = guild.members.get(author_id)
            if member is not None:
                msg["member"] = member.to_dict(self.world, with_user=False)
        self.messages.setdefault(channel.id, {})[mid] = msg
        if interaction and msg["flags"] & EPHEMERAL:
            self.ephemeral[mid] = interaction["user_id"]
        else:
            channel.last_message_id = mid
        return msg

    async def to_outbox(
        self, kind: str, channel_id: int, msg: dict[str, Any] | None, **extra: Any
    ) -> None:
        entry = {
            "seq": len(self.outbox) + 1,
            "kind": kind,
            "channel_id": str(channel_id),
            "at": time.time(),
            **extra,
        }
        if msg is not None:
            entry.update(
                {
                    "message_id": msg["id"],
                    "content": msg.get("content"),
                    "embeds": msg.get("embeds") or [],
                    "components": msg.get("components") or [],
                    "flags": msg.get("flags", 0),
                    "author_id": (msg.get("author") or {}).get("id"),
                }
            )
        self.outbox.append(entry)
        async with self.outbox_changed:
            self.outbox_changed.notify_all()

    # -- routes --------------------------------------------------------------------------------

    def _add_routes(self) -> None:
        r = self.route
        r("GET", "/gateway", self.get_gateway, auth=False)
        r("GET", "/gateway/bot", self.get_gateway_bot)
        r("GET", "/users/@me", self.get_me)
        r("GET", "/users/{user_id}", self.get_user)
        r("GET", "/oauth2/applications/@me", self.get_application)
        r("GET", "/applications/@me", self.get_application)
        r("POST", "/users/@me/channels", self.create_dm)
        for scope in ("", "/guilds/{guild_id}"):
            base = "/applications/{application_id}" + scope + "/commands"
            r("GET", base, self.list_commands)
            r("PUT", base, self.overwrite_commands)
            r("POST", base, self.create_command)
            r("GET", base + "/{command_id}", self.get_command)
            r("PATCH", base + "/{command_id}", self.edit_command)
            r("DELETE", base + "/{command_id}", self.delete_command)
        r("GET", "/channels/{channel_id}", self.get_channel)
        r("PATCH", "/channels/{channel_id}", self.edit_channel)
        r("GET", "/channels/{channel_id}/messages", self.list_messages)
        r("POST", "/channels/{channel_id}/messages", self.create_message)
        r("GET", "/channels/{channel_id}/messages/{message_id}", self.get_message)
        r("PATCH", "/channels/{channel_id}/messages/{message_id}", self.edit_message)
        r("DELETE", "/channels/{channel_id}/messages/{message_id}", self.delete_message)
        r(
            "PUT",
            "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
            self.add_reaction,
        )
        r(
            "POST",
            "/interactions/{interaction_id}/{token}/callback",
            self.interaction_callback,
            exempt_global=True,
            auth=False,
        )
        r(
            "GET",
            "/webhooks/{webhook_id}/{token}/messages/{message_id}",
            self.webhook_get,
            exempt_global=True,
            auth=False,
        )
        r(
            "PATCH",
            "/webhooks/{webhook_id}/{token}/messages/{message_id}",
            self.webhook_edit,
            exempt_global=True,
            auth=False,
        )
        r(
            "DELETE",
            "/webhooks/{webhook_id}/{token}/messages/{message_id}",
            self.webhook_delete,
            exempt_global=True,
            auth=False,
        )
        r(
            "POST",
            "/webhooks/{webhook_id}/{token}",
            self.webhook_followup,
            exempt_global=True,
            auth=False,
        )
        r("GET", "/guilds/{guild_id}", self.get_guild)
        r("GET", "/guilds/{guild_id}/channels", self.get_guild_channels)
        r("GET", "/guilds/{guild_id}/roles", self.get_roles)
        r("GET", "/guilds/{guild_id}/members/{user_id}", self.get_member)
        r("PATCH", "/guilds/{guild_id}/members/{user_id}", self.edit_member)
        r("DELETE", "/guilds/{guild_id}/members/{user_id}", self.kick_member)
        r("PUT", "/guilds/{guild_id}/members/{user_id}/roles/{role_id}", self.add_role)
        r("DELETE", "/guilds/{guild_id}/members/{user_id}/roles/{role_id}", self.remove_role)
        r("GET", "/guilds/{guild_id}/bans", self.list_bans)
        r("GET", "/guilds/{guild_id}/bans/{user_id}", self.get_ban)
        r("PUT", "/guilds/{guild_id}/bans/{user_id}", self.ban)
        r("DELETE", "/guilds/{guild_id}/bans/{user_id}", self.unban)

    # gateway / identity

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
        try:
            return self.world.users[int(user_id)].to_dict()
        except (KeyError, ValueError):
            raise unknown("user") from None

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
        try:
            user_id = int((body or {})["recipient_id"])
        except (KeyError, TypeError, ValueError):
            raise field_error(
                ["recipient_id"], "BASE_TYPE_REQUIRED", "This field is required"
            ) from None
        if user_id not in self.world.users:
            raise unknown("user")
        return self.world.dm_channel(user_id).to_dict(self.world)

    # application commands

    def _command_scope(self, application_id: str, guild_id: str | None) -> dict[int, Any]:
        if application_id != str(self.world.application_id):
            raise ApiError(403, 50001, "Missing Access")
        key = None if guild_id is None else self._guild(guild_id).id
        return self.commands.setdefault(key, {})

    def _command(
        self, data: Any, guild_id: str | None, existing: dict[str, Any] | None
    ) -> dict[str, Any]:
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise field_error(["name"], "BASE_TYPE_REQUIRED", "This field is required")
        name = data["name"]
        ctype = int(data.get("type", 1))
        if ctype == 1 and not re.fullmatch(r"[-_\w]{1,32}", name):
            raise field_error(
                ["name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"
            )
        if ctype == 1 and len(data.get("description") or "") > 100:
            raise field_error(
                ["description"], "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length."
            )
        cid = int(existing["id"]) if existing else self.world.ids.now()
        return {
            "id": str(cid),
            "type": ctype,
            "application_id": str(self.world.application_id),
            "guild_id": guild_id,
            "name": name,
            "name_localizations": None,
            "description": data.get("description", ""),
            "description_localizations": None,
            "options": data.get("options") or [],
            "default_member_permissions": data.get("default_member_permissions"),
            "dm_permission": data.get("dm_permission", True),
            "nsfw": bool(data.get("nsfw")),
            "integration_types": data.get("integration_types") or [0],
            "contexts": data.get("contexts"),
            "version": str(self.world.ids.now()),
        }

    async def list_commands(
        self, application_id: str, guild_id: str | None = None, **_: Any
    ) -> list[dict[str, Any]]:
        return list(self._command_scope(application_id, guild_id).values())

    async def overwrite_commands(
        self, application_id: str, body: Any, guild_id: str | None = None, **_: Any
    ) -> list[dict[str, Any]]:
        scope = self._command_scope(application_id, guild_id)
        if not isinstance(body, list):
            raise ApiError(400, 50035, "Invalid Form Body")
        if len(body) > 100:
            raise ApiError(400, 30032, "Maximum number of application commands reached (100)")
        by_name = {(c["name"], c["type"]): c for c in scope.values()}
        fresh = [
            self._command(c, guild_id, by_name.get((c.get("name"), int(c.get("type", 1)))))
            for c in body
        ]
        scope.clear()
        scope.update({int(c["id"]): c for c in fresh})
        return fresh

    async def create_command(
        self, application_id: str, body: Any, guild_id: str | None = None, **_: Any
    ) -> dict[str, Any]:
        scope = self._command_scope(application_id, guild_id)
        by_name = {(c["name"], c["type"]): c for c in scope.values()}
        cmd = self._command(
            body, guild_id, by_name.get((body.get("name"), int(body.get("type", 1))))
        )
        scope[int(cmd["id"])] = cmd
        return cmd

    def _find_command(self, scope: dict[int, Any], command_id: str) -> dict[str, Any]:
        try:
            return dict(scope[int(command_id)])
        except (KeyError, ValueError):
            raise unknown("command") from None

    async def get_command(
        self, application_id: str, command_id: str, guild_id: str | None = None, **_: Any
    ) -> dict[str, Any]:
        return self._find_command(self._command_scope(application_id, guild_id), command_id)

    async def edit_command(
        self, application_id: str, command_id: str, body: Any, guild_id: str | None = None, **_: Any
    ) -> dict[str, Any]:
        scope = self._command_scope(application_id, guild_id)
        current = self._find_command(scope, command_id)
        cmd = self._command({**current, **(body or {})}, guild_id, current)
        scope[int(command_id)] = cmd
        return cmd

    async def delete_command(
        self, application_id: str, command_id: str, guild_id: str | None = None, **_: Any
    ) -> None:
        scope = self._command_scope(application_id, guild_id)
        self._find_command(scope, command_id)
        del scope[int(command_id)]

    # channels and messages

    async def get_channel(self, channel_id: str, **_: Any) -> dict[str, Any]:
        guild, ch = self._channel(channel_id)
        self._require(guild, ch, VIEW_CHANNEL)
        return ch.to_dict(self.world)

    async def edit_channel(self, channel_id: str, body: Any, **_: Any) -> dict[str, Any]:
        guild, ch = self._channel(channel_id)
        self._require(guild, ch, VIEW_CHANNEL, MANAGE_CHANNELS)
        body = body or {}
        if "name" in body and body["name"] != ch.name:
            now = time.time()
            window = 600 * self.config.window_scale
            ch.renames = [t for t in ch.renames if now - t < window]
            if len(ch.renames) >= 2:
                retry = window - (now - ch.renames[0])
                raise ApiError(
                    429, 0, f"You are being rate limited (renames). Retry in {retry:.0f}s"
                )
            ch.renames.append(now)
            name = str(body["name"])
            if not 1 <= len(name) <= 100:
                raise field_error(
                    ["name"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
                )
            ch.name = name
        if "topic" in body:
            ch.topic = body["topic"]
        data = ch.to_dict(self.world)
        await self.gateway.dispatch("CHANNEL_UPDATE", data, guild.id if guild else None)
        return data

    async def list_messages(
        self, channel_id: str, request: web.Request, **_: Any
    ) -> list[dict[str, Any]]:
        guild, ch = self._channel(channel_id)
        self._require(guild, ch, VIEW_CHANNEL)
        try:
            limit = max(1, min(100, int(request.query.get("limit", 50))))
        except ValueError:
            raise field_error(["limit"], "NUMBER_TYPE_COERCE", "Value is not int.") from None
        msgs = sorted(
            (
                m
                for m in self.messages.get(ch.id, {}).values()
                if int(m["id"]) not in self.ephemeral
            ),
            key=lambda m: int(m["id"]),
            reverse=True,
        )
        return msgs[:limit]

    async def create_message(self, channel_id: str, body: Any, **_: Any) -> dict[str, Any]:
        guild, ch = self._channel(channel_id)
        self._require(guild, ch, VIEW_CHANNEL, SEND_MESSAGES)
        body = self.validate_message(body)
        msg = self.make_message(ch, guild, self.world.bot.id, body)
        await self.to_outbox("message", ch.id, msg, allowed_mentions=body.get("allowed_mentions"))
        await self.gateway.dispatch("MESSAGE_CREATE", msg, guild.id if guild else None)
        return msg

    async def get_message(self, channel_id: str, message_id: str, **_: Any) -> dict[str, Any]:
        guild, ch = self._channel(channel_id)
        self._require(guild, ch, VIEW_CHANNEL)
        return self._message(ch.id, message_id)

    async def edit_message(
        self, channel_id: str, message_id: str, body: Any, **_: Any
    ) -> dict[str, Any]:
        guild, ch = self._channel(channel_id)
        msg = self._message(ch.id, message_id)
        if msg["author"]["id"] != str(self.world.bot.id):
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        return await self._edit(ch, guild, msg, body)

    async def _edit(
        self, ch: Channel, guild: Guild | None, msg: dict[str, Any], body: Any
    ) -> dict[str, Any]:
        body = self.validate_message(body, partial=True)
        for key in ("content", "embeds", "components"):
            if key in body and body[key] is not None:
                msg[key] = body[key]
        # An edit can't make a message ephemeral or public; it ends a deferred "thinking" one.
        flags = body.get("flags") if isinstance(body.get("flags"), int) else msg["flags"]
        msg["flags"] = (flags & ~(EPHEMERAL | LOADING)) | (msg["flags"] & EPHEMERAL)
        msg["edited_timestamp"] = iso(time.time())
        ephemeral = int(msg["id"]) in self.ephemeral
        await self.to_outbox("edit", ch.id, msg, ephemeral=ephemeral)
        if not ephemeral:  # nobody else sees an ephemeral message: no event for it
            await self.gateway.dispatch("MESSAGE_UPDATE", msg, guild.id if guild else None)
        return msg

    async def delete_message(self, channel_id: str, message_id: str, **_: Any) -> None:
        guild, ch = self._channel(channel_id)
        msg = self._message(ch.id, message_id)
        if msg["author"]["id"] != str(self.world.bot.id):
            self._require(guild, ch, MANAGE_MESSAGES)
        del self.messages[ch.id][int(message_id)]
        await self.to_outbox("delete", ch.id, None, message_id=message_id)
        await self.gateway.dispatch(
            "MESSAGE_DELETE",
            {
                "id": message_id,
                "channel_id": str(ch.id),
                **({"guild_id": str(guild.id)} if guild else {}),
            },
            guild.id if guild else None,
        )

    async def add_reaction(self, channel_id: str, message_id: str, emoji: str, **_: Any) -> None:
        _guild, ch = self._channel(channel_id)
        self._message(ch.id, message_id)
        await self.to_outbox("reaction", ch.id, None, message_id=message_id, emoji=emoji)

    # interactions

    def _interaction(self, token: str) -> dict[str, Any]:
        state = self.interactions.get(token)
        if state is None:
            raise unknown("interaction")
        return state

    async def interaction_callback(
        self, interaction_id: str, token: str, body: Any, request: web.Request, **_: Any
    ) -> dict[str, Any] | None:
        state = self._interaction(token)
        if state["id"] != interaction_id:
            raise unknown("interaction")
        if state["response"] is not None:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        if time.time() - state["created"] > self.config.interaction_deadline:
            # Not answered within 3 s: Discord has told the user it failed, and forgets it.
            state["late"] = True
            raise unknown("interaction")
        if not isinstance(body, dict) or "type" not in body:
            raise field_error(["type"], "BASE_TYPE_REQUIRED", "This field is required")
        kind = body["type"]
        allowed = CALLBACKS[state["type"]]
        if state["type"] == MODAL_SUBMIT and state.get("message_id"):
            allowed = (*allowed, DEFERRED_UPDATE, UPDATE)
        if kind not in allowed:
            raise field_error(
                ["type"],
                "BASE_TYPE_CHOICES",
                f"Value must be one of {{{', '.join(map(str, allowed))}}}.",
            )
        guild, ch = self._channel(state["channel_id"])
        data = body.get("data") or {}
        flags = data.get("flags") if isinstance(data, dict) else None
        ephemeral = isinstance(flags, int) and bool(flags & EPHEMERAL)
        msg = None
        if kind == MESSAGE:
            data = self.validate_message(data)
            msg = self.make_message(
                ch,
                guild,
                self.world.bot.id,
                data,
                webhook_id=self.world.application_id,
                interaction=state,
            )
            state["original"] = int(msg["id"])
            await self.to_outbox(
                "interaction_response",
                ch.id,
                msg,
                interaction_id=interaction_id,
                ephemeral=ephemeral,
            )
        elif kind == UPDATE:
            data = self.validate_message(data, partial=True)
            target = self._message(ch.id, state["message_id"], ephemeral=True)
            msg = await self._edit(ch, guild, target, data)
            state["original"] = int(msg["id"])
        elif kind == DEFERRED_MESSAGE:
            # The user sees "<bot> is thinking..." until the original response is edited (or the
            # first follow-up arrives, which takes its place).
            msg = self.make_message(
                ch,
                guild,
                self.world.bot.id,
                {"content": "", "flags": LOADING | (EPHEMERAL if ephemeral else 0)},
                webhook_id=self.world.application_id,
                interaction=state,
            )
            state["original"] = int(msg["id"])
            state["deferred"] = True
            await self.to_outbox(
                "deferred", ch.id, msg, interaction_id=interaction_id, ephemeral=ephemeral
            )
        elif kind == DEFERRED_UPDATE:
            # Nothing the user sees changes; @original is the component's message from now on.
            state["original"] = int(state["message_id"])
        elif kind == MODAL:
            shown = ui.modal(data)
            self.modals[state["user_id"]] = {
                "modal": shown,
                "channel_id": state["channel_id"],
                "message_id": state.get("message_id"),
                "opened_by": state,
            }
            await self.to_outbox(
                "modal",
                ch.id,
                None,
                interaction_id=interaction_id,
                user_id=str(state["user_id"]),
                custom_id=shown["custom_id"],
                title=shown["title"],
                inputs=ui.inputs(shown),
            )
        state["response"] = kind
        state["responded"] = True
        if request.query.get("with_response") in ("true", "True", "1"):
            answer: dict[str, Any] = {
                "id": interaction_id,
                "type": state["type"],
                "activity_instance_id": None,
                "response_message_loading": kind == DEFERRED_MESSAGE,
                "response_message_ephemeral": ephemeral,
            }
            if state.get("original"):
                answer["response_message_id"] = str(state["original"])
            reply: dict[str, Any] = {"interaction": answer}
            if msg is not None and kind in (MESSAGE, UPDATE):
                reply["resource"] = {"type": kind, "message": msg}
            return reply
        return None

    def _webhook_state(self, webhook_id: str, token: str) -> dict[str, Any]:
        if webhook_id != str(self.world.application_id):
            raise unknown("webhook")
        state = self._interaction(token)
        if time.time() - state["created"] > TOKEN_LIFE * self.config.window_scale:
            raise ApiError(401, 50027, "Invalid Webhook Token")
        return state

    def _webhook_message(self, state: dict[str, Any], message_id: str) -> dict[str, Any]:
        if message_id == "@original":
            if not state.get("original"):
                raise unknown("message")
            message_id = str(state["original"])
        return self._message(int(state["channel_id"]), message_id, ephemeral=True)

    async def webhook_get(
        self, webhook_id: str, token: str, message_id: str, **_: Any
    ) -> dict[str, Any]:
        state = self._webhook_state(webhook_id, token)
        return self._webhook_message(state, message_id)

    async def webhook_edit(
        self, webhook_id: str, token: str, message_id: str, body: Any, **_: Any
    ) -> dict[str, Any]:
        state = self._webhook_state(webhook_id, token)
        msg = self._webhook_message(state, message_id)
        if int(msg["id"]) == state.get("original"):
            state.pop("deferred", None)  # the "thinking" message now says something
        guild, ch = self._channel(state["channel_id"])
        return await self._edit(ch, guild, msg, body)

    async def webhook_delete(self, webhook_id: str, token: str, message_id: str, **_: Any) -> None:
        state = self._webhook_state(webhook_id, token)
        msg = self._webhook_message(state, message_id)
        mid = int(msg["id"])
        if mid in self.ephemeral and mid != state.get("original"):
            raise unknown("message")  # "Does not support ephemeral followups"
        guild, _ch = self._channel(state["channel_id"])
        del self.messages[int(state["channel_id"])][mid]
        await self.to_outbox("delete", int(state["channel_id"]), None, message_id=msg["id"])
        if self.ephemeral.pop(mid, None) is None:
            await self.gateway.dispatch(
                "MESSAGE_DELETE",
                {
                    "id": msg["id"],
                    "channel_id": state["channel_id"],
                    **({"guild_id": str(guild.id)} if guild else {}),
                },
                guild.id if guild else None,
            )

    async def webhook_followup(
        self, webhook_id: str, token: str, body: Any, **_: Any
    ) -> dict[str, Any]:
        state = self._webhook_state(webhook_id, token)
        if state["response"] is None:
            raise unknown("webhook")
        guild, ch = self._channel(state["channel_id"])
        if state.pop("deferred", False):
            # The first follow-up to a deferred response is that response: it replaces the
            # "thinking" message, ephemeral or not as the deferral said.
            placeholder = self._message(ch.id, str(state["original"]), ephemeral=True)
            return await self._edit(ch, guild, placeholder, body)
        body = self.validate_message(body)
        flags = body.get("flags")
        ephemeral = isinstance(flags, int) and bool(flags & EPHEMERAL)
        msg = self.make_message(
            ch,
            guild,
            self.world.bot.id,
            body,
            webhook_id=self.world.application_id,
            interaction=state,
        )
        await self.to_outbox(
            "followup",
            ch.id,
            msg,
            interaction_id=state["id"],
            ephemeral=ephemeral,
        )
        return msg

    # guilds, members, moderation

    async def get_guild(self, guild_id: str, **_: Any) -> dict[str, Any]:
        return self._guild(guild_id).to_dict(self.world)

    async def get_guild_channels(self, guild_id: str, **_: Any) -> list[dict[str, Any]]:
        return [c.to_dict(self.world) for c in self._guild(guild_id).channels.values()]

    async def get_roles(self, guild_id: str, **_: Any) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self._guild(guild_id).roles.values()]

    def _member(self, guild: Guild, user_id: str) -> Member:
        try:
            member = guild.members.get(int(user_id))
        except ValueError:
            member = None
        if member is None:
            raise unknown("member")
        return member

    async def get_member(self, guild_id: str, user_id: str, **_: Any) -> dict[str, Any]:
        guild = self._guild(guild_id)
        return self._member(guild, user_id).to_dict(self.world)

    def _above(self, guild: Guild, member: Member) -> None:
        """The bot can only act on members whose highest role is below its own."""
        if member.user_id == guild.owner_id:
            raise missing_permissions()
        bot = guild.members[self.world.bot.id]

        def top(m: Member) -> int:
            return max((guild.roles[r].position for r in m.roles if r in guild.roles), default=0)

        if top(member) >= top(bot):
            raise missing_permissions()

    async def _member_update(self, guild: Guild, member: Member) -> None:
        await self.gateway.dispatch(
            "GUILD_MEMBER_UPDATE",
            {"guild_id": str(guild.id), **member.to_dict(self.world)},
            guild.id,
        )

    async def edit_member(self, guild_id: str, user_id: str, body: Any, **_: Any) -> dict[str, Any]:
        guild = self._guild(guild_id)
        member = self._member(guild, user_id)
        body = body or {}
        if "communication_disabled_until" in body:
            self._require(guild, None, MODERATE_MEMBERS)
            self._above(guild, member)
            until = body["communication_disabled_until"]
            if until is None:
                member.communication_disabled_until = None
            else:
                from datetime import datetime

                try:
                    ts = datetime.fromisoformat(str(until)).timestamp()
                except ValueError:
                    raise field_error(
                        ["communication_disabled_until"], "DATE_TYPE_PARSE", "Could not parse date."
                    ) from None
                if ts - time.time() > 28 * 86400:
                    raise field_error(
                        ["communication_disabled_until"],
                        "BASE_TYPE_BAD_LENGTH",
                        "Timeouts can be at most 28 days.",
                    )
                member.communication_disabled_until = ts
        if "nick" in body:
            member.nick = body["nick"]
        if "roles" in body:
            self._require(guild, None, MANAGE_ROLES)
            member.roles = [int(r) for r in body["roles"] if int(r) in guild.roles]
        await self._member_update(guild, member)
        return member.to_dict(self.world)

    async def kick_member(self, guild_id: str, user_id: str, **_: Any) -> None:
        guild = self._guild(guild_id)
        member = self._member(guild, user_id)
        self._require(guild, None, KICK_MEMBERS)
        self._above(guild, member)
        del guild.members[member.user_id]
        await self.gateway.dispatch(
            "GUILD_MEMBER_REMOVE",
            {"guild_id": str(guild.id), "user": self.world.users[member.user_id].to_dict()},
            guild.id,
        )

    async def _role_change(self, guild_id: str, user_id: str, role_id: str, add: bool) -> None:
        guild = self._guild(guild_id)
        member = self._member(guild, user_id)
        self._require(guild, None, MANAGE_ROLES)
        try:
            role = guild.roles[int(role_id)]
        except (KeyError, ValueError):
            raise unknown("role") from None
        bot_top = max(guild.roles[r].position for r in guild.members[self.world.bot.id].roles)
        if role.position >= bot_top:
            raise missing_permissions()
        if add and role.id not in member.roles:
            member.roles.append(role.id)
        elif not add and role.id in member.roles:
            member.roles.remove(role.id)
        await self._member_update(guild, member)

    async def add_role(self, guild_id: str, user_id: str, role_id: str, **_: Any) -> None:
        await self._role_change(guild_id, user_id, role_id, True)

    async def remove_role(self, guild_id: str, user_id: str, role_id: str, **_: Any) -> None:
        await self._role_change(guild_id, user_id, role_id, False)

    async def list_bans(self, guild_id: str, **_: Any) -> list[dict[str, Any]]:
        guild = self._guild(guild_id)
        self._require(guild, None, BAN_MEMBERS)
        return [
            {"reason": reason, "user": self.world.users[uid].to_dict()}
            for uid, reason in guild.bans.items()
        ]

    async def get_ban(self, guild_id: str, user_id: str, **_: Any) -> dict[str, Any]:
        guild = self._guild(guild_id)
        self._require(guild, None, BAN_MEMBERS)
        try:
            uid = int(user_id)
            return {"reason": guild.bans[uid], "user": self.world.users[uid].to_dict()}
        except (KeyError, ValueError):
            raise unknown("ban") from None

    async def ban(
        self, guild_id: str, user_id: str, request: web.Request, body: Any, **_: Any
    ) -> None:
        guild = self._guild(guild_id)
        self._require(guild, None, BAN_MEMBERS)
        try:
            uid = int(user_id)
            user = self.world.users[uid]
        except (KeyError, ValueError):
            raise unknown("user") from None
        if uid in guild.members:
            self._above(guild, guild.members[uid])
            del guild.members[uid]
            await self.gateway.dispatch(
                "GUILD_MEMBER_REMOVE", {"guild_id": str(guild.id), "user": user.to_dict()}, guild.id
            )
        guild.bans[uid] = request.headers.get("X-Audit-Log-Reason")
        await self.gateway.dispatch(
            "GUILD_BAN_ADD", {"guild_id": str(guild.id), "user": user.to_dict()}, guild.id
        )

    async def unban(self, guild_id: str, user_id: str, **_: Any) -> None:
        guild = self._guild(guild_id)
        self._require(guild, None, BAN_MEMBERS)
        try:
            uid = int(user_id)
            del guild.bans[uid]
        except (KeyError, ValueError):
            raise unknown("ban") from None
        await self.gateway.dispatch(
            "GUILD_BAN_REMOVE",
            {"guild_id": str(guild.id), "user": self.world.users[uid].to_dict()},
            guild.id,
        )

    # -- control API ---------------------------------------------------------------------------
    # What users do, as the control API asks. A request that can't have come from Discord's
    # client (no such channel, a user who is not a member, a command the bot never registered)
    # is a BadInput: a 400 naming the field, with Discord's "Unknown ..." code where there is one.
    # What Discord itself would refuse a real user (a channel they can't write in) keeps
    # Discord's answer (403 50013).

    def _user_in_channel(
        self, channel_id: int, user_id: int, user_field: str
    ) -> tuple[Guild | None, Channel]:
        found = self.world.channel(channel_id)
        if found is None:
            raise BadInput("channel_id", f"no channel {channel_id}", 10003)
        guild, ch = found
        if ch.type == CHANNEL_CATEGORY:
            raise BadInput("channel_id", f"channel {channel_id} is a category: nobody writes there")
        if user_id not in self.world.users:
            raise BadInput(user_field, f"no user {user_id}", 10013)
        if guild is not None and user_id not in guild.members:
            raise BadInput(user_field, f"user {user_id} is not a member of guild {guild.id}", 10007)
        if guild is None and user_id not in ch.recipients:
            raise BadInput(user_field, f"user {user_id} is not in DM channel {channel_id}")
        return guild, ch

    async def user_message(self, channel_id: int, author_id: int, content: str) -> dict[str, Any]:
        """A user says something: MESSAGE_CREATE, as Discord would dispatch it."""
        guild, ch = self._user_in_channel(channel_id, author_id, "author_id")
        if guild is not None and not guild.permissions(author_id, ch) & SEND_MESSAGES:
            raise missing_permissions()
        if len(content) > MAX_CONTENT:
            raise BadInput("content", f"must be at most {MAX_CONTENT} characters")
        msg = self.make_message(ch, guild, author_id, {"content": content})
        if ch.type == CHANNEL_DM:
            msg["channel_type"] = CHANNEL_DM
        await self.gateway.dispatch("MESSAGE_CREATE", msg, guild.id if guild else None)
        return msg

    async def user_interaction(
        self, channel_id: int, user_id: int, name: str, options: Any
    ) -> dict[str, Any]:
        """A user runs a slash command. `options`: Discord's list of {name, value}
        (subcommands with their own `options`), or {name: value}."""
        guild, ch = self._user_in_channel(channel_id, user_id, "user_id")
        cmd = next(
            (
                c
                for scope in (guild.id if guild else None, None)
                for c in self.commands.get(scope, {}).values()
                if c["name"] == name and c["type"] == 1
            ),
            None,
        )
        if cmd is None:
            raise BadInput("name", f"the bot has not registered a slash command {name!r}", 10063)
        resolver = OptionResolver(self.world, guild, ch, user_id)
        data: dict[str, Any] = {
            "id": cmd["id"],
            "name": name,
            "type": 1,
            "options": resolver.resolve(options, cmd["options"]),
            **({"guild_id": str(guild.id)} if guild and cmd.get("guild_id") else {}),
        }
        if resolver.resolved:
            data["resolved"] = resolver.resolved
        return await self._deliver(guild, ch, user_id, COMMAND, data)

    async def user_component(
        self,
        channel_id: int,
        user_id: int,
        message_id: int,
        custom_id: str,
        values: Any = None,
    ) -> dict[str, Any]:
        """A user clicks a button, or picks `values` from a select menu, of a message."""
        guild, ch = self._user_in_channel(channel_id, user_id, "user_id")
        message = self.messages.get(ch.id, {}).get(message_id)
        if message is None or self.ephemeral.get(message_id, user_id) != user_id:
            # Someone else's ephemeral message is not on this user's screen.
            raise BadInput("message_id", f"no message {message_id} in channel {ch.id}", 10008)
        component = ui.find(message.get("components"), custom_id)
        # Discord's client offers only components that are there, and enabled.
        if component is None:
            raise BadInput("custom_id", f"message {message_id} has no button or menu {custom_id!r}")
        if component.get("disabled"):
            raise BadInput("custom_id", f"{custom_id!r} is disabled")
        kind = component.get("type")
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": kind}
        if kind == ui.BUTTON:
            if values is not None:
                raise BadInput("values", f"{custom_id!r} is a button: it takes no values")
        elif kind in ui.SELECTS:
            if values is None:
                raise BadInput("values", f"{custom_id!r} is a menu: say which values to pick")
            picker = ui.Picker(self.world, guild, ch, user_id)
            data["values"] = picker.values(component, values, "values")
            if picker.resolved:
                data["resolved"] = picker.resolved
        else:
            raise BadInput("custom_id", f"{custom_id!r} is neither a button nor a menu")
        return await self._deliver(guild, ch, user_id, COMPONENT, data, message=message)

    async def user_submit(
        self, channel_id: int, user_id: int, fields: Any, custom_id: str | None = None
    ) -> dict[str, Any]:
        """A user fills in and submits the modal the bot opened for them: `fields` is
        {input custom_id: text (a list of values, for a menu)}."""
        guild, ch = self._user_in_channel(channel_id, user_id, "user_id")
        opened = self.modals.get(user_id)
        if opened is None:
            raise BadInput("fields", f"the bot has no modal open for user {user_id}")
        shown = opened["modal"]
        if opened["channel_id"] != str(ch.id):
            raise BadInput("channel_id", f"the modal was opened in channel {opened['channel_id']}")
        if custom_id is not None and custom_id != shown["custom_id"]:
            raise BadInput("custom_id", f"the modal open for the user is {shown['custom_id']!r}")
        picker = ui.Picker(self.world, guild, ch, user_id)
        data: dict[str, Any] = {
            "custom_id": shown["custom_id"],
            "components": picker.submission(shown, fields, "fields"),
        }
        if picker.resolved:
            data["resolved"] = picker.resolved
        message = None
        if opened["message_id"] is not None:
            message = self.messages.get(ch.id, {}).get(int(opened["message_id"]))
        del self.modals[user_id]  # submitting closes it
        return await self._deliver(
            guild, ch, user_id, MODAL_SUBMIT, data, message=message, opened_by=opened["opened_by"]
        )

    async def redeliver(self, interaction_id: int) -> dict[str, Any]:
        """Discord delivers an interaction again, same id and token (a retry)."""
        state = next(
            (s for s in self.interactions.values() if s["id"] == str(interaction_id)), None
        )
        if state is None:
            raise BadInput("id", f"no interaction {interaction_id}", 10062)
        payload: dict[str, Any] = state["payload"]
        await self.gateway.dispatch(
            "INTERACTION_CREATE",
            payload,
            int(payload["guild_id"]) if "guild_id" in payload else None,
        )
        return payload

    def interaction_state(self, interaction_id: int) -> dict[str, Any]:
        """How an interaction was answered, for whoever drives the sandbox."""
        state = next(
            (s for s in self.interactions.values() if s["id"] == str(interaction_id)), None
        )
        if state is None:
            raise BadInput("id", f"no interaction {interaction_id}", 10062)
        return {
            "id": state["id"],
            "type": state["type"],
            "response_type": state["response"],
            "late": state["late"],
            "original_message_id": str(state["original"]) if state.get("original") else None,
        }

    def open_modal(self, user_id: int) -> dict[str, Any] | None:
        opened = self.modals.get(user_id)
        if opened is None:
            return None
        shown = opened["modal"]
        return {
            "channel_id": opened["channel_id"],
            "custom_id": shown["custom_id"],
            "title": shown["title"],
            "inputs": ui.inputs(shown),
        }

    async def _deliver(
        self,
        guild: Guild | None,
        ch: Channel,
        user_id: int,
        kind: int,
        data: dict[str, Any],
        *,
        message: dict[str, Any] | None = None,
        opened_by: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """INTERACTION_CREATE for what the user did, and the sandbox's record of it."""
        user = self.world.users[user_id]
        iid = self.world.ids.now()
        token = f"aW50ZXJhY3Rpb246{iid}:{self.world.ids.now()}"
        payload: dict[str, Any] = {
            "id": str(iid),
            "application_id": str(self.world.application_id),
            "type": kind,
            "data": data,
            "channel_id": str(ch.id),
            "channel": {
                "id": str(ch.id),
                "type": ch.type,
                "name": ch.name,
                "guild_id": str(guild.id) if guild else None,
            },
            "token": token,
            "version": 1,
            "locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(guild.id) if guild else "0"},
            "context": 0 if guild else 1,
            "attachment_size_limit": 10_485_760,
            "app_permissions": str(guild.permissions(self.world.bot.id, ch)) if guild else "0",
        }
        if guild is not None:
            member = guild.members[user_id]
            payload["guild_id"] = str(guild.id)
            payload["guild_locale"] = "en-US"
            payload["guild"] = {"id": str(guild.id), "locale": "en-US", "features": []}
            payload["member"] = {
                **member.to_dict(self.world),
                "permissions": str(guild.permissions(user_id, ch)),
            }
        else:
            payload["user"] = user.to_dict()
        if message is not None:
            payload["message"] = message
        # What a message the bot answers with says about the interaction (interaction_metadata).
        metadata: dict[str, Any] = {
            "id": str(iid),
            "type": kind,
            "user": user.to_dict(),
            "authorizing_integration_owners": dict(payload["authorizing_integration_owners"]),
        }
        if kind == COMPONENT and message is not None:
            metadata["interacted_message_id"] = message["id"]
        if kind == MODAL_SUBMIT and opened_by is not None:
            metadata["triggering_interaction_metadata"] = opened_by["metadata"]
        self.interactions[token] = {
            "id": str(iid),
            "type": kind,
            "channel_id": str(ch.id),
            "user_id": user_id,
            "message_id": message["id"] if message is not None else None,
            "created": time.time(),
            "response": None,
            "responded": False,
            "late": False,
            "metadata": metadata,
            "payload": payload,
        }
        await self.gateway.dispatch("INTERACTION_CREATE", payload, guild.id if guild else None)
        return payload

    async def wait_outbox(
        self, channel_id: str | None, after: int, wait: float
    ) -> list[dict[str, Any]]:
        def pending() -> list[dict[str, Any]]:
            return [
                e
                for e in self.outbox[after:]
                if channel_id is None or e["channel_id"] == channel_id
            ]

        deadline = time.monotonic() + wait
        while not (found := pending()) and (left := deadline - time.monotonic()) > 0:
            async with self.outbox_changed:
                try:
                    await asyncio.wait_for(self.outbox_changed.wait(), left)
                except TimeoutError:
                    break
        return found

    async def world_event(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        """Things users and Discord do that a bot hears about: joins, leaves, reactions,
        presence changes, the bot being removed from a guild."""
        kinds = ("member_add", "member_remove", "reaction", "presence", "guild_delete")
        if kind not in kinds:
            raise BadInput("kind", f"must be one of {', '.join(kinds)}, not {describe(kind)}")
        fields = Fields(data)
        guild_id = fields.snowflake("guild_id")
        guild = self.world.guilds.get(guild_id)
        if guild is None:
            raise BadInput("guild_id", f"no guild {guild_id}", 10004)
        if kind == "member_add":
            user_id = fields.snowflake("user_id")
            if user_id not in self.world.users:
                raise BadInput("user_id", f"no user {user_id}", 10013)
            if user_id in guild.members:
                raise BadInput("user_id", f"user {user_id} is already a member of guild {guild_id}")
            if user_id in guild.bans:
                raise ApiError(403, 40007, "The user is banned from this guild.")
            member = Member(user_id, [], time.time())
            guild.members[user_id] = member
            payload = {"guild_id": str(guild.id), **member.to_dict(self.world)}
            await self.gateway.dispatch("GUILD_MEMBER_ADD", payload, guild.id)
            return payload
        if kind == "member_remove":
            member = self._event_member(guild, fields)
            del guild.members[member.user_id]
            guild.presences.pop(member.user_id, None)
            payload = {
                "guild_id": str(guild.id),
                "user": self.world.users[member.user_id].to_dict(),
            }
            await self.gateway.dispatch("GUILD_MEMBER_REMOVE", payload, guild.id)
            return payload
        if kind == "reaction":
            channel_id = fields.snowflake("channel_id")
            found = self.world.channel(channel_id)
            if found is None or found[0] is not guild:
                raise BadInput("channel_id", f"no channel {channel_id} in guild {guild_id}", 10003)
            if found[1].type == CHANNEL_CATEGORY:
                raise BadInput("channel_id", f"channel {channel_id} is a category: no messages")
            message_id = fields.snowflake("message_id")
            if message_id not in self.messages.get(channel_id, {}):
                raise BadInput(
                    "message_id", f"no message {message_id} in channel {channel_id}", 10008
                )
            emoji = fields.string("emoji", default="👍", max_length=100)
            member = self._event_member(guild, fields)
            payload = {
                "user_id": str(member.user_id),
                "channel_id": str(channel_id),
                "message_id": str(message_id),
                "guild_id": str(guild.id),
                "member": member.to_dict(self.world),
                "burst": False,
                "type": 0,
                "emoji": {"id": None, "name": emoji},
            }
            await self.gateway.dispatch("MESSAGE_REACTION_ADD", payload, guild.id)
            return payload
        if kind == "presence":
            member = self._event_member(guild, fields)
            status = fields.string("status", default="online", choices=PRESENCE_STATUSES)
            if status == "offline":
                guild.presences.pop(member.user_id, None)
            else:
                guild.presences[member.user_id] = status
            payload = guild.presence(member.user_id)
            await self.gateway.dispatch("PRESENCE_UPDATE", payload, guild.id)
            return payload
        payload = {"id": str(guild.id), "unavailable": False}
        await self.gateway.dispatch("GUILD_DELETE", payload, guild.id)
        del self.world.guilds[guild.id]
        for session in self.gateway.sessions.values():
            session.guild_ids.discard(guild.id)
        return payload

    def _event_member(self, guild: Guild, fields: Fields) -> Member:
        user_id = fields.snowflake("user_id")
        member = guild.members.get(user_id)
        if member is None:
            raise BadInput("user_id", f"user {user_id} is not a member of guild {guild.id}", 10007)
        return member
