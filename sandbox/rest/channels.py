"""Channels: read, edit (name, topic, slowmode) and permission overwrites."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sandbox.errors import ApiError
from sandbox.rest.base import (
    Resource,
    RouteSpec,
    audit_reason,
    missing_permissions,
    not_json,
    path_id,
    unknown,
)
from sandbox.rest.form import Form, permission_bits
from sandbox.world import ADMINISTRATOR, MANAGE_CHANNELS, MANAGE_ROLES, VIEW_CHANNEL

if TYPE_CHECKING:
    from aiohttp import web

    from sandbox.world import Channel, Guild

SLOWMODE_MAX = 21600  # seconds (6 hours)
RENAMES, RENAME_WINDOW = 2, 600.0  # two renames per 10 minutes
# Audit log action types
CHANNEL_UPDATE, OVERWRITE_CREATE, OVERWRITE_UPDATE, OVERWRITE_DELETE = 11, 13, 14, 15
ROLE, MEMBER = 0, 1


class Channels(Resource):
    def routes(self) -> list[RouteSpec]:
        overwrite = "/channels/{channel_id}/permissions/{overwrite_id}"
        return [
            RouteSpec("GET", "/channels/{channel_id}", self.get_channel),
            RouteSpec("PATCH", "/channels/{channel_id}", self.edit_channel),
            RouteSpec("PUT", overwrite, self.put_overwrite),
            RouteSpec("DELETE", overwrite, self.delete_overwrite),
        ]

    async def get_channel(self, channel_id: str, **_: Any) -> dict[str, Any]:
        guild, ch = self.state.channel(channel_id)
        self.state.require(guild, ch, VIEW_CHANNEL)
        return ch.to_dict(self.world)

    async def edit_channel(
        self, channel_id: str, body: Any, request: web.Request, **_: Any
    ) -> dict[str, Any]:
        guild, ch = self.state.channel(channel_id)
        if body is None:
            raise not_json()
        form = Form(body)
        name = form.string("name", low=1, high=100)
        topic = form.string("topic", high=1024, nullable=True)
        slowmode = form.integer("rate_limit_per_user", low=0, high=SLOWMODE_MAX, nullable=True)
        form.check()
        if guild is None:
            raise ApiError(403, 50003, "Cannot execute action on a DM channel")
        self.state.require(guild, ch, VIEW_CHANNEL, MANAGE_CHANNELS)
        changes: list[dict[str, Any]] = []
        if name is not None and name != ch.name:
            now = time.time()
            window = RENAME_WINDOW * self.config.window_scale
            ch.renames = [t for t in ch.renames if now - t < window]
            if len(ch.renames) >= RENAMES:
                retry = window - (now - ch.renames[0])
                raise ApiError(
                    429, 0, f"You are being rate limited (renames). Retry in {retry:.0f}s"
                )
            ch.renames.append(now)
            changes.append({"key": "name", "old_value": ch.name, "new_value": name})
            ch.name = name
        if form.has("topic") and topic != ch.topic:
            changes.append({"key": "topic", "old_value": ch.topic, "new_value": topic})
            ch.topic = topic
        if form.has("rate_limit_per_user") and (slowmode or 0) != ch.rate_limit_per_user:
            changes.append(
                {
                    "key": "rate_limit_per_user",
                    "old_value": ch.rate_limit_per_user,
                    "new_value": slowmode or 0,
                }
            )
            ch.rate_limit_per_user = slowmode or 0
        if changes:
            await self.state.audit(
                guild,
                CHANNEL_UPDATE,
                user_id=self.world.bot.id,
                target_id=ch.id,
                reason=audit_reason(request),
                changes=changes,
            )
        data = ch.to_dict(self.world)
        await self.gateway.dispatch("CHANNEL_UPDATE", data, guild.id)
        return data

    def _grantable(self, guild: Guild, ch: Channel, bits: int) -> None:
        """A bot can allow or deny only permissions it has itself (in that channel)."""
        have = guild.permissions(self.world.bot.id, ch)
        if not have & ADMINISTRATOR and bits & ~have:
            raise missing_permissions()

    async def put_overwrite(
        self, channel_id: str, overwrite_id: str, body: Any, request: web.Request, **_: Any
    ) -> None:
        """A role's (type 0) or a member's (type 1) overwrite: allow and deny bits."""
        guild, ch = self.state.channel(channel_id)
        if body is None:
            raise not_json()
        form = Form(body)
        kind = form.choice("type", (ROLE, MEMBER, "0", "1"), required=True)
        allow = permission_bits(form.errors, ["allow"], form.data.get("allow") or 0)
        deny = permission_bits(form.errors, ["deny"], form.data.get("deny") or 0)
        form.check()
        if guild is None:
            raise ApiError(403, 50003, "Cannot execute action on a DM channel")
        target = path_id(overwrite_id)
        kind = int(kind)
        if kind == ROLE and target not in guild.roles:
            raise unknown("role")
        if kind == MEMBER and target not in self.world.users:
            raise unknown("user")
        self.state.require(guild, ch, VIEW_CHANNEL, MANAGE_ROLES)
        self._grantable(guild, ch, allow | deny)
        old = next((o for o in ch.overwrites if o["id"] == target), None)
        new = {"id": target, "type": kind, "allow": allow, "deny": deny}
        ch.overwrites = [o for o in ch.overwrites if o["id"] != target] + [new]
        await self.state.audit(
            guild,
            OVERWRITE_UPDATE if old else OVERWRITE_CREATE,
            user_id=self.world.bot.id,
            target_id=ch.id,
            reason=audit_reason(request),
            options={"id": str(target), "type": str(kind)},
            changes=[
                {
                    "key": key,
                    "old_value": str(old[key]) if old else None,
                    "new_value": str(new[key]),
                }
                for key in ("allow", "deny")
            ],
        )
        await self.gateway.dispatch("CHANNEL_UPDATE", ch.to_dict(self.world), guild.id)

    async def delete_overwrite(
        self, channel_id: str, overwrite_id: str, request: web.Request, **_: Any
    ) -> None:
        guild, ch = self.state.channel(channel_id)
        if guild is None:
            raise ApiError(403, 50003, "Cannot execute action on a DM channel")
        self.state.require(guild, ch, VIEW_CHANNEL, MANAGE_ROLES)
        target = path_id(overwrite_id)
        old = next((o for o in ch.overwrites if o["id"] == target), None)
        if old is None:
            raise unknown("overwrite")
        ch.overwrites.remove(old)
        await self.state.audit(
            guild,
            OVERWRITE_DELETE,
            user_id=self.world.bot.id,
            target_id=ch.id,
            reason=audit_reason(request),
            options={"id": str(target), "type": str(old["type"])},
        )
        await self.gateway.dispatch("CHANNEL_UPDATE", ch.to_dict(self.world), guild.id)
