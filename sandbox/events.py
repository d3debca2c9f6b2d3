"""Things users and Discord do that a bot hears about, as the control API asks: joins and
leaves (one, or a raid of many), reactions, presence changes, the bot being removed from a
guild, and moderation done in Discord's own UI by a moderator (kick, ban, unban), each with
its gateway events and audit-log entry."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sandbox.control import Fields, describe, snowflake
from sandbox.errors import ApiError, BadInput
from sandbox.world import (
    BAN_MEMBERS,
    CHANNEL_CATEGORY,
    KICK_MEMBERS,
    PRESENCE_STATUSES,
    Member,
    User,
)

if TYPE_CHECKING:
    from sandbox.rest.bans import Bans
    from sandbox.rest.base import State
    from sandbox.world import Guild

KINDS = (
    "member_add",
    "member_remove",
    "raid",
    "kick",
    "ban",
    "unban",
    "reaction",
    "presence",
    "guild_delete",
)
MEMBER_KICK = 20
REASON_MAX = 512
RAID_MAX = 1000


class WorldEvents:
    def __init__(self, state: State, bans: Bans) -> None:
        self.state = state
        self.bans = bans
        self.world = state.world
        self.gateway = state.gateway

    async def event(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        if kind not in KINDS:
            raise BadInput("kind", f"must be one of {', '.join(KINDS)}, not {describe(kind)}")
        fields = Fields(data)
        guild_id = fields.snowflake("guild_id")
        guild = self.world.guilds.get(guild_id)
        if guild is None:
            raise BadInput("guild_id", f"no guild {guild_id}", 10004)
        handler = getattr(self, "_" + kind)
        payload: dict[str, Any] = await handler(guild, fields)
        return payload

    # -- joins and leaves ----------------------------------------------------------------------

    async def _member_add(self, guild: Guild, fields: Fields) -> dict[str, Any]:
        """An existing user (`user_id`) or a new one (`username`) joins, with `roles`."""
        if fields.has("user_id"):
            if fields.has("username"):
                raise BadInput("username", "give user_id (an existing user) or username, not both")
            user_id = fields.snowflake("user_id")
            if user_id not in self.world.users:
                raise BadInput("user_id", f"no user {user_id}", 10013)
        elif not fields.has("username"):
            raise BadInput("user_id", "is required (or username, for a new user who joins)")
        else:
            name = fields.string("username", max_length=32)
            if not 2 <= len(name) <= 32:
                raise BadInput("username", "must be 2 to 32 characters")
            user_id = self.world.ids.now()
            self.world.users[user_id] = User(user_id, name, global_name=name)
        roles = self._roles(guild, fields)
        return await self.join(guild, user_id, roles)

    async def join(
        self, guild: Guild, user_id: int, roles: list[int] | None = None
    ) -> dict[str, Any]:
        if user_id in guild.members:
            raise BadInput("user_id", f"user {user_id} is already a member of guild {guild.id}")
        if user_id in guild.bans:
            raise ApiError(403, 40007, "The user is banned from this guild.")
        member = Member(user_id, list(roles or []), time.time())
        guild.members[user_id] = member
        payload = {"guild_id": str(guild.id), **member.to_dict(self.world)}
        await self.gateway.dispatch("GUILD_MEMBER_ADD", payload, guild.id)
        return payload

    async def _raid(self, guild: Guild, fields: Fields) -> dict[str, Any]:
        count = fields.integer("count", default=10, low=1, high=RAID_MAX)
        return {
            "guild_id": str(guild.id),
            "user_ids": [str(u) for u in await self.raid(guild, count)],
        }

    async def raid(self, guild: Guild, count: int) -> list[int]:
        """`count` new accounts join the guild at once (a raid): their user ids."""
        if not 1 <= count <= RAID_MAX:
            raise BadInput("count", f"must be between 1 and {RAID_MAX}")
        joined = []
        for i in range(count):
            user_id = self.world.ids.now()
            self.world.users[user_id] = User(user_id, f"raider{user_id % 100000}_{i}")
            await self.join(guild, user_id)
            joined.append(user_id)
        return joined

    def _roles(self, guild: Guild, fields: Fields) -> list[int]:
        given = fields.data.get("roles")
        if given is None:
            return []
        if not isinstance(given, list):
            raise BadInput("roles", f"must be a list of role ids, not {describe(given)}")
        out = []
        for i, raw in enumerate(given):
            role_id = snowflake(raw, f"roles.{i}")
            if role_id not in guild.roles or role_id == guild.id:
                raise BadInput(f"roles.{i}", f"no role {raw} in guild {guild.id}", 10011)
            out.append(role_id)
        return list(dict.fromkeys(out))

    async def _member_remove(self, guild: Guild, fields: Fields) -> dict[str, Any]:
        member = self.member(guild, fields)
        await self.state.remove_member(guild, member.user_id)
        return {"guild_id": str(guild.id), "user": self.world.users[member.user_id].to_dict()}

    # -- moderation in Discord's own UI --------------------------------------------------------

    def _moderator(self, guild: Guild, fields: Fields, permission: int) -> tuple[int, str | None]:
        """The member who acts (`moderator_id`), who must hold `permission`, and the reason."""
        moderator = fields.snowflake("moderator_id")
        if moderator not in guild.members:
            raise BadInput(
                "moderator_id", f"user {moderator} is not a member of guild {guild.id}", 10007
            )
        if not guild.permissions(moderator) & permission:
            raise ApiError(403, 50013, "Missing Permissions")
        reason = fields.string("reason", max_length=REASON_MAX) if fields.has("reason") else None
        return moderator, reason

    def _outranks(self, guild: Guild, moderator: int, target: int) -> None:
        """Discord's UI lets a moderator act only on members below their highest role."""
        if target == guild.owner_id or (
            moderator != guild.owner_id
            and self.state.top_position(guild, target) >= self.state.top_position(guild, moderator)
        ):
            raise ApiError(403, 50013, "Missing Permissions")

    async def _kick(self, guild: Guild, fields: Fields) -> dict[str, Any]:
        member = self.member(guild, fields)
        moderator, reason = self._moderator(guild, fields, KICK_MEMBERS)
        self._outranks(guild, moderator, member.user_id)
        entry = await self.state.audit(
            guild, MEMBER_KICK, user_id=moderator, target_id=member.user_id, reason=reason
        )
        await self.state.remove_member(guild, member.user_id)
        return entry

    async def _ban(self, guild: Guild, fields: Fields) -> dict[str, Any]:
        user_id = fields.snowflake("user_id")
        if user_id not in self.world.users:
            raise BadInput("user_id", f"no user {user_id}", 10013)
        moderator, reason = self._moderator(guild, fields, BAN_MEMBERS)
        if user_id in guild.members:
            self._outranks(guild, moderator, user_id)
        purge = fields.integer("delete_message_seconds", default=0, low=0, high=604800)
        await self.bans.add(guild, user_id, moderator, reason, purge)
        return self.state.audit_logs[guild.id][-1]

    async def _unban(self, guild: Guild, fields: Fields) -> dict[str, Any]:
        user_id = fields.snowflake("user_id")
        if user_id not in guild.bans:
            raise BadInput("user_id", f"user {user_id} is not banned from guild {guild.id}", 10026)
        moderator, reason = self._moderator(guild, fields, BAN_MEMBERS)
        await self.bans.remove(guild, user_id, moderator, reason)
        return self.state.audit_logs[guild.id][-1]

    # -- reactions, presences, the bot's removal -----------------------------------------------

    async def _reaction(self, guild: Guild, fields: Fields) -> dict[str, Any]:
        channel_id = fields.snowflake("channel_id")
        found = self.world.channel(channel_id)
        if found is None or found[0] is not guild:
            raise BadInput("channel_id", f"no channel {channel_id} in guild {guild.id}", 10003)
        if found[1].type == CHANNEL_CATEGORY:
            raise BadInput("channel_id", f"channel {channel_id} is a category: no messages")
        message_id = fields.snowflake("message_id")
        if message_id not in self.state.messages.get(channel_id, {}):
            raise BadInput("message_id", f"no message {message_id} in channel {channel_id}", 10008)
        emoji = fields.string("emoji", default="👍", max_length=100)
        member = self.member(guild, fields)
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

    async def _presence(self, guild: Guild, fields: Fields) -> dict[str, Any]:
        member = self.member(guild, fields)
        status = fields.string("status", default="online", choices=PRESENCE_STATUSES)
        if status == "offline":
            guild.presences.pop(member.user_id, None)
        else:
            guild.presences[member.user_id] = status
        payload = guild.presence(member.user_id)
        await self.gateway.dispatch("PRESENCE_UPDATE", payload, guild.id)
        return payload

    async def _guild_delete(self, guild: Guild, fields: Fields) -> dict[str, Any]:
        payload = {"id": str(guild.id), "unavailable": False}
        await self.gateway.dispatch("GUILD_DELETE", payload, guild.id)
        del self.world.guilds[guild.id]
        for session in self.gateway.sessions.values():
            session.guild_ids.discard(guild.id)
        return payload

    def member(self, guild: Guild, fields: Fields) -> Member:
        user_id = fields.snowflake("user_id")
        member = guild.members.get(user_id)
        if member is None:
            raise BadInput("user_id", f"user {user_id} is not a member of guild {guild.id}", 10007)
        return member
