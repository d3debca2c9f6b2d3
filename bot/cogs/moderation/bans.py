"""Bans the bot didn't make, and tempbans' ends.

**Ban sync.** GUILD_BAN_ADD/REMOVE (the `moderation` intent) reach the worker whose shard has
the server. A ban or unban this worker made itself is expected (`Moderator.expect`) and only
updates the known bans; any other one (made in Discord's own UI, or by another bot) becomes a
case, its moderator and reason read from the server's audit log when the bot may read it
(View Audit Log), else "unknown". At start, every server that uses moderation on this worker's
shards has its ban list read (`GET /guilds/{id}/bans`, 1,000 a page, through discord.py's
paginator) and compared with the bans known from last time: bans made or lifted while the bot
was away become cases too. The first read of a server records its list without cases. A
PostgreSQL outage during the sync is the worker's one outage WARNING; the sync waits for the
outage to end and goes on where it was.

**Tempban ends** are jobs of kind `moderation.unban` (bot/jobs), one per tempban case, run by
the cluster whose shards have the server: exactly once across clusters, restarts and a
SIGKILLed claimer. They are claimed only once the worker is ready (`Kind.available`: the end
needs the guild cache), and the runner is woken in `on_ready`, so an end that fell due while
the bot was down runs as soon as the shards are ready, on its first attempt. The unban is
idempotent (a second try finds no ban: 10026), and the unban case is written in the
transaction that marks the job done (`run.complete()`), so it is recorded once. A tempban
whose case is no longer the member's last ban or unban (lifted by hand, or replaced by a later
ban) ends without touching Discord.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, TypeVar

import discord
from discord.ext import commands

from bot import jobs, outages
from bot.cogs.moderation import store
from bot.cogs.moderation.actions import UNKNOWN_BAN, Moderator
from bot.cogs.moderation.store import NewCase
from ipc.backoff import Backoff

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse

log = logging.getLogger(__name__)
T = TypeVar("T")

AUDIT_LOOKBACK = 10  # audit-log entries looked through for the ban's author
RETRY_GUILD_UNAVAILABLE = 60.0


class BanSync(commands.Cog, name="Moderation sync"):
    """Bans made outside the bot become cases; tempbans end by themselves."""

    def __init__(self, bot: Guildhouse, mod: Moderator) -> None:
        self.bot = bot
        self.mod = mod
        self._synced = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def cog_load(self) -> None:
        # Claimed only once the shards are ready (the end needs the guild cache), and the
        # runner is woken then (on_ready): an end that fell due while the bot was down runs
        # at once after start, not after a retry's delay.
        await jobs.install(
            self.bot,
            jobs.Kind(store.UNBAN_JOB, self.end_tempban, lease=60.0, available=self.bot.is_ready),
        )
        if self.bot.is_ready():
            self._start_sync()

    async def cog_unload(self) -> None:
        await jobs.uninstall(self.bot, store.UNBAN_JOB)
        for task in self._tasks:
            task.cancel()

    # -- tempban ends --------------------------------------------------------------------------

    async def end_tempban(self, run: jobs.Run) -> None:
        payload = run.job.payload
        guild_id, user_id, number = payload["guild_id"], payload["user_id"], payload["case"]
        latest = await store.latest_ban_case(self.bot.pool, guild_id, user_id)
        if latest is None or latest.number != number:
            return  # lifted by hand, or replaced by a later ban: nothing to end
        guild = self.bot.get_guild(guild_id)
        if guild is None:
            raise jobs.Retry("the server is not available", delay=RETRY_GUILD_UNAVAILABLE)
        me = guild.me
        self.mod.expect(guild_id, user_id, "unban")
        try:
            await guild.unban(
                discord.Object(user_id), reason=f"Guildhouse: tempban (case {number}) ended"
            )
        except discord.NotFound as exc:
            if exc.code != UNKNOWN_BAN:
                raise
            # Already lifted: by an earlier attempt of this job (killed before it could record
            # the case), or in Discord meanwhile; either way the case below says it ended.
        async with run.complete() as conn:
            case = await store.open_case(
                conn,
                NewCase(
                    guild_id=guild_id,
                    action="unban",
                    target_id=user_id,
                    moderator_id=me.id,
                    reason=f"Tempban ended (case {number})",
                    cites=[number],
                    details={"late_by_s": round(run.job.late_by)} if run.job.late else {},
                ),
            )
            await store.note_ban(conn, guild_id, user_id, False)
        await self.mod.post(case)

    # -- gateway events ------------------------------------------------------------------------

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        jobs.of(self.bot).wake()  # tempban ends held back until now (Kind.available)
        self._start_sync()

    @commands.Cog.listener()
    async def on_member_ban(
        self, guild: discord.Guild, user: discord.User | discord.Member
    ) -> None:
        await self._event(guild, user.id, banned=True)

    @commands.Cog.listener()
    async def on_member_unban(self, guild: discord.Guild, user: discord.User) -> None:
        await self._event(guild, user.id, banned=False)

    async def _event(self, guild: discord.Guild, user_id: int, *, banned: bool) -> None:
        ours = self.mod.expected(guild.id, user_id, "ban" if banned else "unban")
        try:
            if await store.known_bans(self.bot.pool, guild.id) is None:
                # The server's first ban event: its list (with this change in it) becomes the
                # starting point, so that bans made while the bot is away are found at start.
                await self.sync(guild)
                news = True
            else:
                news = await store.note_ban(self.bot.pool, guild.id, user_id, banned)
            if ours or not news:
                return
            await self._outside_case(guild, user_id, banned=banned)
        except (discord.HTTPException, *jobs.DB_ERRORS) as exc:
            log.warning("ban sync: could not record a ban event in %s: %s", guild.id, exc)

    async def _outside_case(
        self, guild: discord.Guild, user_id: int, *, banned: bool, reason: str | None = None
    ) -> None:
        author, audit_reason = await self._author(guild, user_id, banned=banned)
        if self.bot.user is not None and author == self.bot.user.id:
            return  # ours, from a path that didn't expect it (another process): already a case
        await self.mod.record(
            NewCase(
                guild_id=guild.id,
                action="ban" if banned else "unban",
                target_id=user_id,
                moderator_id=author,
                reason=audit_reason or reason,
                details={"outside": True},
            )
        )

    async def _author(
        self, guild: discord.Guild, user_id: int, *, banned: bool
    ) -> tuple[int | None, str | None]:
        """Who banned (or unbanned) the user and why, from the audit log if we may read it."""
        if not guild.me.guild_permissions.view_audit_log:
            return None, None
        action = discord.AuditLogAction.ban if banned else discord.AuditLogAction.unban
        try:
            async for entry in guild.audit_logs(limit=AUDIT_LOOKBACK, action=action):
                if entry.target is not None and entry.target.id == user_id:
                    return (entry.user.id if entry.user else None), entry.reason
        except discord.HTTPException as exc:
            log.info("ban sync: no audit log for %s: %s", guild.id, exc)
        return None, None

    # -- start-up sync -------------------------------------------------------------------------

    def _start_sync(self) -> None:
        if self._synced or self.bot.rest_only:
            return
        self._synced = True
        task = asyncio.create_task(self.sync_all(), name="moderation-ban-sync")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def sync_all(self) -> None:
        backoff = Backoff(first=1.0, cap=30.0)
        try:
            ids = await _past_outages(partial(store.moderated_guilds, self.bot.pool), backoff)
        except jobs.DB_ERRORS as exc:
            log.warning("ban sync: could not list servers to sync: %s", exc)
            return
        for guild_id in ids:
            guild = self.bot.get_guild(guild_id)
            if guild is None:
                continue  # another cluster's, or gone
            try:
                await _past_outages(partial(self.sync, guild), backoff)
            except (discord.HTTPException, *jobs.DB_ERRORS) as exc:
                log.warning("ban sync: server %s not synced: %s", guild_id, exc)

    async def sync(self, guild: discord.Guild) -> tuple[set[int], set[int]]:
        """Read the server's bans; make a case of each ban made or lifted since the last read.
        Returns (new bans, lifted bans)."""
        if not guild.me.guild_permissions.ban_members:
            return set(), set()
        current: dict[int, str | None] = {}
        async for entry in guild.bans(limit=None):  # pages of 1,000, as Discord allows
            current[entry.user.id] = entry.reason
        known = await store.known_bans(self.bot.pool, guild.id)
        await store.replace_bans(self.bot.pool, guild.id, current)
        if known is None:
            return set(), set()  # the first read: what is banned now is the starting point
        added = set(current) - known
        lifted = known - set(current)
        for user_id in sorted(added):
            await self._outside_case(guild, user_id, banned=True, reason=current[user_id])
        for user_id in sorted(lifted):
            await self._outside_case(guild, user_id, banned=False)
        return added, lifted


async def _past_outages(call: Callable[[], Awaitable[T]], backoff: Backoff) -> T:
    """`call()`, again after a backoff for as long as it meets a PostgreSQL outage (the
    worker's one outage WARNING says so); any other error is the caller's."""
    while True:
        try:
            return await call()
        except jobs.DB_ERRORS as exc:
            if outages.note(exc, "the ban sync") is None:
                raise
        await asyncio.sleep(backoff.next())
