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

The parser that makes a `Chat` of a gateway payload is discord.py's, patched:
bot/dpy/chat_state.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple

import discord
from discord.utils import snowflake_time

ChatSink = Callable[["Chat"], None]
# guild id -> its command prefix, if this worker has it cached (None: not cached).
PrefixLookup = Callable[[int], str | None]


class Chat(NamedTuple):
    """One chat message (a named tuple: one is made per message, and a tuple is the cheapest
    immutable record Python builds)."""

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
