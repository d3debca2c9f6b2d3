"""What the users of the world do, as the control API asks: say something, run a slash
command, click a button, pick from a menu, submit a modal; and Discord's retry of an
interaction. A request that can't have come from Discord's client (no such channel, a user who
is not a member, a command the bot never registered) is a BadInput: a 400 naming the field,
with Discord's "Unknown ..." code where there is one. What Discord itself would refuse a real
user (a channel they can't write in) keeps Discord's answer (403 50013)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sandbox import components as ui
from sandbox.control import OptionResolver
from sandbox.errors import ApiError, BadInput
from sandbox.rest.base import COMMAND, COMPONENT, MAX_CONTENT, MODAL_SUBMIT, missing_permissions
from sandbox.world import (
    CHANNEL_CATEGORY,
    CHANNEL_DM,
    MANAGE_CHANNELS,
    MANAGE_MESSAGES,
    SEND_MESSAGES,
)

if TYPE_CHECKING:
    from sandbox.rest.base import State
    from sandbox.rest.messages import Messages
    from sandbox.world import Channel, Guild


MAX_AGE = 5 * 365 * 86400  # a message "sent" at most five years ago


class Users:
    def __init__(self, state: State, messages: Messages) -> None:
        self.state = state
        self.messages_api = messages
        self.world = state.world
        self.gateway = state.gateway
        self.last_post: dict[tuple[int, int], float] = {}  # (channel, user) -> when, slowmode

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

    async def user_message(
        self, channel_id: int, author_id: int, content: str, age: float = 0.0
    ) -> dict[str, Any]:
        """A user says something: MESSAGE_CREATE, as Discord would dispatch it. With `age`
        (seconds), a message sent that long ago: it is in the channel's history, and nothing
        is dispatched now. A member timed out, or without SEND_MESSAGES there, can't (50013)."""
        guild, ch = self._user_in_channel(channel_id, author_id, "author_id")
        if guild is not None:
            member = guild.members[author_id]
            until = member.communication_disabled_until
            timed_out = until is not None and until > time.time()
            perms = guild.permissions(author_id, ch)
            if timed_out or not perms & SEND_MESSAGES:
                raise missing_permissions()
            self._slowmode(ch, author_id, perms)
        if len(content) > MAX_CONTENT:
            raise BadInput("content", f"must be at most {MAX_CONTENT} characters")
        if not 0 <= age <= MAX_AGE:
            raise BadInput("age", f"must be between 0 and {MAX_AGE} seconds")
        at = time.time() - age if age else None
        msg = self.messages_api.make(ch, guild, author_id, {"content": content}, at=at)
        if ch.type == CHANNEL_DM:
            msg["channel_type"] = CHANNEL_DM
        if not age:
            await self.gateway.dispatch("MESSAGE_CREATE", msg, guild.id if guild else None)
        return msg

    def _slowmode(self, ch: Channel, user_id: int, perms: int) -> None:
        """A member posts at most once per `rate_limit_per_user` seconds in a channel, unless
        they may manage messages or the channel (Discord's 429, code 20016)."""
        if not ch.rate_limit_per_user or perms & (MANAGE_MESSAGES | MANAGE_CHANNELS):
            return
        now = time.monotonic()
        last = self.last_post.get((ch.id, user_id))
        if last is not None and now - last < ch.rate_limit_per_user:
            retry = ch.rate_limit_per_user - (now - last)
            raise ApiError(
                429,
                20016,
                "This action cannot be performed due to slowmode rate limit "
                f"(retry in {retry:.1f} s).",
            )
        self.last_post[(ch.id, user_id)] = now

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
                for c in self.state.commands.get(scope, {}).values()
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
        message = self.state.messages.get(ch.id, {}).get(message_id)
        if message is None or self.state.ephemeral.get(message_id, user_id) != user_id:
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
        opened = self.state.modals.get(user_id)
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
            message = self.state.messages.get(ch.id, {}).get(int(opened["message_id"]))
        del self.state.modals[user_id]  # submitting closes it
        return await self._deliver(
            guild, ch, user_id, MODAL_SUBMIT, data, message=message, opened_by=opened["opened_by"]
        )

    async def redeliver(self, interaction_id: int) -> dict[str, Any]:
        """Discord delivers an interaction again, same id and token (a retry)."""
        state = next(
            (s for s in self.state.interactions.values() if s["id"] == str(interaction_id)), None
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
            (s for s in self.state.interactions.values() if s["id"] == str(interaction_id)), None
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
        opened = self.state.modals.get(user_id)
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
        self.state.interactions[token] = {
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
