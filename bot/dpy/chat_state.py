"""The gateway parser, with MESSAGE_CREATE split into chat and the rest (bot/chat_light_path.py
says what chat is, and why it takes a light path).

discord.py builds its connection state in `AutoShardedClient._get_state`; Guildhouse overrides
that to return `ChatState` (`create`), whose `parse_message_create` hands chat to the sinks as a
`Chat` and everything else to discord.py's own parser, unchanged.

Relies on: `AutoShardedClient._get_state(**options)` making the connection state, called from
`Client.__init__`, with the client's `_handlers` and `_hooks`; `parse_message_create(data)`
called with each MESSAGE_CREATE payload; `ConnectionState._get_guild`, a guild's channels in
`Guild._channels`, `self_id`; the `Asset._from_guild_avatar`, `_from_avatar` and
`_from_default_avatar` constructors, for the same avatar URLs a `Member` gives.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import discord

from bot.chat_light_path import Chat, ChatSink, PrefixLookup, chat_of
from bot.dpy import parser_guard
from bot.dpy.guild_memory import LeanState

log = logging.getLogger(__name__)

RELIES_ON = (
    "discord.shard:AutoShardedClient._get_state(self, **options)",
    "discord.client:Client._handlers",
    "discord.client:Client._hooks",
    "discord.state:ConnectionState.parse_message_create(self, data)",
    "discord.state:ConnectionState._get_guild",
    "discord.state:ConnectionState.self_id",
    "discord.guild:Guild._channels",
    "discord.asset:Asset._from_guild_avatar",
    "discord.asset:Asset._from_avatar",
    "discord.asset:Asset._from_default_avatar",
)

_CHAT_TYPES = (discord.MessageType.default.value, discord.MessageType.reply.value)
_LAST_MESSAGE_CHANNELS = (discord.TextChannel, discord.VoiceChannel, discord.StageChannel)


def create(client: discord.AutoShardedClient, **options: Any) -> ChatState:
    """The connection state for `client`, as its `_get_state` makes it (discord.py's
    AutoShardedClient._get_state, with our class)."""
    return ChatState(
        dispatch=client.dispatch,
        handlers=client._handlers,
        hooks=client._hooks,
        http=client.http,
        **options,
    )


def _avatar_url(guild_id: int, user_id: int, data: dict[str, Any]) -> str:
    author = data["author"]
    return _avatar_url_of(
        guild_id,
        user_id,
        (data.get("member") or {}).get("avatar"),
        author.get("avatar"),
        str(author.get("discriminator") or "0"),
    )


# Memoised: the same members chat again and again, and building a discord.py Asset for its URL
# costs more than the rest of the message's Chat. The URL depends on nothing but the arguments.
@functools.lru_cache(maxsize=8192)
def _avatar_url_of(
    guild_id: int, user_id: int, member_avatar: str | None, avatar: str | None, discriminator: str
) -> str:
    # The state an Asset keeps is for reading the image, not for its URL.
    if member_avatar:
        return discord.Asset._from_guild_avatar(None, guild_id, user_id, member_avatar).url  # type: ignore[arg-type]
    if avatar:
        return discord.Asset._from_avatar(None, user_id, avatar).url  # type: ignore[arg-type]
    # As discord.User.default_avatar: by id for new usernames, by discriminator for old ones
    # (four digits from Discord; anything else is taken as a new username, not a failure).
    legacy = (
        len(discriminator) <= 4
        and discriminator.isascii()
        and discriminator.isdecimal()
        and int(discriminator) != 0
    )
    index = int(discriminator) % 5 if legacy else (user_id >> 22) % 6
    return discord.Asset._from_default_avatar(None, index).url  # type: ignore[arg-type]


class ChatState(LeanState):
    """discord.py's connection state, with MESSAGE_CREATE split into chat and the rest (and
    its guilds kept in less memory: bot/dpy/guild_memory.py)."""

    chat_sinks: list[ChatSink]
    chat_prefix: PrefixLookup

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chat_sinks = []
        self.chat_prefix = lambda _: None
        parser_guard.guard(self)  # an event it can't read is dropped, not the client

    def as_chat(self, data: dict[str, Any]) -> Chat | None:
        """The message as chat, or None if it must take the full path."""
        guild_id = data.get("guild_id")
        member = data.get("member")
        author = data.get("author") or {}
        if (
            guild_id is None
            or member is None
            or data.get("webhook_id") is not None
            or author.get("bot")
            or author.get("system")
            or data.get("type", 0) not in _CHAT_TYPES
        ):
            return None
        gid = int(guild_id)
        prefix = self.chat_prefix(gid)
        content: str = data.get("content") or ""
        if prefix is None or content.startswith(prefix):
            return None
        if content.startswith("<@") and self.self_id is not None:
            mention = content[2:].lstrip("!")
            if mention.startswith(str(self.self_id)):
                return None
        guild = self._get_guild(gid)
        if guild is None:
            return None
        channel = guild._channels.get(int(data["channel_id"]))
        if channel is None:  # a thread, or not cached: the full path knows what to do
            return None
        message_id = int(data["id"])
        if channel.__class__ in _LAST_MESSAGE_CHANNELS:
            channel.last_message_id = message_id
        user_id = int(author["id"])
        return Chat(
            message_id=message_id,
            guild_id=gid,
            channel_id=channel.id,
            parent_id=channel.category_id,
            author_id=user_id,
            role_ids=(gid, *(int(r) for r in member.get("roles", ()))),
            name=str(author.get("global_name") or author.get("username") or user_id),
            avatar_url=_avatar_url(gid, user_id, data),
            content=content,
        )

    def parse_message_create(self, data: Any) -> None:
        chat = self.as_chat(data) if self.chat_sinks else None
        if chat is None:
            super().parse_message_create(data)
            return
        self.deliver(chat)

    def deliver_message(self, message: discord.Message) -> None:
        """A message of the full path that is not addressed to the bot: chat, if it is any."""
        if self.chat_sinks:
            chat = chat_of(message)
            if chat is not None:
                self.deliver(chat)

    def deliver(self, chat: Chat) -> None:
        for sink in self.chat_sinks:
            try:
                sink(chat)
            except Exception:  # one feature's bug must not cost the others their chat
                log.exception("chat sink %r failed", sink)
