"""Setting the world up from outside, as a server's admins would in Discord's own UI: roles
and their positions, a member's roles and nick (the bot's too), the guild's owner, a user's
closed DMs. Each change is dispatched as Discord would (GUILD_ROLE_CREATE/UPDATE,
GUILD_MEMBER_UPDATE, GUILD_UPDATE), so a bot's cache follows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sandbox.control import Fields, describe, snowflake
from sandbox.errors import BadInput
from sandbox.world import ALL_PERMISSIONS, Role

if TYPE_CHECKING:
    from sandbox.rest.base import State
    from sandbox.world import Guild, Member

ROLE_NAME_MAX = 100


class Arrange:
    def __init__(self, state: State) -> None:
        self.state = state
        self.world = state.world
        self.gateway = state.gateway

    def guild(self, fields: Fields) -> Guild:
        guild_id = fields.snowflake("guild_id")
        guild = self.world.guilds.get(guild_id)
        if guild is None:
            raise BadInput("guild_id", f"no guild {guild_id}", 10004)
        return guild

    def _role(self, guild: Guild, fields: Fields) -> Role:
        role_id = fields.snowflake("role_id")
        role = guild.roles.get(role_id)
        if role is None:
            raise BadInput("role_id", f"no role {role_id} in guild {guild.id}", 10011)
        return role

    def _read_role(self, role: Role, fields: Fields) -> None:
        if fields.has("name"):
            name = fields.string("name", max_length=ROLE_NAME_MAX)
            if not name:
                raise BadInput("name", "must not be empty")
            role.name = name
        if fields.has("permissions"):
            bits = fields.data["permissions"]
            value = snowflake(bits, "permissions") if bits not in (0, "0") else 0
            if value & ~ALL_PERMISSIONS:
                raise BadInput("permissions", "has bits Discord doesn't define")
            role.permissions = value

    def _place(self, guild: Guild, role: Role, fields: Fields) -> None:
        """Moves a role to `position` (1 and up; @everyone is 0), the others shifting."""
        top = max(r.position for r in guild.roles.values()) + 1
        position = fields.integer("position", default=top, low=1, high=top)
        others = sorted(
            (r for r in guild.roles.values() if r.id not in (guild.id, role.id)),
            key=lambda r: r.position,
        )
        others.insert(min(position - 1, len(others)), role)
        for i, r in enumerate(others, start=1):
            r.position = i

    async def create_role(self, data: dict[str, Any]) -> dict[str, Any]:
        """{guild_id, name, permissions?, position?} → the role (GUILD_ROLE_CREATE)."""
        fields = Fields(data)
        guild = self.guild(fields)
        role = Role(self.world.ids.now(), "new role", 0, 1)
        if not fields.has("name"):
            raise BadInput("name", "is required")
        self._read_role(role, fields)
        guild.roles[role.id] = role
        self._place(guild, role, fields)
        payload = {"guild_id": str(guild.id), "role": role.to_dict()}
        await self.gateway.dispatch("GUILD_ROLE_CREATE", payload, guild.id)
        await self._positions(guild, skip=role.id)
        return role.to_dict()

    async def edit_role(self, data: dict[str, Any]) -> dict[str, Any]:
        """{guild_id, role_id, name?, permissions?, position?} (GUILD_ROLE_UPDATE)."""
        fields = Fields(data)
        guild = self.guild(fields)
        role = self._role(guild, fields)
        if role.id == guild.id and fields.has("position"):
            raise BadInput("position", "@everyone stays at position 0")
        self._read_role(role, fields)
        if fields.has("position"):
            self._place(guild, role, fields)
            await self._positions(guild)
        else:
            payload = {"guild_id": str(guild.id), "role": role.to_dict()}
            await self.gateway.dispatch("GUILD_ROLE_UPDATE", payload, guild.id)
        return role.to_dict()

    async def _positions(self, guild: Guild, skip: int | None = None) -> None:
        for role in guild.roles.values():
            if role.id != skip:
                payload = {"guild_id": str(guild.id), "role": role.to_dict()}
                await self.gateway.dispatch("GUILD_ROLE_UPDATE", payload, guild.id)

    async def edit_member(self, data: dict[str, Any]) -> dict[str, Any]:
        """{guild_id, user_id, roles?, nick?}: the bot's own roles too (GUILD_MEMBER_UPDATE)."""
        fields = Fields(data)
        guild = self.guild(fields)
        user_id = fields.snowflake("user_id")
        member: Member | None = guild.members.get(user_id)
        if member is None:
            raise BadInput("user_id", f"user {user_id} is not a member of guild {guild.id}", 10007)
        if fields.has("roles"):
            given = fields.data["roles"]
            if not isinstance(given, list):
                raise BadInput("roles", f"must be a list of role ids, not {describe(given)}")
            roles = [snowflake(r, f"roles.{i}") for i, r in enumerate(given)]
            for i, r in enumerate(roles):
                if r not in guild.roles or r == guild.id:
                    raise BadInput(f"roles.{i}", f"no role {r} in guild {guild.id}", 10011)
            member.roles = list(dict.fromkeys(roles))
        if "nick" in fields.data:
            nick = fields.string("nick", max_length=32) if fields.has("nick") else None
            member.nick = nick or None
        payload = {"guild_id": str(guild.id), **member.to_dict(self.world)}
        await self.gateway.dispatch("GUILD_MEMBER_UPDATE", payload, guild.id)
        return payload

    async def edit_guild(self, data: dict[str, Any]) -> dict[str, Any]:
        """{guild_id, owner_id}: the guild changes hands (GUILD_UPDATE)."""
        fields = Fields(data)
        guild = self.guild(fields)
        owner = fields.snowflake("owner_id")
        if owner not in guild.members or owner == self.world.bot.id:
            raise BadInput("owner_id", f"user {owner} is not a member who can own guild {guild.id}")
        guild.owner_id = owner
        payload = guild.to_dict(self.world)
        await self.gateway.dispatch("GUILD_UPDATE", payload, guild.id)
        return {"id": str(guild.id), "owner_id": str(owner)}

    def edit_user(self, data: dict[str, Any]) -> dict[str, Any]:
        """{user_id, dms_closed}: whether the user accepts DMs from the bot (else 50007)."""
        fields = Fields(data)
        user_id = fields.snowflake("user_id")
        if user_id not in self.world.users:
            raise BadInput("user_id", f"no user {user_id}", 10013)
        if fields.boolean("dms_closed", default=False):
            self.world.closed_dms.add(user_id)
        else:
            self.world.closed_dms.discard(user_id)
        return {"id": str(user_id), "dms_closed": user_id in self.world.closed_dms}
