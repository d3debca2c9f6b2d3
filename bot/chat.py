"""Chat on a light path: guild messages that are not commands reach the features that count
them (XP, statistics) as a small `Chat` record, not as a discord.py `Message`.

Most of what a community bot receives is chat, and for chat discord.py's path is expensive:
it builds a `Message` (author, member, mentions, attachments, embeds, components...) and starts
one task per `on_message` listener, and the command framework then looks for a command in it.
A `Chat` is built from the gateway payload in the parser, and handed to the registered sinks
(plain functions; they start their own work), so chat costs a fraction of that.

What takes the light path: a message in a guild channel the bot has cached, by a person (not a
bot, webhook or the system), of the default or reply type, that does not start with the guild's
prefix or a mention of the bot, in a guild whose prefix this worker has cached (its first
message in a while takes the full path, which caches it). Everything else takes discord.py's
full path, unchanged: `on_message` listeners, commands. Of that, a guild message by a member
that turns out not to be addressed to the bot is chat too: the bot hands it to the same sinks
as a `Chat` (`chat_of`), so a feature that counts chat has one input, whichever path a message
took. A cog that needs every message as a `Message` can't rely on `on_message` for chat.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import discord
from discord.state import AutoShardedConnectionState
from discord.utils import snowflake_time

log = logging.getLogger(__name__)

ChatSink = Callable[["Chat"], None]
# guild id -> its command prefix, if this worker has it cached (None: not cached).
PrefixLookup = Callable[[int], str | None]

_CHAT_TYPES = (discord.MessageType.default.value, discord.MessageType.reply.value)
_LAST_MESSAGE_CHANNELS = (discord.TextChannel, discord.VoiceChannel, discord.StageChannel)


@dataclass(frozen=True, slots=True)
class Chat:
    message_id: int
    guild_id: int
    channel_id: int
    parent_id: int | None  # the channel's category
    author_id: int
    role_ids: tuple[int, ...]  # @everyone (the guild's id) first, as discord.py's Member.roles
    name: str  # global display name, else username
    avatar_url: str  # the member's server avatar, else their own, else Discord's default
    content: str

    @property
    def created_at(self) -> datetime:
        return snowflake_time(self.message_id)


def _avatar_url(state: Any, guild_id: int, user_id: int, data: dict[str, Any]) -> str:
    member_avatar = (data.get("member") or {}).get("avatar")
    if member_avatar:
        return discord.Asset._from_guild_avatar(state, guild_id, user_id, member_avatar).url
    author = data["author"]
    if author.get("avatar"):
        return discord.Asset._from_avatar(state, user_id, author["avatar"]).url
    # As discord.User.default_avatar: by id for new usernames, by discriminator for old ones.
    discriminator = str(author.get("discriminator") or "0")
    index = (user_id >> 22) % 6 if discriminator in ("0", "0000") else int(discriminator) % 5
    return discord.Asset._from_default_avatar(state, index).url


def chat_of(message: discord.Message) -> Chat | None:
    """A guild message that took discord.py's full path, as chat (None if it is not: no guild,
    a bot's, a webhook's, an author who is not a member)."""
    author = message.author
    guild = message.guild
    if (
        guild is None
        or author.bot
        or message.webhook_id is not None
        or not isinstance(author, discord.Member)
    ):
        return None
    channel = message.channel
    return Chat(
        message_id=message.id,
        guild_id=guild.id,
        channel_id=channel.id,
        parent_id=getattr(channel, "category_id", None),
        author_id=author.id,
        role_ids=tuple(r.id for r in author.roles),
        name=author.global_name or author.name,
        avatar_url=author.display_avatar.url,
        content=message.content,
    )


class ChatState(AutoShardedConnectionState):
    """discord.py's connection state, with MESSAGE_CREATE split into chat and the rest."""

    chat_sinks: list[ChatSink]
    chat_prefix: PrefixLookup

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chat_sinks = []
        self.chat_prefix = lambda _: None

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
            avatar_url=_avatar_url(self, gid, user_id, data),
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
