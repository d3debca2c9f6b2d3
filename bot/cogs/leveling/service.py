"""What happens when a member earns XP, without Discord: the award, the level-up check,
achievements. The cog turns the outcome into messages and role changes."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import uuid
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bot import metrics, outages
from bot.cogs.leveling import rules, store
from bot.cogs.leveling.rebuild import rebuild
from bot.cogs.leveling.settings import XpSettings
from ipc.batch import Batcher
from ipc.client import Keys, count_redis_error
from ipc.leaderboard import Award, AwardOutcome, Leaderboard, RebuildBusy

log = logging.getLogger(__name__)

_CACHE_SIZE = 50_000
# How long a finished command's count waits for others to go with it (s). An achievement for
# a command count is announced this much later; the worker does one statement for many.
COMMAND_COUNT_LINGER = 0.05


@dataclass(frozen=True)
class MessageInfo:
    message_id: int
    guild_id: int
    channel_id: int
    parent_id: int | None  # the channel's category
    user_id: int
    role_ids: tuple[int, ...]
    created_at: datetime
    name: str | None = None
    avatar: str | None = None


@dataclass
class Outcome:
    status: str  # awarded, cooldown, duplicate, no_xp, error
    amount: int = 0
    total: float = 0.0
    level_up: int | None = None  # the new level, if this award raised it
    achievements: list[rules.Achievement] = field(default_factory=list)


class _Lru:
    def __init__(self, size: int) -> None:
        self.size = size
        self._d: OrderedDict[object, object] = OrderedDict()

    def get(self, key: object) -> object | None:
        if key in self._d:
            self._d.move_to_end(key)
            return self._d[key]
        return None

    def put(self, key: object, value: object) -> None:
        self._d[key] = value
        self._d.move_to_end(key)
        while len(self._d) > self.size:
            self._d.popitem(last=False)


class LevelingService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        cluster: str = "",
        rng: random.Random | None = None,
    ) -> None:
        self.pool = pool
        self.redis = redis
        self.keys = keys
        self.board = Leaderboard(redis, keys)
        self.cluster = cluster
        self.rng = rng or random.Random()
        self._unlocked = _Lru(_CACHE_SIZE)  # (guild, user, achievement) known unlocked
        self._seen_today = _Lru(_CACHE_SIZE)  # (guild, user) -> the UTC day last checked
        self._rebuild_task: asyncio.Task[None] | None = None
        # One award call in flight per worker; awards arriving meanwhile go together in the
        # next call (a burst neither takes every connection of the Redis pool nor costs a
        # round trip per message).
        self.awards: Batcher[tuple[Award, float], AwardOutcome] = Batcher(
            self.board.award_many, max_batch=500, name="xp-awards"
        )
        self._profiles = _Lru(_CACHE_SIZE)  # user id -> (name, avatar) last sent
        # The command counts behind achievements: one statement for the commands that finish
        # within COMMAND_COUNT_LINGER of each other, not one round trip and commit per command.
        self.command_counts: Batcher[tuple[int, int], int] = Batcher(
            functools.partial(store.count_commands, self.pool),
            linger=COMMAND_COUNT_LINGER,
            name="command-counts",
        )

    # -- rebuild when Redis is empty ---------------------------------------------------------

    def schedule_rebuild(self) -> None:
        if self._rebuild_task is None or self._rebuild_task.done():
            self._rebuild_task = asyncio.create_task(self._auto_rebuild(), name="xp-rebuild")

    async def _auto_rebuild(self) -> None:
        try:
            if await self.board.is_ready():
                return
            result = await rebuild(
                self.pool, self.redis, self.keys, trigger="auto", cluster=self.cluster
            )
            if result is None:
                log.info("leaderboards: another process is rebuilding them")
        except (RedisError, OSError, asyncpg.PostgresError, RebuildBusy) as exc:
            # The next award that finds the marker missing tries again.
            log.warning("leaderboards: automatic rebuild failed: %s", exc)

    async def stop(self) -> None:
        if self._rebuild_task is not None and not self._rebuild_task.done():
            self._rebuild_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rebuild_task

    # -- awards ------------------------------------------------------------------------------

    async def award_message(self, msg: MessageInfo, settings: XpSettings) -> Outcome:
        (outcome,) = await self.award_messages([(msg, settings)])
        return outcome

    async def award_messages(
        self, messages: Sequence[tuple[MessageInfo, XpSettings]]
    ) -> list[Outcome]:
        """Award XP for several messages with one Redis round trip (in order: a later message
        of the same member sees the cooldown the earlier one set); then, for the few that
        need it, the level-up check and achievements (PostgreSQL), side by side."""
        outcomes: list[Outcome] = [Outcome("no_xp") for _ in messages]
        pending: list[tuple[int, Award, float, tuple[str | None, str | None] | None]] = []
        for n, (msg, settings) in enumerate(messages):
            mult = rules.multiplier(
                msg.channel_id,
                msg.parent_id,
                msg.role_ids,
                settings.channel_multipliers,
                settings.role_multipliers,
            )
            amount = rules.message_xp(settings.min_xp, settings.max_xp, mult, self.rng)
            if amount <= 0:
                metrics.XP_AWARDS.labels(self.cluster, "no_xp").inc()
                continue
            # A profile travels with an award only when it changed since this worker last
            # sent one (a rebuild restores the hash from Postgres, where every sent profile is
            # kept).
            profile = (msg.name, msg.avatar)
            fresh = msg.name is not None and self._profiles.get(msg.user_id) != profile
            award = Award(
                award_id=f"m:{msg.message_id}",
                guild_id=msg.guild_id,
                user_id=msg.user_id,
                amount=amount,
                at=msg.created_at,
                name=msg.name if fresh else None,
                avatar=msg.avatar if fresh else None,
            )
            pending.append((n, award, float(settings.cooldown), profile if fresh else None))
        if not pending:
            return outcomes
        try:
            results = await self.awards.submit_all([(a, cd) for _, a, cd, _ in pending])
        except (RedisError, OSError) as exc:
            # Not counted, and the member is not told otherwise: nothing to lose.
            count_redis_error("xp_award")
            metrics.XP_AWARDS.labels(self.cluster, "error").inc(len(pending))
            if outages.note(exc, "XP awards") is None:
                log.warning("XP awards not counted: Redis error (%s)", exc)
            else:  # logged once for the outage; chat goes on meanwhile
                log.debug("XP awards not counted: Redis unreachable (%s)", exc)
            for n, *_ in pending:
                outcomes[n] = Outcome("error")
            return outcomes
        follow_ups = []
        statuses: Counter[str] = Counter()
        points = 0
        for (n, award, _, sent_profile), result in zip(pending, results, strict=True):
            statuses[result.status] += 1
            if not result.awarded:
                outcomes[n] = Outcome(result.status)
                continue
            points += award.amount
            if sent_profile is not None:
                self._profiles.put(award.user_id, sent_profile)
            outcomes[n] = out = Outcome("awarded", award.amount, result.guild_total)
            msg = messages[n][0]
            crosses = rules.level_for(result.guild_total) > rules.level_for(
                result.guild_total - award.amount
            )
            first_today = self._seen_today.get((msg.guild_id, msg.user_id)) != msg.created_at.date()
            if not result.ready or crosses or first_today:
                follow_ups.append(self._follow_up(msg, out, ready=result.ready))
        outages.redis.reachable()
        for status, count in statuses.items():  # one metric update per batch, not per award
            metrics.XP_AWARDS.labels(self.cluster, status).inc(count)
        metrics.XP_AWARDED.labels(self.cluster).inc(points)
        if follow_ups:
            await asyncio.gather(*follow_ups)
        return outcomes

    async def _follow_up(self, msg: MessageInfo, out: Outcome, *, ready: bool) -> None:
        try:
            await self._check_award(msg, out, ready=ready)
        except Exception as exc:
            if outages.note(exc, "XP level checks") is None:
                raise
            # The award is counted (it is in the stream, and reaches PostgreSQL when it is
            # back); only its level-up and achievements go unannounced.
            log.debug("XP follow-up of message %s skipped: %s", msg.message_id, exc)

    async def _check_award(self, msg: MessageInfo, out: Outcome, *, ready: bool) -> None:
        if not ready:
            # Redis lost the boards: the total it returned counts only what came since. The
            # Postgres total (a second or so behind) is a lower bound that can't announce a
            # level too early; the conditional update in raise_level keeps it to once.
            self.schedule_rebuild()
            out.total = max(
                out.total, await store.total(self.pool, msg.guild_id, msg.user_id) + out.amount
            )
        out.level_up = await self.check_level(msg.guild_id, msg.user_id, out.total, out.amount)
        out.achievements = await self._achievements(msg, out.level_up, msg.created_at.date())

    async def check_level(
        self, guild_id: int, user_id: int, total: float, amount: int
    ) -> int | None:
        """The new level if `amount` took the member across a level boundary and nobody
        announced that level yet."""
        new = rules.level_for(total)
        if new <= rules.level_for(total - amount) or new == 0:
            return None
        if not await store.raise_level(self.pool, guild_id, user_id, new):
            return None
        metrics.LEVEL_UPS.labels(self.cluster).inc()
        return new

    async def _achievements(
        self, msg: MessageInfo, level: int | None, today: date
    ) -> list[rules.Achievement]:
        g, u = msg.guild_id, msg.user_id
        candidates: list[str] = []
        if self._seen_today.get((g, u)) != today:
            self._seen_today.put((g, u), today)
            candidates.append("first_message")
            days = await store.recent_days(self.pool, g, u, today - timedelta(days=40))
            candidates += [a.key for a in rules.reached("streak", rules.streak_length(days, today))]
        if level is not None:
            candidates += [a.key for a in rules.reached("level", level)]
        return await self.unlock(g, u, candidates)

    async def unlock(
        self, guild_id: int, user_id: int, keys: Iterable[str]
    ) -> list[rules.Achievement]:
        """Unlock what isn't yet; returns the achievements unlocked by this call."""
        todo = [k for k in keys if self._unlocked.get((guild_id, user_id, k)) is None]
        if not todo:
            return []
        new = await store.unlock(self.pool, guild_id, user_id, todo)
        for k in todo:
            self._unlocked.put((guild_id, user_id, k), True)
        return [rules.BY_KEY[k] for k in new]

    async def command_done(self, guild_id: int, user_id: int) -> list[rules.Achievement]:
        """Count a finished command towards achievements. Without PostgreSQL it is not
        counted: the command itself worked, and a count is not worth an error."""
        try:
            count = await self.command_counts.submit((guild_id, user_id))
            return await self.unlock(
                guild_id, user_id, [a.key for a in rules.reached("commands", count)]
            )
        except Exception as exc:
            if outages.note(exc, "achievement counts") is None:
                raise
            return []

    async def dice_rolled(
        self, guild_id: int, user_id: int, successes: int
    ) -> list[rules.Achievement]:
        if successes <= 0:
            return []
        try:
            best = await store.record_roll(self.pool, guild_id, user_id, successes)
            return await self.unlock(
                guild_id, user_id, [a.key for a in rules.reached("roll_successes", best)]
            )
        except Exception as exc:
            if outages.note(exc, "achievement counts") is None:
                raise
            return []

    # -- admin changes -----------------------------------------------------------------------

    def adjustment(self, guild_id: int, user_id: int, amount: int, kind: str) -> store.EventRow:
        return store.EventRow(
            award_id=f"a:{uuid.uuid4().hex}",
            guild_id=guild_id,
            user_id=user_id,
            amount=amount,
            kind=kind,
            created_at=datetime.now(UTC),
        )

    async def publish_adjustment(self, event: store.EventRow) -> float | None:
        """After the audited transaction committed: put the change on the live boards (and
        the stream, where the flusher finds it already written). None if Redis failed; a
        rebuild puts it right."""
        try:
            result = await self.board.award(
                Award(
                    award_id=event.award_id,
                    guild_id=event.guild_id,
                    user_id=event.user_id,
                    amount=event.amount,
                    at=event.created_at,
                    kind="admin",
                )
            )
        except (RedisError, OSError) as exc:
            count_redis_error("xp_adjust")
            log.warning("XP change saved but not on the live boards (%s); rebuild them", exc)
            return None
        if not result.ready:
            self.schedule_rebuild()
        return result.guild_total
