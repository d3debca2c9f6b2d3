"""The reminders' Discord side: sending a reminder (REST only: no cache needed, so a worker can
deliver before its shards are READY), and finding an earlier send by its nonce."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

import aiohttp
import discord

from bot.cogs.reminders.outbox import Due
from bot.cogs.reminders.render import Rendered
from bot.cogs.reminders.sender import DeliveryError
from bot.ui import fit_embed

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse

log = logging.getLogger(__name__)

# How far back to look for an earlier send; a channel busier than this between the first
# claim and the lease's end (tens of seconds) could hide one.
HISTORY_LIMIT = 100


def _error(exc: Exception) -> DeliveryError:
    if isinstance(exc, discord.Forbidden | discord.NotFound):
        return DeliveryError(f"{exc.status} {exc.text or exc.__class__.__name__}", permanent=True)
    if isinstance(exc, discord.HTTPException):
        # 4xx other than 429 won't get better by trying again; 5xx and 429 may.
        permanent = 400 <= exc.status < 500 and exc.status != 429
        return DeliveryError(f"{exc.status} {exc.text}", permanent=permanent)
    return DeliveryError(f"{exc.__class__.__name__}: {exc}", permanent=False)


class DiscordTransport:
    def __init__(self, bot: Guildhouse) -> None:
        self.bot = bot

    async def _channel(self, due: Due) -> discord.abc.Messageable:
        if due.via == "dm":
            return await self.bot.create_dm(discord.Object(id=due.author_id))
        return self.bot.get_partial_messageable(due.channel_id, guild_id=due.guild_id)

    async def find(self, due: Due, since: datetime) -> int | None:
        me = self.bot.user.id if self.bot.user else None
        try:
            channel = await self._channel(due)
            async for message in channel.history(limit=HISTORY_LIMIT):
                if message.created_at < since:
                    break
                if message.author.id != me:
                    continue
                for embed in message.embeds:
                    if embed.footer.text and due.nonce in embed.footer.text:
                        return message.id
        except (discord.HTTPException, aiohttp.ClientError, OSError) as exc:
            raise _error(exc) from exc
        return None

    async def send(self, due: Due, message: Rendered) -> int:
        embed = discord.Embed(
            title=message.title, description=message.description, colour=0xF0B232
        ).set_footer(text=message.footer)
        mentions = discord.AllowedMentions(
            everyone=False,
            roles=False,
            replied_user=False,
            users=[discord.Object(id=u) for u in message.mentions],
        )
        try:
            channel = await self._channel(due)
            sent = await channel.send(
                message.content, embed=fit_embed(embed), allowed_mentions=mentions
            )
        except (discord.HTTPException, aiohttp.ClientError, OSError) as exc:
            raise _error(exc) from exc
        return sent.id
