"""What every part of the REST API shares: Discord's error answers, the sandbox's stores
(messages, commands, interactions, the outbox, audit logs, attachments) and the lookups and
checks the routes make."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sandbox.errors import ApiError
from sandbox.world import VIEW_AUDIT_LOG

if TYPE_CHECKING:
    from aiohttp import web

    from sandbox.gateway import Gateway
    from sandbox.server import SandboxConfig
    from sandbox.world import Channel, Guild, Member, World

MAX_CONTENT = 2000

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

UNKNOWN_CODES = {
    "channel": 10003,
    "guild": 10004,
    "member": 10007,
    "message": 10008,
    "role": 10011,
    "user": 10013,
    "webhook": 10015,
    "ban": 10026,
    "overwrite": 10009,
    "interaction": 10062,
    "command": 10063,
}


def unknown(kind: str) -> ApiError:
    return ApiError(404, UNKNOWN_CODES[kind], f"Unknown {kind.title()}")


def missing_permissions() -> ApiError:
    return ApiError(403, 50013, "Missing Permissions")


def field_error(path: list[str], code: str, message: str) -> ApiError:
    errors: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for key in reversed(path):
        errors = {key: errors}
    return ApiError(400, 50035, "Invalid Form Body", errors)


def not_json() -> ApiError:
    return ApiError(400, 50109, "The request body contains invalid JSON.")


Handler = Callable[..., Awaitable[Any]]


@dataclass
class RouteSpec:
    """A route a resource serves: method, template (`/channels/{channel_id}`), handler."""

    method: str
    template: str
    handler: Handler
    exempt_global: bool = False
    auth: bool = True


@dataclass
class Attachment:
    """A file a bot uploaded with a message, kept so its URL serves it."""

    id: int
    channel_id: int
    filename: str
    content_type: str
    data: bytes


@dataclass
class State:
    """The sandbox's REST-side memory and the lookups every route makes. Ids in paths are the
    strings the client sent: a lookup that can't read one answers Discord's "Unknown ..."."""

    world: World
    gateway: Gateway
    config: SandboxConfig
    messages: dict[int, dict[int, dict[str, Any]]] = field(default_factory=dict)
    commands: dict[int | None, dict[int, dict[str, Any]]] = field(
        default_factory=lambda: {None: {}}
    )
    interactions: dict[str, dict[str, Any]] = field(default_factory=dict)  # token -> state
    ephemeral: dict[int, int] = field(default_factory=dict)  # message id -> the one who sees it
    modals: dict[int, dict[str, Any]] = field(default_factory=dict)  # user id -> open modal
    outbox: list[dict[str, Any]] = field(default_factory=list)
    outbox_changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    audit_logs: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # guild -> entries
    attachments: dict[int, Attachment] = field(default_factory=dict)
    base_url: str = ""  # set by the server once it knows its port

    # -- lookups -----------------------------------------------------------------------------

    def channel(self, channel_id: str | int) -> tuple[Guild | None, Channel]:
        found = self.world.channel(path_id(channel_id))
        if found is None:
            raise unknown("channel")
        return found

    def guild(self, guild_id: str | int) -> Guild:
        guild = self.world.guilds.get(path_id(guild_id))
        if guild is None:
            raise unknown("guild")
        return guild

    def member(self, guild: Guild, user_id: str | int) -> Member:
        member = guild.members.get(path_id(user_id))
        if member is None:
            raise unknown("member")
        return member

    def message(
        self, channel_id: int, message_id: str | int, *, ephemeral: bool = False
    ) -> dict[str, Any]:
        """A message of the channel. An ephemeral one exists only for its interaction's webhook
        (`ephemeral=True`): the channel's own routes don't know it, as on Discord."""
        msg = self.messages.get(channel_id, {}).get(path_id(message_id))
        if msg is None or (not ephemeral and int(msg["id"]) in self.ephemeral):
            raise unknown("message")
        return msg

    def require(self, guild: Guild | None, channel: Channel | None, *perms: int) -> None:
        """The bot has every one of `perms` (in the channel, with its overwrites)."""
        if guild is None:
            return
        have = guild.permissions(self.world.bot.id, channel)
        for p in perms:
            if not have & p:
                raise missing_permissions()

    def top_position(self, guild: Guild, user_id: int) -> int:
        """The position of a member's highest role (0: only @everyone)."""
        member = guild.members.get(user_id)
        if member is None:
            return 0
        return max((guild.roles[r].position for r in member.roles if r in guild.roles), default=0)

    def above(self, guild: Guild, member: Member) -> None:
        """The bot acts only on members whose highest role is below its own, never on the
        guild's owner (50013 otherwise)."""
        if member.user_id == guild.owner_id:
            raise missing_permissions()
        if self.top_position(guild, member.user_id) >= self.top_position(guild, self.world.bot.id):
            raise missing_permissions()

    async def remove_member(self, guild: Guild, user_id: int) -> None:
        """A member leaves (kicked, banned, or of their own accord): GUILD_MEMBER_REMOVE."""
        guild.members.pop(user_id, None)
        guild.presences.pop(user_id, None)
        await self.gateway.dispatch(
            "GUILD_MEMBER_REMOVE",
            {"guild_id": str(guild.id), "user": self.world.users[user_id].to_dict()},
            guild.id,
        )

    # -- what the bot did --------------------------------------------------------------------

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
            if msg.get("attachments"):
                entry["attachments"] = msg["attachments"]
        self.outbox.append(entry)
        async with self.outbox_changed:
            self.outbox_changed.notify_all()

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

    async def audit(
        self,
        guild: Guild,
        action_type: int,
        *,
        user_id: int,
        target_id: int | None,
        reason: str | None = None,
        changes: list[dict[str, Any]] | None = None,
        options: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """An entry of the guild's audit log: who (`user_id`) did what to whom; dispatched as
        GUILD_AUDIT_LOG_ENTRY_CREATE (GUILD_MODERATION intent) when the bot may view the log."""
        entry: dict[str, Any] = {
            "id": str(self.world.ids.now()),
            "action_type": action_type,
            "user_id": str(user_id),
            "target_id": str(target_id) if target_id is not None else None,
        }
        if changes:
            entry["changes"] = changes
        if options:
            entry["options"] = options
        if reason:
            entry["reason"] = reason
        self.audit_logs.setdefault(guild.id, []).append(entry)
        if guild.permissions(self.world.bot.id) & VIEW_AUDIT_LOG:
            payload = {**entry, "guild_id": str(guild.id)}
            await self.gateway.dispatch("GUILD_AUDIT_LOG_ENTRY_CREATE", payload, guild.id)
        return entry


def audit_reason(request: web.Request) -> str | None:
    """The X-Audit-Log-Reason header (URL-encoded, as clients send it), at most 512 characters."""
    from urllib.parse import unquote

    raw = request.headers.get("X-Audit-Log-Reason")
    if raw is None:
        return None
    return unquote(raw)[:512] or None


def path_id(value: str | int) -> int:
    """An id from a path: anything that is not a snowflake names nothing (0)."""
    if isinstance(value, int):
        return value
    if value.isascii() and value.isdigit() and len(value) <= 20:
        return int(value)
    return 0


class Resource:
    """A group of routes over the shared state."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.world = state.world
        self.gateway = state.gateway
        self.config = state.config

    def routes(self) -> list[RouteSpec]:
        raise NotImplementedError
