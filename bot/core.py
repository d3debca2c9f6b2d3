"""The bot that runs in each worker: an AutoShardedBot over this worker's shard range."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
import discord
import redis.asyncio as aioredis
from discord.ext import commands

from bot import components, errors, logcontext, metrics, outages, rest_limits, throttles
from bot.chat import ChatSink
from bot.checks import Level, level_of
from bot.config import WorkerConfig
from bot.dpy import chat_state, http_session, shard_hooks
from bot.dpy.chat_state import ChatState
from bot.dpy.keep_alive import HeartbeatLatency, last_event_age
from bot.guild_settings import GuildSettingsStore
from bot.shards import FATAL_CLOSES, ShardState, ShardTracker
from ipc.bus import Bus
from ipc.client import Keys
from ipc.identify import IdentifyQueue
from ipc.ratelimit import GlobalLimiter, InvalidRequestGuard
from ipc.registry import ClusterInfo, Registry, ShardInfo
from ipc.throttle import Throttle

log = logging.getLogger(__name__)

T = TypeVar("T")

# Cogs loaded in every worker. A feature is one module (or package) here.
EXTENSIONS = (
    "bot.cogs.core",
    "bot.cogs.admin",
    "bot.cogs.tabletop",
    "bot.cogs.reminders",
    "bot.cogs.leveling",
)


def intents() -> discord.Intents:
    """The gateway intents we ask for, and why.

    - guilds: channels, roles and guild lifecycle (GUILD_CREATE/DELETE) for permissions and the
      guilds table.
    - guild_messages, dm_messages, message_content: prefix commands read message text.
      message_content is privileged: enable it for the bot in the Developer Portal.
    - members and presences are NOT requested: no feature needs the member list yet; the
      member who sends a message comes with the message.
    """
    flags = discord.Intents.none()
    flags.guilds = True
    flags.guild_messages = True
    flags.dm_messages = True
    flags.message_content = True
    flags.guild_reactions = True
    return flags


# Tasks discord.py creates per incoming message / interaction (see Client._schedule_event and
# CommandTree._from_interaction), and those that answer a component; draining waits for these
# to finish.
_COMMAND_TASKS = ("discord.py: on_message", "CommandTree-invoker", components.TASK_NAME)


class ClientClosing(Exception):
    """close() has begun: what was being waited for will not be needed."""


@dataclass(frozen=True)
class FindGuild:
    guild_id: int


@dataclass(frozen=True)
class SetPresence:
    status: str  # online, idle, dnd, invisible
    activity: str | None = None


@dataclass(frozen=True)
class ReloadExtension:
    name: str


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
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        super().__init__(
            command_prefix=self._prefix_for,
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
        self.identify_queue = IdentifyQueue(
            redis,
            self.keys,
            max_concurrency=config.max_concurrency,
            interval=config.identify_interval,
        )
        self.started_at = time.time()
        self.accepting = True
        self.shard_tracker = ShardTracker(config.shard_ids)
        self.heartbeat_latency = HeartbeatLatency()
        # Set when close() begins: every wait of a start-up (login, the IDENTIFY queue, a
        # shard's connection, a reconnect's backoff) runs as one of `_interruptible` and is
        # cancelled then, so nothing keeps connecting into a closed client.
        self._closing = asyncio.Event()
        self._interruptible: set[asyncio.Task[Any]] = set()
        self._guarded_shards: set[int] = set()
        self._shard_tasks: set[asyncio.Task[None]] = set()
        self._close_task: asyncio.Future[None] | None = None
        self._extensions = config.extensions or EXTENSIONS
        self.throttle = Throttle(redis, keys)
        self.throttle_defaults = throttles.Defaults(
            user=config.throttle_user,
            command=config.throttle_command,
            guild=config.throttle_guild,
            exempt_mods=config.throttle_exempt_mods,
        )
        self.add_check(self._not_disabled, call_once=True)
        self.add_check(self._not_throttled, call_once=True)
        self.before_invoke(self._started)
        self._cluster_label = str(config.cluster_id)
        self._event_counters: dict[str, Any] = {}
        self._components: components.Installed | None = None
        # Chat (guild messages that are not commands) reaches the features that count it on a
        # light path: bot/chat.py. Features register with `add_chat_sink`.
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
        """Call `sink(chat)` for every message that takes the light path (see bot/chat.py).
        It runs inside the gateway parser: it must not block; start a task for real work."""
        self.chat_state.chat_sinks.append(sink)

    def remove_chat_sink(self, sink: ChatSink) -> None:
        with contextlib.suppress(ValueError):
            self.chat_state.chat_sinks.remove(sink)

    # -- start-up ----------------------------------------------------------------------------

    async def setup_hook(self) -> None:
        logcontext.cluster.set(self.config.cluster_id)
        if not self.rest_only:
            await self.guild_settings.start()
            self.bus.handle("cluster_stats", None, self._rpc_cluster_stats)
            self.bus.handle("find_guild", FindGuild, self._rpc_find_guild)
            self.bus.handle("set_presence", SetPresence, self._rpc_set_presence)
            self.bus.handle("reload_extension", ReloadExtension, self._rpc_reload_extension)
            await self.bus.start()
            await self.throttle.start()
            # Buttons, menus and forms (bot/components/): answered by whichever worker gets
            # them, from the first event on, whatever sent them.
            self._components = await components.install(self)
        for ext in self._extensions:
            await self.load_extension(ext)
        self.tree.error(self._on_app_command_error)

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

    async def _until_closing(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` unless close() begins first: then it is cancelled and ClientClosing
        raised, so that a stop never waits for a start-up step that no longer matters."""
        if self._closing.is_set():
            coro.close()
            raise ClientClosing
        task = asyncio.ensure_future(coro)
        self._interruptible.add(task)
        try:
            await asyncio.wait({task})
        finally:
            self._interruptible.discard(task)
            task.cancel()  # a no-op once done; if we were cancelled, the work stops too
        if task.cancelled():
            raise ClientClosing
        return task.result()

    async def start(self, token: str, *, reconnect: bool = True) -> None:
        # discord.py's start is login + connect. Logging in ends with setup_hook loading every
        # cog; a stop meanwhile cuts it short rather than letting it finish into a client that
        # is closing.
        try:
            await self._until_closing(self.login(token))
        except ClientClosing:
            return
        await self.connect(reconnect=reconnect)

    async def launch_shard(self, gateway: Any, shard_id: int, *, initial: bool = False) -> None:
        # discord.py's launch_shard retries a failed connection every 5 s by calling this
        # method again, for ever: once close() has begun there is nothing to connect for, and
        # a wait in progress (the queue, the connection) is cancelled by close().
        try:
            await self._until_closing(self._launch_shard(gateway, shard_id, initial=initial))
        except ClientClosing:
            return

    async def _launch_shard(self, gateway: Any, shard_id: int, *, initial: bool) -> None:
        # Queue for the IDENTIFY turn before connecting; the hook below then waits only the
        # last second or two, with the new connection open.
        waited = await self.identify_queue.approach(shard_id)
        if waited > 1:
            log.info(
                "shard %s waited %.1fs in the IDENTIFY queue before connecting",
                shard_id,
                waited,
                extra={"shard": shard_id},
            )
        await super().launch_shard(gateway, shard_id, initial=initial)
        self._guard_shard(shard_id)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        # Every IDENTIFY of every worker and pod waits its turn in the shared Redis queue.
        try:
            waited = await self._until_closing(self.identify_queue.acquire(shard_id or 0))
        except ClientClosing:
            # Not an Exception: discord.py's reconnect paths end quietly on a cancellation,
            # where an error would be logged and retried against the closed session.
            raise asyncio.CancelledError from None
        if waited > 1:
            log.info(
                "shard %s waited %.1fs for its IDENTIFY turn",
                shard_id,
                waited,
                extra={"shard": shard_id},
            )

    async def reconnect_shard(self, shard_id: int, *, delay: float = 0.0) -> None:
        """Connect the shard again with a new IDENTIFY (after `delay` s), through the IDENTIFY
        queue; a no-op once close() has begun."""
        try:
            await self._until_closing(self._reconnect_shard(shard_id, delay))
        except ClientClosing:
            return

    async def _reconnect_shard(self, shard_id: int, delay: float) -> None:
        await asyncio.sleep(delay)
        info = self.get_shard(shard_id)
        if info is None or self.shard_tracker.states.get(shard_id) == ShardState.FAILED:
            return
        self.shard_tracker.update(shard_id, ShardState.STARTING)
        await self.identify_queue.approach(shard_id)
        await info.reconnect()

    def _guard_shard(self, shard_id: int) -> None:
        """Keep a fatal close of this shard from ending the whole client
        (bot/dpy/shard_hooks.py)."""
        if shard_id in self._guarded_shards:
            return  # launch_shard retries by recursion: the innermost call guarded it
        if not shard_hooks.install(
            self.get_shard(shard_id), lambda code: self._on_fatal_close(shard_id, code)
        ):
            log.warning("shard %d: cannot guard it against fatal closes", shard_id)
            return
        self._guarded_shards.add(shard_id)

    def _on_fatal_close(self, shard_id: int, code: int) -> bool:
        """Handle a fatal close of one shard; False leaves it to discord.py (the client ends)."""
        if self._closing.is_set():
            return True  # the client is closing: nothing to reconnect, nothing to report
        if not self.shard_tracker.was_ready(shard_id):
            return False  # never READY: the token or the intents are wrong; the worker says so
        meaning = FATAL_CLOSES.get(code, "fatal close")
        closes = self.shard_tracker.fatal_close(shard_id)
        policy = self.shard_tracker.policy
        if self.shard_tracker.states.get(shard_id) == ShardState.FAILED:
            log.critical(
                "shard %d closed by the gateway with %d (%s), %d times within %.0fs: "
                "marking it FAILED; it stays offline until this worker restarts, the "
                "other shards run on",
                shard_id,
                code,
                meaning,
                closes,
                policy.window,
                extra={"shard": shard_id},
            )
            return True
        delay = policy.delay(closes)
        log.critical(
            "shard %d closed by the gateway with %d (%s); reconnecting it with a new IDENTIFY "
            "in %.1fs (the other shards run on)",
            shard_id,
            code,
            meaning,
            delay,
            extra={"shard": shard_id},
        )
        task = asyncio.create_task(
            self.reconnect_shard(shard_id, delay=delay), name=f"recover-shard-{shard_id}"
        )
        self._shard_tasks.add(task)
        task.add_done_callback(self._shard_tasks.discard)
        return True

    async def close(self) -> None:
        # One close, however many callers (the worker, discord.py's connect loop, a context
        # manager's exit); shielded so that a caller that stops waiting (the worker bounds its
        # stop) leaves it running rather than half done.
        if self._close_task is None:
            self._closing.set()
            self._close_task = asyncio.ensure_future(self._close())
        await asyncio.shield(self._close_task)

    async def _close(self) -> None:
        # A shard's recovery is interruptible too: cancelling these ends it.
        pending = list(self._interruptible)
        for task in pending:
            task.cancel()
        if pending:
            # Let them unwind before the HTTP session closes under them.
            await asyncio.wait(pending, timeout=5)
        if not self.rest_only:
            if self._components is not None:
                await self._components.close()
            await self.bus.stop()
            await self.throttle.close()
            await self.guild_settings.stop()
        await super().close()

    # -- prefixes and checks -------------------------------------------------------------------

    async def _prefix_for(self, bot: commands.Bot, message: discord.Message) -> list[str]:
        mention = commands.when_mentioned(bot, message)
        if message.guild is None:
            return [*mention, "!"]
        settings = await self.guild_settings.get(message.guild.id)
        return [*mention, settings.prefix]

    async def _not_disabled(self, ctx: commands.Context[Any]) -> bool:
        if ctx.guild is None or ctx.command is None:
            return True
        settings = await self.guild_settings.get(ctx.guild.id)
        root = ctx.command.root_parent or ctx.command
        if ctx.command.qualified_name in settings.disabled or root.name in settings.disabled:
            raise errors.CommandDisabled(ctx.command.qualified_name)
        return True

    async def _not_throttled(self, ctx: commands.Context[Any]) -> bool:
        if ctx.command is None:
            return True
        # A prefix command nearly always answers with a message in its channel: the REST slot
        # for that message comes from this process's allotment of the global window when it
        # has one (no round trip), else it is asked for with the throttle's verdict (in its
        # round trip, or with the background count of a verdict made here), so the answer
        # waits for no round trip of its own, or only what is left of one (ipc/ratelimit.py,
        # `Prepaid`). Refused or unused, the slot lapses.
        if ctx.guild is not None:
            # A command is answered in its own channel, of a guild of this process's shards:
            # those buckets are this process's own (ipc/ratelimit.py, `own_buckets`).
            self.rest_limiter.own_buckets(str(ctx.channel.id), str(ctx.guild.id))
        first = None
        if ctx.interaction is None:
            first = ("POST /channels/{major}/messages", str(ctx.channel.id))
            if self.rest_limiter.prepay_from_allotment(*first):
                first = None
        settings = await self.guild_settings.get(ctx.guild.id) if ctx.guild else None
        level = await level_of(self, ctx.author, ctx.guild)
        if level >= Level.OWNER or (
            level >= Level.MODERATOR and throttles.exempt_mods(self.throttle_defaults, settings)
        ):
            return True
        windows = throttles.windows(
            ctx.command,
            ctx.author.id,
            ctx.guild.id if ctx.guild else None,
            self.throttle_defaults,
            settings,
        )
        root = (ctx.command.root_parent or ctx.command).name
        route = first if windows else None
        verdict = await self.throttle.hit(
            windows,
            told_key=f"{ctx.author.id}:{root}",
            also=self.rest_limiter.prepay_call(*route) if route else None,
        )
        if route is not None and verdict.also is not None:
            self.rest_limiter.prepaid(*route, verdict.also)
        if verdict.allowed:
            return True
        metrics.THROTTLED.labels(self._cluster_label, root).inc()
        raise errors.Throttled(verdict.retry_after, tell=verdict.tell)

    # -- events --------------------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or not self.accepting:
            return
        if message.guild is not None:
            logcontext.guild.set(message.guild.id)
            logcontext.shard.set(message.guild.shard_id)
        ctx = await self.get_context(message)
        if ctx.prefix is None:
            # Not addressed to the bot: chat that took discord.py's full path (bot/chat.py
            # says when). It reaches the chat sinks as the light path's does, so a feature that
            # counts chat has one input, and a command costs it nothing.
            self.chat_state.deliver_message(message)
            return
        await self.invoke(ctx)

    async def invoke(self, ctx: commands.Context[Any], /) -> None:
        # In the command's own task, so the checks' and the command's log lines carry it.
        if ctx.command is not None:
            logcontext.command.set(ctx.command.qualified_name)
        await super().invoke(ctx)

    async def _started(self, ctx: commands.Context[Any]) -> None:
        ctx.guildhouse_started = time.perf_counter()  # type: ignore[attr-defined]

    def count_command(self, ctx: commands.Context[Any], outcome: str) -> None:
        name = ctx.command.qualified_name if ctx.command else "unknown"
        kind = "slash" if ctx.interaction else "prefix"
        metrics.COMMANDS.labels(self._cluster_label, name, kind, outcome).inc()
        started = getattr(ctx, "guildhouse_started", None)
        if started is not None:
            metrics.COMMAND_DURATION.labels(self._cluster_label, name).observe(
                time.perf_counter() - started
            )

    async def on_command_completion(self, ctx: commands.Context[Any]) -> None:
        self.count_command(ctx, "ok")

    def dispatch(self, event_name: str, /, *args: Any, **kwargs: Any) -> None:
        if event_name == "socket_event_type":
            # Counted here, synchronously: as a listener it would cost a task per event.
            counter = self._event_counters.get(args[0])
            if counter is None:
                counter = metrics.GATEWAY_EVENTS.labels(self._cluster_label, args[0])
                self._event_counters[args[0]] = counter
            counter.inc()
            return
        super().dispatch(event_name, *args, **kwargs)

    async def _rpc_cluster_stats(self, _: object) -> dict[str, object]:
        info = self.cluster_info("ready" if self.shard_tracker.all_ready() else "starting")
        return {
            "cluster_id": info.cluster_id,
            "guilds": info.guilds,
            "shards": len(info.shards),
            "ready_shards": sum(s.state == "ready" for s in info.shards.values()),
            "uptime": time.time() - self.started_at,
        }

    async def _rpc_find_guild(self, req: FindGuild) -> dict[str, object] | None:
        guild = self.get_guild(req.guild_id)
        if guild is None:
            return None
        return {
            "cluster_id": self.config.cluster_id,
            "shard_id": guild.shard_id,
            "name": guild.name,
            # The icon's hash: the launcher's web leaderboard shows it (it has no cache).
            "icon": guild.icon.key if guild.icon is not None else None,
        }

    def shard_latency(self, shard_id: int) -> float | None:
        """The shard's heartbeat latency in seconds; None until it is measured (see
        HeartbeatLatency)."""
        return self.heartbeat_latency.of(shard_id, self.get_shard(shard_id))

    async def _rpc_set_presence(self, req: SetPresence) -> int:
        status = discord.Status(req.status)  # ValueError for an unknown status: an error answer
        activity = discord.Game(req.activity[:128]) if req.activity else None
        await self.change_presence(status=status, activity=activity)
        return len(self.shards)

    async def _rpc_reload_extension(self, req: ReloadExtension) -> str:
        if req.name not in self._extensions:
            raise ValueError(f"{req.name!r} is not one of this bot's extensions")
        await self.reload_extension(req.name)
        return req.name

    def cluster_info(self, state: str) -> ClusterInfo:
        """This cluster's registry entry."""
        guilds: dict[int, int] = dict.fromkeys(self.shard_tracker.states, 0)
        for guild in self.guilds:
            guilds[guild.shard_id] = guilds.get(guild.shard_id, 0) + 1
        shards = {}
        for sid, shard_state in self.shard_tracker.states.items():
            info = self.get_shard(sid)
            latency = self.shard_latency(sid)
            if latency is not None:
                latency = round(latency * 1000, 1)
            shards[sid] = ShardInfo(
                shard_state.name.lower(), latency, guilds.get(sid, 0), last_event_age(info)
            )
        return ClusterInfo(
            cluster_id=self.config.cluster_id,
            shard_ids=list(self.config.shard_ids),
            pid=os.getpid(),
            host=socket.gethostname(),
            state=state,
            started=self.started_at,
            guilds=len(self.guilds),
            shards=shards,
        )

    def sample_metrics(self) -> None:
        """Refresh gauges; called once a second by the worker's report loop."""
        cluster = self._cluster_label
        guilds: dict[int, int] = dict.fromkeys(self.shard_tracker.states, 0)
        for guild in self.guilds:
            guilds[guild.shard_id] = guilds.get(guild.shard_id, 0) + 1
        for sid, state in self.shard_tracker.states.items():
            shard = str(sid)
            metrics.SHARD_STATE.labels(cluster, shard).set(int(state))
            metrics.SHARD_GUILDS.labels(cluster, shard).set(guilds.get(sid, 0))
            latency = self.shard_latency(sid)
            # NaN until measured: the series is there from the start (dashboards find it),
            # and no placeholder reads as a latency.
            metrics.GATEWAY_LATENCY.labels(cluster, shard).set(
                math.nan if latency is None else latency
            )
        metrics.DB_POOL_SIZE.labels(cluster).set(self.pool.get_size())
        metrics.DB_POOL_IN_USE.labels(cluster).set(self.pool.get_size() - self.pool.get_idle_size())
        metrics.sample_process(cluster)

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
        ctx = await commands.Context.from_interaction(interaction)
        await errors.handle(self, ctx, error)

    async def on_shard_connect(self, shard_id: int) -> None:
        # discord.py dispatches this on READY, before the shard's guilds have arrived.
        self.shard_tracker.got_ready(shard_id)
        self.shard_tracker.update(shard_id, ShardState.CONNECTING)

    async def on_shard_disconnect(self, shard_id: int) -> None:
        self.shard_tracker.update(shard_id, ShardState.DISCONNECTED)

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
