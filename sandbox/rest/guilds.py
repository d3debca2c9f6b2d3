"""Guilds, their channels and roles, and members: read, edit (nick, roles, timeout), role
add and remove, kick; each with Discord's permission and role-hierarchy checks, a gateway
event and an audit-log entry."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sandbox.errors import ApiError
from sandbox.rest.base import (
    Resource,
    RouteSpec,
    audit_reason,
    field_error,
    missing_permissions,
    not_json,
    path_id,
    unknown,
)
from sandbox.rest.form import Form
from sandbox.world import (
    ADMINISTRATOR,
    KICK_MEMBERS,
    MANAGE_NICKNAMES,
    MANAGE_ROLES,
    MODERATE_MEMBERS,
    iso,
)

if TYPE_CHECKING:
    from aiohttp import web

    from sandbox.world import Guild, Member, Role

GUILD_MEMBERS_INTENT = 1 << 1
TIMEOUT_MAX = 28 * 86400  # a timeout ends at most 28 days from now
MEMBER_KICK, MEMBER_UPDATE, MEMBER_ROLE_UPDATE = 20, 24, 25  # audit log action types


class Guilds(Resource):
    def routes(self) -> list[RouteSpec]:
        member = "/guilds/{guild_id}/members/{user_id}"
        return [
            RouteSpec("GET", "/guilds/{guild_id}", self.get_guild),
            RouteSpec("GET", "/guilds/{guild_id}/channels", self.get_guild_channels),
            RouteSpec("GET", "/guilds/{guild_id}/roles", self.get_roles),
            RouteSpec("GET", "/guilds/{guild_id}/members", self.list_members),
            RouteSpec("GET", member, self.get_member),
            RouteSpec("PATCH", member, self.edit_member),
            RouteSpec("DELETE", member, self.kick_member),
            RouteSpec("PUT", member + "/roles/{role_id}", self.add_role),
            RouteSpec("DELETE", member + "/roles/{role_id}", self.remove_role),
        ]

    async def get_guild(self, guild_id: str, request: web.Request, **_: Any) -> dict[str, Any]:
        guild = self.state.guild(guild_id)
        form = Form(dict(request.query))
        counts = form.choice("with_counts", ("true", "false", "True", "False", "1", "0"))
        form.check()
        return guild.to_dict(self.world, with_counts=counts in ("true", "True", "1"))

    async def get_guild_channels(self, guild_id: str, **_: Any) -> list[dict[str, Any]]:
        return [c.to_dict(self.world) for c in self.state.guild(guild_id).channels.values()]

    async def get_roles(self, guild_id: str, **_: Any) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.state.guild(guild_id).roles.values()]

    async def list_members(
        self, guild_id: str, request: web.Request, **_: Any
    ) -> list[dict[str, Any]]:
        """In ascending order of user id after `after`, `limit` 1 to 1,000 (1); needs the
        GUILD_MEMBERS intent allowed for the application (50001 otherwise)."""
        guild = self.state.guild(guild_id)
        form = Form(dict(request.query))
        limit = form.integer("limit", low=1, high=1000, default=1)
        after = form.snowflake("after", default=0)
        form.check()
        if not self.config.allowed_privileged & GUILD_MEMBERS_INTENT:
            raise ApiError(403, 50001, "Missing Access")
        ids = sorted(u for u in guild.members if u > after)[:limit]
        return [guild.members[u].to_dict(self.world) for u in ids]

    async def get_member(self, guild_id: str, user_id: str, **_: Any) -> dict[str, Any]:
        guild = self.state.guild(guild_id)
        return self.state.member(guild, user_id).to_dict(self.world)

    async def member_update(self, guild: Guild, member: Member) -> None:
        await self.gateway.dispatch(
            "GUILD_MEMBER_UPDATE",
            {"guild_id": str(guild.id), **member.to_dict(self.world)},
            guild.id,
        )

    def _assignable(self, guild: Guild, role_id: int) -> Role:
        """A role the bot may give or take: it exists and is below the bot's highest role."""
        role = guild.roles.get(role_id)
        if role is None or role_id == guild.id:
            raise unknown("role")
        if role.managed or role.position >= self.state.top_position(guild, self.world.bot.id):
            raise missing_permissions()
        return role

    async def edit_member(
        self, guild_id: str, user_id: str, body: Any, request: web.Request, **_: Any
    ) -> dict[str, Any]:
        """Nick, roles and timeout (`communication_disabled_until`), in one PATCH; `@me` is
        the bot (its own nick)."""
        guild = self.state.guild(guild_id)
        member = self.state.member(guild, self.world.bot.id if user_id == "@me" else user_id)
        if body is None:
            raise not_json()
        form = Form(body)
        nick = form.string("nick", high=32, nullable=True)
        roles = form.snowflakes("roles", high=250) if form.data.get("roles") is not None else None
        until = form.timestamp("communication_disabled_until")
        form.boolean("mute")
        form.boolean("deaf")
        form.check()
        if until is not None and until - time.time() > TIMEOUT_MAX:
            raise field_error(
                ["communication_disabled_until"],
                "BASE_TYPE_BAD_TIME",
                "Timeouts can be at most 28 days in the future.",
            )
        changes: list[dict[str, Any]] = []
        if form.has("communication_disabled_until"):
            self.state.require(guild, None, MODERATE_MEMBERS)
            self.state.above(guild, member)
            if until is not None and guild.permissions(member.user_id) & ADMINISTRATOR:
                raise missing_permissions()  # administrators can't be timed out
            changes.append(
                {
                    "key": "communication_disabled_until",
                    "old_value": _when(member.communication_disabled_until),
                    "new_value": _when(until),
                }
            )
        if form.has("nick") and member.user_id != self.world.bot.id:
            self.state.require(guild, None, MANAGE_NICKNAMES)
            self.state.above(guild, member)
        if form.has("nick"):
            changes.append({"key": "nick", "old_value": member.nick, "new_value": nick or None})
        given = None
        if roles is not None:
            self.state.require(guild, None, MANAGE_ROLES)
            given = list(dict.fromkeys(r for r in roles if r != guild.id))
            for rid in set(given) ^ set(member.roles):
                self._assignable(guild, rid)
        reason = audit_reason(request)
        if form.has("communication_disabled_until"):
            member.communication_disabled_until = until
        if form.has("nick"):
            member.nick = nick or None
        if changes:
            await self.state.audit(
                guild,
                MEMBER_UPDATE,
                user_id=self.world.bot.id,
                target_id=member.user_id,
                reason=reason,
                changes=changes,
            )
        if given is not None:
            await self._audit_roles(guild, member, given, reason)
            member.roles = given
        await self.member_update(guild, member)
        return member.to_dict(self.world)

    async def _audit_roles(
        self, guild: Guild, member: Member, roles: list[int], reason: str | None
    ) -> None:
        def named(ids: set[int]) -> list[dict[str, str]]:
            return [{"id": str(r), "name": guild.roles[r].name} for r in ids]

        added, removed = set(roles) - set(member.roles), set(member.roles) - set(roles)
        changes = [
            {"key": key, "new_value": named(ids)}
            for key, ids in (("$add", added), ("$remove", removed))
            if ids
        ]
        if changes:
            await self.state.audit(
                guild,
                MEMBER_ROLE_UPDATE,
                user_id=self.world.bot.id,
                target_id=member.user_id,
                reason=reason,
                changes=changes,
            )

    async def kick_member(
        self, guild_id: str, user_id: str, request: web.Request, **_: Any
    ) -> None:
        guild = self.state.guild(guild_id)
        member = self.state.member(guild, user_id)
        self.state.require(guild, None, KICK_MEMBERS)
        self.state.above(guild, member)
        await self.state.audit(
            guild,
            MEMBER_KICK,
            user_id=self.world.bot.id,
            target_id=member.user_id,
            reason=audit_reason(request),
        )
        await self.state.remove_member(guild, member.user_id)

    async def _role_change(
        self, guild_id: str, user_id: str, role_id: str, request: web.Request, add: bool
    ) -> None:
        guild = self.state.guild(guild_id)
        member = self.state.member(guild, user_id)
        self.state.require(guild, None, MANAGE_ROLES)
        role = self._assignable(guild, path_id(role_id))
        if add == (role.id in member.roles):
            return  # already so: nothing changes, nothing is dispatched
        roles = [*member.roles, role.id] if add else [r for r in member.roles if r != role.id]
        await self._audit_roles(guild, member, roles, audit_reason(request))
        member.roles = roles
        await self.member_update(guild, member)

    async def add_role(
        self, guild_id: str, user_id: str, role_id: str, request: web.Request, **_: Any
    ) -> None:
        await self._role_change(guild_id, user_id, role_id, request, True)

    async def remove_role(
        self, guild_id: str, user_id: str, role_id: str, request: web.Request, **_: Any
    ) -> None:
        await self._role_change(guild_id, user_id, role_id, request, False)


def _when(ts: float | None) -> str | None:
    return iso(ts) if ts is not None else None
