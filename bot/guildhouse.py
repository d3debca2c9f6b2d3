"""The bot that runs in each worker: an AutoShardedBot over this worker's shard range."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from typing import Any

import asyncpg
import discord
import redis.asyncio as aioredis
from discord.ext import commands
from discord.utils import MISSING

from bot import (
    command_throttles,
    components,
    context,
    errors,
    gate,
    logcontext,
    metrics,
    outages,
    rest_limits,
    status,
)
from bot.chat_light_path import ChatSink
from bot.config import WorkerConfig
from bot.context import CommandContext
from bot.dpy import chat_state, http_session
from bot.dpy.chat_state import ChatState
from bot.guild_settings import GuildSettingsStore
from bot.rpc import Answers
from bot.shard_lifecycle import ClientClosing, ShardLifecycle
from bot.shards import GuildArrivals, ShardState, ShardTracker
from bot.status import WorkerStatus
from ipc.bus import Bus
from ipc.client import Keys
from ipc.identify import IdentifyQueue
from ipc.ratelimit import GlobalLimiter, InvalidRequestGuard
from ipc.registry import ClusterInfo, Registry
from ipc.throttle import Throttle

log = logging.getLogger(__name__)

# Cogs loaded in every worker. A feature is one module (or package) here.
EXTENSIONS = (
    "bot.cogs.general",
    "bot.cogs.admin",
    "bot.cogs.tabletop",
    "bot.cogs.reminders",
    "bot.cogs.leveling",
    "bot.cogs.moderation",
    "bot.cogs.points",
    "bot.cogs.predictions",
    "bot.cogs.stats",
    "bot.cogs.aliases",
    "bot.cogs.analytics",
    "bot.cogs.feedback",
    "bot.cogs.polls",
)


def intents() -> discord.Intents:
    """The gateway intents we ask for, and why.

    - guilds: channels, roles and guild lifecycle (GUILD_CREATE/DELETE) for permissions and the
      guilds table.
    - guild_messages, dm_messages, message_content: prefix commands read message text.
      message_content is privileged: enable it for the bot in the Developer Portal.
    - moderation: GUILD_BAN_ADD/REMOVE, so a ban made in Discord's own UI becomes a case
      (bot/cogs/moderation/bans.py).
    - members: GUILD_MEMBER_ADD/REMOVE, for the statistics' member counts and joins
      (bot/cogs/stats/). Privileged: enable it in the Developer Portal. The member cache and
      chunking stay off (see Guildhouse.__init__): the events are counted, not kept.
    - presences is NOT requested: online counts come from `approximate_presence_count`; the
      member who sends a message comes with the message.
    """
    flags = discord.Intents.none()
    flags.guilds = True
    flags.guild_messages = True
    flags.dm_messages = True
    flags.message_content = True
    flags.guild_reactions = True
    flags.moderation = True
    flags.members = True
    return flags


# Tasks discord.py creates per incoming message / interaction (see Client._schedule_event and
# CommandTree._from_interaction), and those that answer a component; draining waits for these
# to finish.
_COMMAND_TASKS = ("discord.py: on_message", "CommandTree-invoker", components.TASK_NAME)


class Tree(discord.app_commands.CommandTree["Guildhouse"]):
    async def interaction_check(self, interaction: discord.Interaction[Guildhouse]) -> bool:
        if interaction.client.accepting:
            return True
        await interaction.response.send_message(
            "I'm restarting; try again in a few seconds.", ephemeral=True
        )
        return False


class Guildhouse(commands.AutoShardedBot):
    def __init__(
        self,
        config: WorkerConfig,
        *,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        rest_only: bool = False,
    ) -> None:
        # rest_only: a bot that only logs in over REST (`guildhouse commands sync`): its pool
        # and Redis client are never used, so nothing starts that would reach them.
        self.rest_only = rest_only
        keys = Keys(config.redis_prefix)
        self.rest_limiter = GlobalLimiter(
            redis, keys, rate=config.rest_rate, clusters=config.cluster_count
        )
        self.invalid_guard = InvalidRequestGuard(redis, keys)
        # Guildhouse has no voice features; don't warn about voice libraries at every start.
        # Public, documented class attributes, not a patch of internals (those are bot/dpy/).
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        super().__init__(
            command_prefix=gate.prefix_for,
            intents=intents(),
            shard_ids=list(config.shard_ids),
            shard_count=config.shard_count,
            help_command=None,  # our own hybrid `help`, filtered by permission level
            case_insensitive=True,
            strip_after_prefix=True,
            owner_ids=set(config.owner_ids),
            # Nothing we send pings anyone unless a feature asks for it explicitly.
            allowed_mentions=discord.AllowedMentions.none(),
            # No member list needed; don't chunk at startup.
            chunk_guilds_at_startup=False,
            member_cache_flags=discord.MemberCacheFlags.none(),
            max_messages=None,
            tree_cls=Tree,
        )
        if not rest_only:
            # Every REST call through the shared limiter (bot/rest_limits.py).
            http_session.install(
                self.http,
                rest_limits.middleware(
                    self.rest_limiter, self.invalid_guard, cluster=str(config.cluster_id)
                ),
            )
        self.config = config
        self.pool = pool
        self.redis = redis
        self.keys = keys
        self.guild_settings = GuildSettingsStore(pool, redis, self.keys)
        self.registry = Registry(redis, self.keys)
        self.bus = Bus(redis, self.keys, config.cluster_id, self.registry)
        self.started_at = time.time()
        self.cluster_label = str(config.cluster_id)  # of the metrics
        self.accepting = True
        self.shard_tracker = ShardTracker(config.shard_ids)
        self.guild_arrivals = GuildArrivals(self.shard_tracker, lambda: self.guilds)
        queue = IdentifyQueue(
            redis, keys, max_concurrency=config.max_concurrency, interval=config.identify_interval
        )
        # Shards connect through the IDENTIFY queue; close() cuts every start-up wait short.
        self.lifecycle = ShardLifecycle(self, queue, self.shard_tracker)
        self.worker_status = WorkerStatus(self, config, self.shard_tracker, pool, self.started_at)
        self._close_task: asyncio.Future[None] | None = None
        self.extension_names = config.extensions or EXTENSIONS
        self.throttle = Throttle(redis, keys)
        self.throttle_defaults = command_throttles.Defaults.of(config)
        self.add_check(gate.not_disabled, call_once=True)
        self.add_check(gate.not_throttled, call_once=True)
        self.before_invoke(self._started)
        # Gateway events by type since the last `sample_metrics`, added to Prometheus once a
        # second (a multiprocess increment locks and writes a file: a few % of chat's CPU).
        self._event_counts: dict[str, int] = {}
        self._components: components.Installed | None = None
        # Chat (guild messages that are not commands) reaches the features that count it on a
        # light path: bot/chat_light_path.py. Features register with `add_chat_sink`.
        self.chat_state.chat_prefix = self._cached_prefix

    # -- chat ----------------------------------------------------------------------------------

    def _get_state(self, **options: Any) -> ChatState:  # type: ignore[override]
        # discord.py's parser, patched for chat (bot/dpy/chat_state.py).
        return chat_state.create(self, **options)

    @property
    def chat_state(self) -> ChatState:
        return self._connection  # type: ignore[return-value]

    def _cached_prefix(self, guild_id: int) -> str | None:
        settings = self.guild_settings.cached(guild_id)
        return settings.prefix if settings is not None else None

    def add_chat_sink(self, sink: ChatSink) -> None:
        """Call `sink(chat)` for every message that takes the light path (see
        bot/chat_light_path.py). It runs inside the gateway parser: it must not block; start a
        task for real work."""
        self.chat_state.chat_sinks.append(sink)

    def remove_chat_sink(self, sink: ChatSink) -> None:
        with contextlib.suppress(ValueError):
            self.chat_state.chat_sinks.remove(sink)

    # -- start-up and stop -------------------------------------------------------------------

    async def setup_hook(self) -> None:
        logcontext.cluster.set(self.config.cluster_id)
        if not self.rest_only:
            await self.guild_settings.start()
            Answers(self, self.worker_status, self.extension_names).register(self.bus)
            await self.bus.start()
            await self.throttle.start()
            # Buttons, menus and forms (bot/components/): answered by whichever worker gets
            # them, from the first event on, whatever sent them.
            self._components = await components.install(self)
        for ext in self.extension_names:
            await self.load_extension(ext)
        self.tree.error(self._on_app_command_error)

    async def start(self, token: str, *, reconnect: bool = True) -> None:
        # discord.py's start is login + connect. Logging in ends with setup_hook loading every
        # cog; a stop meanwhile cuts it short rather than letting it finish into a client that
        # is closing.
        try:
            await self.lifecycle.until_closing(self.login(token))
        except ClientClosing:
            return
        await self.connect(reconnect=reconnect)

    async def launch_shard(self, gateway: Any, shard_id: int, *, initial: bool = False) -> None:
        # discord.py's own, after a turn in the IDENTIFY queue (bot/dpy/shard_hooks.py).
        launch = super().launch_shard
        await self.lifecycle.launch(shard_id, lambda: launch(gateway, shard_id, initial=initial))

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        await self.lifecycle.identify_turn(shard_id or 0)

    async def reconnect_shard(self, shard_id: int, *, delay: float = 0.0) -> None:
        """Connect the shard again with a new IDENTIFY (after `delay` s), through the IDENTIFY
        queue; a no-op once close() has begun."""
        await self.lifecycle.reconnect(shard_id, delay=delay)

    async def drain(self, grace: float) -> None:
        """Stop taking commands and wait (up to `grace` s) for the running ones to finish."""
        self.accepting = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        current = asyncio.current_task()
        while (left := deadline - loop.time()) > 0:
            busy = [
                t
                for t in asyncio.all_tasks()
                if t is not current and not t.done() and t.get_name() in _COMMAND_TASKS
            ]
            if not busy:
                return
            await asyncio.wait(busy, timeout=left)
        log.warning("drain: commands still running after %.0fs; closing anyway", grace)

    async def close(self) -> None:
        # One close, however many callers (the worker, discord.py's connect loop, a context
        # manager's exit); shielded so that a caller that stops waiting (the worker bounds its
        # stop) leaves it running rather than half done.
        if self._close_task is None:
            self.lifecycle.closing.set()
            self._close_task = asyncio.ensure_future(self._close())
        await asyncio.shield(self._close_task)

    async def _close(self) -> None:
        await self.lifecycle.interrupt()
        self._add_counts()  # the last second's events and throttle verdicts count too
        if not self.rest_only:
            if self._components is not None:
                await self._components.close()
            await self.bus.stop()
            await self.throttle.close()
            await self.guild_settings.stop()
        await super().close()

    # -- commands and events -------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or not self.accepting:
            return
        if message.guild is not None:
            logcontext.guild.set(message.guild.id)
            logcontext.shard.set(message.guild.shard_id)
        ctx = await self.get_context(message)
        if ctx.prefix is None:
            # Not addressed to the bot: chat that took discord.py's full path
            # (bot/chat_light_path.py says when). It reaches the chat sinks as the light path's
            # does, so a feature that counts chat has one input, and a command costs it nothing.
            self.chat_state.deliver_message(message)
            return
        await self.invoke(ctx)

    async def get_context(
        self, origin: discord.Message | discord.Interaction[Any], /, *, cls: type[Any] = MISSING
    ) -> Any:
        # A CommandContext: the guild's settings looked up once, the caller's level from them.
        return await context.resolve(self, origin, CommandContext if cls is MISSING else cls)

    async def invoke(self, ctx: commands.Context[Any], /) -> None:
        # In the command's own task, so the checks' and the command's log lines carry it.
        if ctx.command is not None:
            logcontext.command.set(ctx.command.qualified_name)
        try:
            await super().invoke(ctx)
        finally:
            gate.settle_reply(ctx)  # what it reserved for its answer and did not spend goes back

    async def _started(self, ctx: commands.Context[Any]) -> None:
        ctx.guildhouse_started = time.perf_counter()  # type: ignore[attr-defined]

    def count_command(self, ctx: commands.Context[Any], outcome: str) -> None:
        status.count_command(self.cluster_label, ctx, outcome)

    async def on_command_completion(self, ctx: commands.Context[Any]) -> None:
        self.count_command(ctx, "ok")

    def dispatch(self, event_name: str, /, *args: Any, **kwargs: Any) -> None:
        if event_name in GuildArrivals.EVENTS:  # a shard's READY, its guilds (bot/shards.py)
            self.guild_arrivals.on(event_name, args[0])
        elif event_name == "socket_event_type":
            # Counted here, synchronously: as a listener it would cost a task per event.
            counts = self._event_counts
            counts[args[0]] = counts.get(args[0], 0) + 1
            return
        super().dispatch(event_name, *args, **kwargs)

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        # An event handler (a shard's READY writing its guilds, a guild join) that found
        # PostgreSQL or Redis unreachable is part of the outage, logged once by bot/outages.py,
        # not a bug with a traceback of its own.
        exc = sys.exc_info()[1]
        if exc is not None and outages.note(exc, f"the {event_method} event") is not None:
            return
        await super().on_error(event_method, *args, **kwargs)

    async def on_command_error(
        self, ctx: commands.Context[Any], error: commands.CommandError
    ) -> None:
        await errors.handle(self, ctx, error)

    async def _on_app_command_error(
        self, interaction: discord.Interaction[Any], error: discord.app_commands.AppCommandError
    ) -> None:
        # Hybrid commands report through on_command_error; this catches pure app commands.
        ctx = await self.get_context(interaction)
        await errors.handle(self, ctx, error)

    # -- shards and guilds ---------------------------------------------------------------------

    def shard_latency(self, shard_id: int) -> float | None:
        """The shard's heartbeat latency in seconds; None until it is measured."""
        return self.worker_status.shard_latency(shard_id)

    def cluster_info(self, state: str) -> ClusterInfo:
        """This cluster's registry entry (bot/status.py)."""
        return self.worker_status.cluster_info(state)

    def sample_metrics(self) -> None:
        """Refresh gauges and counters; called once a second by the worker's report loop."""
        self._add_counts()
        self.worker_status.sample_metrics()

    def _add_counts(self) -> None:
        """Gateway events and throttle verdicts, counted in integers, into Prometheus."""
        counts, self._event_counts = self._event_counts, {}
        for kind, n in counts.items():
            metrics.GATEWAY_EVENTS.labels(self.cluster_label, kind).inc(n)
        self.throttle.count_decisions()

    async def on_shard_resumed(self, shard_id: int) -> None:
        self.shard_tracker.update(shard_id, ShardState.READY)

    async def on_shard_ready(self, shard_id: int) -> None:
        self.shard_tracker.update(shard_id, ShardState.READY)
        guilds = [g for g in self.guilds if g.shard_id == shard_id]
        log.info("shard %d ready with %d guilds", shard_id, len(guilds), extra={"shard": shard_id})
        await self._remember_guilds([g.id for g in guilds])

    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self._remember_guilds([guild.id])

    async def on_guild_remove(self, guild: discord.Guild) -> None:
        await self.pool.execute("UPDATE guilds SET left_at = now() WHERE id = $1", guild.id)
        self.guild_settings.forget(guild.id)

    async def _remember_guilds(self, guild_ids: list[int]) -> None:
        if not guild_ids:
            return
        await self.pool.execute(
            """
            INSERT INTO guilds (id) SELECT unnest($1::bigint[])
            ON CONFLICT (id) DO UPDATE SET left_at = NULL,
                joined_at = CASE WHEN guilds.left_at IS NULL THEN guilds.joined_at ELSE now() END
            """,
            guild_ids,
        )
