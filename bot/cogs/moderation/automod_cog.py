"""Automod on the chat light path: mention spam, invite links and a per-server word list, each
with an action (delete; delete and warn; delete and time out). Staff are exempt.

The sink runs inside the gateway parser (bot/chat_light_path.py): it looks the server's rules
up in this worker's cache (bot/guild_cache.py, kept current across clusters), judges the text
with plain regular expressions (automod_rules.py) and starts a task only for a message that
breaks a rule (or whose server's rules aren't cached yet). It costs no member cache: the member
is fetched only to warn or time them out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import replace
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot import audit
from bot.chat_light_path import Chat
from bot.checks import Level, requires
from bot.cogs.moderation import punish, store
from bot.cogs.moderation.actions import Moderator, Refused, audit_reason, discord_call
from bot.cogs.moderation.automod_rules import (
    MAX_WORDS,
    Automod,
    Breach,
    check_word,
    judge,
    mention_limit,
    parse_action,
)
from bot.cogs.moderation.store import NewCase
from bot.errors import BadInput
from bot.guild_cache import GuildCache
from bot.ui import safe_text

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse

log = logging.getLogger(__name__)
Ctx = commands.Context["Guildhouse"]
STAFF_PERMISSIONS = (
    "administrator",
    "manage_guild",
    "manage_messages",
    "kick_members",
    "ban_members",
    "moderate_members",
)
Switch = Literal["delete", "warn", "timeout", "off"]


class AutomodCog(commands.Cog, name="Automod"):
    """Delete (and warn or time out) mention spam, invite links and blocked words."""

    def __init__(self, bot: Guildhouse, mod: Moderator) -> None:
        self.bot = bot
        self.mod = mod
        self.rules: GuildCache[Automod] = GuildCache(
            bot.redis,
            bot.keys("events", "automod"),
            lambda guild_id: store.get_automod(bot.pool, guild_id),
            what="automod rules",
            fallback=lambda _: Automod(),
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self.acted = 0  # messages acted on (tests wait on it)
        self._load_failed = False  # logged once a worker

    async def cog_load(self) -> None:
        if self.bot.rest_only:
            return  # `guildhouse commands sync`: no Redis, no chat
        await self.rules.start()
        self.bot.add_chat_sink(self.take)

    async def cog_unload(self) -> None:
        self.bot.remove_chat_sink(self.take)
        for task in list(self._tasks):
            task.cancel()
        if not self.bot.rest_only:
            await self.rules.stop()

    # -- the sink ------------------------------------------------------------------------------

    def take(self, chat: Chat) -> None:
        rules = self.rules.cached(chat.guild_id)
        if rules is None:
            self._spawn(self._judge_later(chat))
        elif rules.active and (breach := judge(chat.content, rules)) is not None:
            self._spawn(self._act(chat, breach))

    def _spawn(self, work: Coroutine[object, object, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _judge_later(self, chat: Chat) -> None:
        try:
            rules = await self.rules.get(chat.guild_id)
        except Exception as exc:  # a chat message must never raise out of a task unseen
            if not self._load_failed:
                log.warning("automod: could not load a server's rules: %s", exc)
                self._load_failed = True
            return
        if rules.active and (breach := judge(chat.content, rules)) is not None:
            await self._act(chat, breach)

    async def _staff(self, guild: discord.Guild, chat: Chat) -> bool:
        if chat.author_id == guild.owner_id:
            return True
        value = 0
        for role_id in chat.role_ids:
            role = guild.get_role(role_id)
            if role is not None:
                value |= role.permissions.value
        perms = discord.Permissions(value)
        if any(getattr(perms, p) for p in STAFF_PERMISSIONS):
            return True
        settings = await self.bot.guild_settings.get(guild.id)  # a message, not a command
        return not (settings.mod_roles | settings.admin_roles).isdisjoint(chat.role_ids)

    async def _act(self, chat: Chat, breach: Breach) -> None:
        guild = self.bot.get_guild(chat.guild_id)
        if guild is None or await self._staff(guild, chat):
            return
        reason = f"Automod: {breach.why}"
        try:
            await self.bot.http.delete_message(
                chat.channel_id, chat.message_id, reason=audit_reason(None, reason)
            )
            if breach.action.name != "delete":
                await self._punish(guild, chat, breach, reason)
        except (discord.HTTPException, Refused) as exc:
            log.info("automod: could not act on a message in %s: %s", guild.id, exc)
        except Exception:
            log.exception("automod: acting on a message in %s failed", guild.id)
        finally:
            self.acted += 1

    async def _punish(self, guild: discord.Guild, chat: Chat, breach: Breach, reason: str) -> None:
        member = await guild.fetch_member(chat.author_id)
        me = guild.me
        if me.top_role.position <= member.top_role.position:
            return  # they rank at or above the bot: the deletion is all it can do
        new = NewCase(
            guild_id=guild.id,
            action=breach.action.name,
            target_id=member.id,
            moderator_id=me.id,
            reason=reason,
            channel_id=chat.channel_id,
            details={"automod": breach.rule},
        )
        if breach.action.name == "warn":
            case, _, threshold = await punish.warn(self.mod, member, new)
            told = f"{member.mention}, that broke this server's rules: warned (case {case.number})."
            told = f"{told} {threshold}".strip()
        else:
            span = breach.action.timeout
            assert span is not None
            until = discord.utils.utcnow() + span
            await discord_call(
                "time them out", member.timeout(until, reason=audit_reason(me, reason))
            )
            case = await self.mod.record(replace(new, duration=span, expires_at=until))
            told = (
                f"{member.mention}, that broke this server's rules: timed out (case {case.number})."
            )
        channel = guild.get_channel(chat.channel_id)
        if isinstance(channel, discord.abc.Messageable):
            await channel.send(
                told, allowed_mentions=discord.AllowedMentions(users=[member], roles=False)
            )

    # -- settings (admins) ---------------------------------------------------------------------

    async def _change(self, ctx: Ctx, action: str, new: Automod) -> None:
        assert ctx.guild is not None
        old = await self.rules.get(ctx.guild.id)
        await audit.audited_settings(
            self.bot, ctx, action, old=old, new=new, save=store.automod_saver(ctx.guild.id)
        )
        await self.rules.announce(ctx.guild.id)
        await ctx.send("Automod: " + "; ".join(new.describe()) + ".")

    async def _current(self, ctx: Ctx) -> Automod:
        assert ctx.guild is not None
        return await self.rules.get(ctx.guild.id)

    @commands.hybrid_group(
        name="automod",
        fallback="show",
        extras={
            "examples": [
                "automod",
                "automod mentions 5 timeout 10m",
                "automod invites delete",
                "automod word add badword",
                "automod wordaction warn",
            ]
        },
    )
    @commands.guild_only()
    @requires(Level.ADMIN)
    async def automod(self, ctx: Ctx) -> None:
        """Show this server's automod rules (admins)."""
        rules = await self._current(ctx)
        words = ", ".join(f"`{safe_text(w, 50)}`" for w in rules.words) or "none"
        await ctx.send("Automod: " + "; ".join(rules.describe()) + f".\nBlocked words: {words}")

    @automod.command(name="mentions", extras={"examples": ["automod mentions 5 timeout 10m"]})
    @commands.guild_only()
    @requires(Level.ADMIN)
    @app_commands.describe(
        limit="Mentions in one message that trigger it (3-50)",
        action="delete, warn, timeout, or off",
        duration="For timeout: 10m, 1h (default 10m)",
    )
    async def automod_mentions(
        self, ctx: Ctx, limit: int, action: Switch, duration: str | None = None
    ) -> None:
        """Act on messages that mention many people at once."""
        rules = await self._current(ctx)
        if action == "off":
            new = rules.with_changes(mention_limit=None, mentions=None)
        else:
            new = rules.with_changes(
                mention_limit=mention_limit(limit), mentions=parse_action(action, duration)
            )
        await self._change(ctx, "automod.mentions", new)

    @automod.command(name="invites", extras={"examples": ["automod invites delete"]})
    @commands.guild_only()
    @requires(Level.ADMIN)
    @app_commands.describe(action="delete, warn, timeout, or off", duration="For timeout")
    async def automod_invites(self, ctx: Ctx, action: Switch, duration: str | None = None) -> None:
        """Act on messages with invite links to other servers."""
        rules = await self._current(ctx)
        invites = None if action == "off" else parse_action(action, duration)
        await self._change(ctx, "automod.invites", rules.with_changes(invites=invites))

    @automod.command(name="word", extras={"examples": ["automod word add badword"]})
    @commands.guild_only()
    @requires(Level.ADMIN)
    @app_commands.describe(change="add or remove", word="The word or phrase (whole words match)")
    async def automod_word(self, ctx: Ctx, change: Literal["add", "remove"], *, word: str) -> None:
        """Add a word to the server's blocked words, or remove one."""
        rules = await self._current(ctx)
        word = check_word(word)
        if change == "add":
            if word in rules.words:
                raise BadInput("That word is already blocked.")
            if len(rules.words) >= MAX_WORDS:
                raise BadInput(f"At most {MAX_WORDS} blocked words; remove one first.")
            words = (*rules.words, word)
        else:
            if word not in rules.words:
                raise BadInput("That word is not blocked.")
            words = tuple(w for w in rules.words if w != word)
        await self._change(ctx, f"automod.word.{change}", rules.with_changes(words=words))

    @automod.command(name="wordaction", extras={"examples": ["automod wordaction warn"]})
    @commands.guild_only()
    @requires(Level.ADMIN)
    @app_commands.describe(action="delete, warn or timeout", duration="For timeout")
    async def automod_wordaction(
        self, ctx: Ctx, action: Literal["delete", "warn", "timeout"], duration: str | None = None
    ) -> None:
        """Choose what happens to a message with a blocked word."""
        rules = await self._current(ctx)
        new = rules.with_changes(words_action=parse_action(action, duration))
        await self._change(ctx, "automod.wordaction", new)
