"""Bans (with the purge of the banned user's recent messages) and the guild's audit log."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sandbox.rest.base import Resource, RouteSpec, audit_reason, path_id, unknown
from sandbox.rest.form import Form
from sandbox.world import BAN_MEMBERS, VIEW_AUDIT_LOG, snowflake_time

if TYPE_CHECKING:
    from aiohttp import web

    from sandbox.rest.base import State
    from sandbox.rest.messages import Messages
    from sandbox.world import Guild

PURGE_MAX = 604800  # delete_message_seconds: up to 7 days of the user's messages
BANS_PAGE = 1000
AUDIT_PAGE = 100
MEMBER_BAN_ADD, MEMBER_BAN_REMOVE = 22, 23  # audit log action types


class Bans(Resource):
    def __init__(self, state: State, messages: Messages) -> None:
        super().__init__(state)
        self.messages = messages

    def routes(self) -> list[RouteSpec]:
        one = "/guilds/{guild_id}/bans/{user_id}"
        return [
            RouteSpec("GET", "/guilds/{guild_id}/bans", self.list_bans),
            RouteSpec("GET", one, self.get_ban),
            RouteSpec("PUT", one, self.ban),
            RouteSpec("DELETE", one, self.unban),
            RouteSpec("GET", "/guilds/{guild_id}/audit-logs", self.audit_log),
        ]

    def _ban(self, guild: Guild, user_id: int) -> dict[str, Any]:
        return {"reason": guild.bans[user_id], "user": self.world.users[user_id].to_dict()}

    async def list_bans(
        self, guild_id: str, request: web.Request, **_: Any
    ) -> list[dict[str, Any]]:
        """In ascending order of user id; `before` or `after` (a user id) pages, `before`
        winning when both are given; `limit` 1 to 1,000."""
        guild = self.state.guild(guild_id)
        form = Form(dict(request.query))
        limit = form.integer("limit", low=1, high=BANS_PAGE, default=BANS_PAGE)
        before, after = form.snowflake("before"), form.snowflake("after")
        form.check()
        self.state.require(guild, None, BAN_MEMBERS)
        ids = sorted(guild.bans)
        if before is not None:
            ids = [u for u in ids if u < before][-limit:]
        else:
            ids = [u for u in ids if after is None or u > after][:limit]
        return [self._ban(guild, u) for u in ids]

    async def get_ban(self, guild_id: str, user_id: str, **_: Any) -> dict[str, Any]:
        guild = self.state.guild(guild_id)
        self.state.require(guild, None, BAN_MEMBERS)
        uid = path_id(user_id)
        if uid not in guild.bans:
            raise unknown("ban")
        return self._ban(guild, uid)

    async def ban(
        self, guild_id: str, user_id: str, request: web.Request, body: Any, **_: Any
    ) -> None:
        guild = self.state.guild(guild_id)
        # Discord takes these in the JSON body (as documented) or the query string (as
        # discord.py sends them).
        form = Form(body if body is not None else dict(request.query), optional=True)
        seconds = form.integer("delete_message_seconds", low=0, high=PURGE_MAX, default=None)
        days = form.integer("delete_message_days", low=0, high=7, default=None)
        form.check()
        if seconds is None:
            seconds = (days or 0) * 86400
        self.state.require(guild, None, BAN_MEMBERS)
        uid = path_id(user_id)
        if uid not in self.world.users:
            raise unknown("user")
        if uid in guild.members:
            self.state.above(guild, guild.members[uid])
        await self.add(guild, uid, self.world.bot.id, audit_reason(request), seconds)

    async def add(
        self, guild: Guild, uid: int, moderator: int, reason: str | None, purge: int = 0
    ) -> None:
        """A ban by `moderator` (the bot, or someone in Discord's own UI): the member leaves,
        GUILD_BAN_ADD, an audit-log entry, and their messages of the last `purge` s go."""
        if uid in guild.members:
            await self.state.remove_member(guild, uid)
        guild.bans[uid] = reason
        await self.state.audit(
            guild, MEMBER_BAN_ADD, user_id=moderator, target_id=uid, reason=reason
        )
        await self.gateway.dispatch(
            "GUILD_BAN_ADD",
            {"guild_id": str(guild.id), "user": self.world.users[uid].to_dict()},
            guild.id,
        )
        if purge > 0:
            since = time.time() - purge
            for ch in guild.channels.values():
                ids = [
                    mid
                    for mid, m in self.state.messages.get(ch.id, {}).items()
                    if m["author"]["id"] == str(uid) and snowflake_time(mid) >= since
                ]
                await self.messages.remove(guild, ch, ids)

    async def unban(self, guild_id: str, user_id: str, request: web.Request, **_: Any) -> None:
        guild = self.state.guild(guild_id)
        self.state.require(guild, None, BAN_MEMBERS)
        uid = path_id(user_id)
        if uid not in guild.bans:
            raise unknown("ban")
        await self.remove(guild, uid, self.world.bot.id, audit_reason(request))

    async def remove(self, guild: Guild, uid: int, moderator: int, reason: str | None) -> None:
        del guild.bans[uid]
        await self.state.audit(
            guild, MEMBER_BAN_REMOVE, user_id=moderator, target_id=uid, reason=reason
        )
        await self.gateway.dispatch(
            "GUILD_BAN_REMOVE",
            {"guild_id": str(guild.id), "user": self.world.users[uid].to_dict()},
            guild.id,
        )

    async def audit_log(self, guild_id: str, request: web.Request, **_: Any) -> dict[str, Any]:
        """Newest first; filtered by `user_id` (who acted), `target_id` and `action_type`, paged by
        `before`/`after` (entry ids), `limit` 1 to 100 (50)."""
        guild = self.state.guild(guild_id)
        form = Form(dict(request.query))
        user_id, target_id = form.snowflake("user_id"), form.snowflake("target_id")
        action = form.integer("action_type", low=1, high=255)
        before, after = form.snowflake("before"), form.snowflake("after")
        limit = form.integer("limit", low=1, high=AUDIT_PAGE, default=50)
        form.check()
        self.state.require(guild, None, VIEW_AUDIT_LOG)
        entries = [
            e
            for e in reversed(self.state.audit_logs.get(guild.id, []))
            if (user_id is None or e["user_id"] == str(user_id))
            and (target_id is None or e["target_id"] == str(target_id))
            and (action is None or e["action_type"] == action)
            and (before is None or int(e["id"]) < before)
            and (after is None or int(e["id"]) > after)
        ]
        # After `after`: the oldest ones after it (still newest first); else the newest.
        entries = entries[-limit:] if after is not None and before is None else entries[:limit]
        people = {int(e["user_id"]) for e in entries} | {
            int(e["target_id"]) for e in entries if e["target_id"] and e["action_type"] >= 20
        }
        return {
            "audit_log_entries": entries,
            "users": [
                self.world.users[u].to_dict() for u in sorted(people) if u in self.world.users
            ],
            "application_commands": [],
            "auto_moderation_rules": [],
            "guild_scheduled_events": [],
            "integrations": [],
            "threads": [],
            "webhooks": [],
        }
