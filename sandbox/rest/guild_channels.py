"""Creating a guild's channels (`POST /guilds/{guild.id}/channels`), as Discord's "Create
Guild Channel" documents it: text (0), voice (2) and category (4) channels with a parent
category, permission overwrites and a position; Manage Channels needed (50013 without), an
overwrite may allow or deny only what the bot has in the guild (Manage Roles only for an
administrator), a CHANNEL_CREATE event and an audit-log entry (action 10)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sandbox.errors import ApiError
from sandbox.rest.base import (
    Resource,
    RouteSpec,
    audit_reason,
    field_error,
    missing_permissions,
    not_json,
    unknown,
)
from sandbox.rest.form import Form, permission_bits
from sandbox.world import (
    ADMINISTRATOR,
    CHANNEL_CATEGORY,
    CHANNEL_TEXT,
    CHANNEL_VOICE,
    MANAGE_CHANNELS,
    MANAGE_ROLES,
    Channel,
)

if TYPE_CHECKING:
    from aiohttp import web

    from sandbox.world import Guild

CHANNEL_CREATE = 10  # audit log action type
TYPES = (CHANNEL_TEXT, CHANNEL_VOICE, CHANNEL_CATEGORY)
SLOWMODE_MAX = 21600
GUILD_CHANNELS_MAX = 500  # 30013 beyond
CATEGORY_CHANNELS_MAX = 50
POSITION_MAX = 2**31 - 1


class GuildChannels(Resource):
    def routes(self) -> list[RouteSpec]:
        return [RouteSpec("POST", "/guilds/{guild_id}/channels", self.create_channel)]

    async def create_channel(
        self, guild_id: str, body: Any, request: web.Request, **_: Any
    ) -> dict[str, Any]:
        guild = self.state.guild(guild_id)
        if body is None:
            raise not_json()
        form = Form(body)
        name = form.string("name", low=1, high=100, required=True)
        kind = form.choice("type", (*TYPES, None))
        kind = CHANNEL_TEXT if kind is None else kind
        topic = form.string("topic", high=1024, nullable=True)
        slowmode = form.integer("rate_limit_per_user", low=0, high=SLOWMODE_MAX, nullable=True)
        position = form.integer("position", low=0, high=POSITION_MAX, nullable=True)
        parent_id = form.snowflake("parent_id", nullable=True)
        overwrites = _overwrites(form)
        form.check()
        self.state.require(guild, None, MANAGE_CHANNELS)
        self._grantable(guild, overwrites)
        parent = self._parent(guild, kind, parent_id)
        if len(guild.channels) >= GUILD_CHANNELS_MAX:
            raise ApiError(
                400, 30013, f"Maximum number of guild channels reached ({GUILD_CHANNELS_MAX})"
            )
        if position is None:  # the end of the channels of its kind, as Discord puts it
            same = [c.position for c in guild.channels.values() if c.type == kind]
            position = max(same, default=-1) + 1
        ch = Channel(
            self.world.ids.now(),
            kind,
            name,
            guild.id,
            position,
            parent_id=parent.id if parent is not None else None,
            topic=topic if kind == CHANNEL_TEXT else None,
            overwrites=overwrites,
            rate_limit_per_user=(slowmode or 0) if kind == CHANNEL_TEXT else 0,
        )
        guild.channels[ch.id] = ch
        await self.state.audit(
            guild,
            CHANNEL_CREATE,
            user_id=self.world.bot.id,
            target_id=ch.id,
            reason=audit_reason(request),
            changes=[
                {"key": "name", "new_value": name},
                {"key": "type", "new_value": kind},
                {
                    "key": "permission_overwrites",
                    "new_value": ch.to_dict(self.world)["permission_overwrites"],
                },
            ],
        )
        data = ch.to_dict(self.world)
        await self.gateway.dispatch("CHANNEL_CREATE", data, guild.id)
        return data

    def _grantable(self, guild: Guild, overwrites: list[dict[str, Any]]) -> None:
        """An overwrite names a role of the guild or a user (10011, 10013 otherwise); only
        permissions the bot has in the guild may be allowed or denied, and Manage Roles (Manage
        Permissions, in a channel) only by an administrator (50013)."""
        have = guild.permissions(self.world.bot.id)
        admin = bool(have & ADMINISTRATOR) or guild.owner_id == self.world.bot.id
        for o in overwrites:
            if o["type"] == 0 and o["id"] not in guild.roles:
                raise unknown("role")
            if o["type"] == 1 and o["id"] not in self.world.users:
                raise unknown("user")
            bits = o["allow"] | o["deny"]
            if not admin and (bits & ~have or bits & MANAGE_ROLES):
                raise missing_permissions()

    def _parent(self, guild: Guild, kind: int, parent_id: int | None) -> Channel | None:
        if parent_id is None:
            return None
        parent = guild.channels.get(parent_id)
        if parent is None or parent.type != CHANNEL_CATEGORY or kind == CHANNEL_CATEGORY:
            raise field_error(
                ["parent_id"], "CHANNEL_PARENT_INVALID_TYPE", "Not a category in this guild."
            )
        children = sum(1 for c in guild.channels.values() if c.parent_id == parent.id)
        if children >= CATEGORY_CHANNELS_MAX:
            raise field_error(
                ["parent_id"],
                "CHANNEL_PARENT_MAX_CHANNELS",
                f"Maximum number of channels in category reached ({CATEGORY_CHANNELS_MAX})",
            )
        return parent


def _overwrites(form: Form) -> list[dict[str, Any]]:
    """The partial overwrites: id and type (0 role, 1 member) needed, allow and deny "0" when
    left out or null. A repeated id keeps its last overwrite."""
    value = form.data.get("permission_overwrites")
    if value is None:
        return []
    if not isinstance(value, list):
        form.errors.add(["permission_overwrites"], "BASE_TYPE_ARRAY", "Must be an array.")
        return []
    if len(value) > 100:
        form.errors.add(
            ["permission_overwrites"], "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length."
        )
    out: dict[int, dict[str, Any]] = {}
    for i, raw in enumerate(value):
        path: list[str | int] = ["permission_overwrites", i]
        if not isinstance(raw, dict):
            form.errors.add(
                path, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType"
            )
            continue
        o = Form(raw, path)
        o.errors = form.errors  # one "Invalid Form Body" for the whole request
        target = o.snowflake("id", required=True)
        kind = o.choice("type", (0, 1, "0", "1"), required=True)
        allow = permission_bits(o.errors, [*path, "allow"], o.data.get("allow") or 0)
        deny = permission_bits(o.errors, [*path, "deny"], o.data.get("deny") or 0)
        if target is not None and kind is not None:
            out[target] = {"id": target, "type": int(kind), "allow": allow, "deny": deny}
    return list(out.values())
