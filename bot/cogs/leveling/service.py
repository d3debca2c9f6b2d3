"""What an award of XP does, without Discord: chat becomes awards (a batch at a time, one Redis
round trip each), an award may raise a level or unlock achievements, an admin changes XP.
The news goes to whoever tells members (the announcer).

Chat comes in through `chats`, the service's one batcher: a batch of chat waits `CHAT_LINGER`
for company (a full one goes at once), so at any busy rate one Lua call counts many messages;
one call is in flight at a time per worker, and what arrives meanwhile goes in the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bot import metrics, outages
from bot.chat_light_path import Chat
from bot.cogs.leveling import rules, store
from bot.cogs.leveling.achievements import CACHE_SIZE, Achievements, Lru
from bot.cogs.leveling.rebuild import rebuild
from bot.cogs.leveling.settings import XpSettings, XpSettingsStore
from ipc.batch import Batcher
from ipc.client import Keys, count_redis_error
from ipc.leaderboard import Award, Leaderboard, RebuildBusy

log = logging.getLogger(__name__)

CHAT_BATCH = 500  # chat messages awarded per Redis round trip, at most
CHAT_LINGER = 0.05  # seconds a batch of chat waits for company: XP needs no answer


@dataclass
class Outcome:
    status: str  # awarded, cooldown, duplicate, no_xp, error
    amount: int = 0
    total: float = 0.0
    level_up: int | None = None  # the new level, if this award raised it
    achievements: list[rules.Achievement] = field(default_factory=list)


# Told of an award of chat that raised a level or unlocked achievements. Called in the batch's
# task: it must not block.
News = Callable[[Chat, XpSettings, Outcome], None]


@dataclass(frozen=True)
class Adjustment:
    """An admin's change of a member's XP, written: the totals around it, and the event."""

    before: int
    after: int
    award: Award


class LevelingService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        cluster: str = "",
        rng: random.Random | None = None,
        news: News | None = None,
    ) -> None:
        self.pool = pool
        self.redis = redis
        self.keys = keys
        self.board = Leaderboard(redis, keys)
        self.settings = XpSettingsStore(pool, redis, keys)
        self.achievements = Achievements(pool)
        self.cluster = cluster
        self.rng = rng or random.Random()
        self.news = news
        self._rebuild_task: asyncio.Task[None] | None = None
        self._profiles = Lru(CACHE_SIZE)  # user id -> (name, avatar) last sent
        self.chats: Batcher[Chat, Outcome] = Batcher(
            self._award_chats,
            max_batch=CHAT_BATCH,
            linger=CHAT_LINGER,
            linger_each=True,
            name="xp-chat",
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

    # -- chat --------------------------------------------------------------------------------

    async def _award_chats(self, chats: list[Chat]) -> list[Outcome]:
        """The batcher's call. Chat is nobody's request, so a failure ends here: it is logged
        (once for an outage) rather than raised."""
        try:
            items = [
                (
                    chat,
                    self.settings.cached(chat.guild_id) or await self.settings.get(chat.guild_id),
                )
                for chat in chats
            ]
            outcomes = await self.award_messages(items)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            # Redis errors are handled in award_messages (the awards are not counted); this is
            # PostgreSQL (settings, levels, achievements), perhaps after they were counted.
            if outages.note(exc, "XP for chat") is None:
                log.warning("XP follow-up for %d messages failed: %s", len(chats), exc)
            return [Outcome("error") for _ in chats]
        if self.news is not None:
            for (chat, settings), outcome in zip(items, outcomes, strict=True):
                if outcome.level_up is not None or outcome.achievements:
                    self.news(chat, settings, outcome)
        return outcomes

    async def award_message(self, chat: Chat, settings: XpSettings) -> Outcome:
        (outcome,) = await self.award_messages([(chat, settings)])
        return outcome

    async def award_messages(self, messages: Sequence[tuple[Chat, XpSettings]]) -> list[Outcome]:
        """Award XP for several messages with one Redis round trip (in order: a later message
        of the same member sees the cooldown the earlier one set); then, for the few that
        need it, the level-up check and achievements (PostgreSQL), side by side."""
        outcomes: list[Outcome] = [Outcome("no_xp") for _ in messages]
        pending: list[tuple[int, Award, float, tuple[str, str] | None]] = []
        for n, (chat, settings) in enumerate(messages):
            mult = rules.multiplier(
                chat.channel_id,
                chat.parent_id,
                chat.role_ids,
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
            profile = (chat.name, chat.avatar_url)
            fresh = self._profiles.get(chat.author_id) != profile
            award = Award(
                award_id=f"m:{chat.message_id}",
                guild_id=chat.guild_id,
                user_id=chat.author_id,
                amount=amount,
                at=chat.created_at,
                name=chat.name if fresh else None,
                avatar=chat.avatar_url if fresh else None,
            )
            pending.append((n, award, float(settings.cooldown), profile if fresh else None))
        if not pending:
            return outcomes
        try:
            results = await self.board.award_many([(a, cd) for _, a, cd, _ in pending])
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
            crosses = rules.level_for(result.guild_total) > rules.level_for(
                result.guild_total - award.amount
            )
            news_today = self.achievements.news_today(
                award.guild_id, award.user_id, award.at.date()
            )
            if not result.ready or crosses or news_today:
                follow_ups.append(self._follow_up(award, out, ready=result.ready))
        outages.redis.reachable()
        for status, count in statuses.items():  # one metric update per batch, not per award
            metrics.XP_AWARDS.labels(self.cluster, status).inc(count)
        metrics.XP_AWARDED.labels(self.cluster).inc(points)
        if follow_ups:
            await asyncio.gather(*follow_ups)
        return outcomes

    async def _follow_up(self, award: Award, out: Outcome, *, ready: bool) -> None:
        try:
            await self._check_award(award, out, ready=ready)
        except Exception as exc:
            if outages.note(exc, "XP level checks") is None:
                raise
            # The award is counted (it is in the stream, and reaches PostgreSQL when it is
            # back); only its level-up and achievements go unannounced.
            log.debug("XP follow-up of award %s skipped: %s", award.award_id, exc)

    async def _check_award(self, award: Award, out: Outcome, *, ready: bool) -> None:
        g, u = award.guild_id, award.user_id
        if not ready:
            # Redis lost the boards: the total it returned counts only what came since. The
            # Postgres total (a second or so behind) is a lower bound that can't announce a
            # level too early; the conditional update in raise_level keeps it to once.
            self.schedule_rebuild()
            out.total = max(out.total, await store.total(self.pool, g, u) + out.amount)
        out.level_up = await self.check_level(g, u, out.total, out.amount)
        out.achievements = await self.achievements.after_award(g, u, out.level_up, award.at.date())

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

    # -- admin changes -----------------------------------------------------------------------

    async def adjust(
        self, conn: asyncpg.Connection, guild_id: int, user_id: int, action: str, amount: int
    ) -> Adjustment | None:
        """An admin's `give` (`amount`), `take` (`amount`, at most what the member has) or
        `reset`, written in the caller's (audited) transaction; None if it changes nothing."""
        before = await store.locked_total(conn, guild_id, user_id)
        if action == "give":
            delta = amount
        elif action == "take":
            delta = -min(amount, before)
        else:
            delta = -before
        if delta == 0:
            return None
        award = Award(
            award_id=f"a:{uuid.uuid4().hex}",
            guild_id=guild_id,
            user_id=user_id,
            amount=delta,
            at=datetime.now(UTC),
            kind=f"admin_{action}",
        )
        after = await store.insert_adjustment(conn, award)
        if delta < 0:
            await store.set_level(conn, guild_id, user_id, rules.level_for(after))
        return Adjustment(before, after, award)

    async def publish_adjustment(self, award: Award) -> int | None:
        """After the audited transaction committed: put the change on the live boards (and
        the stream, where the flusher finds it already written). Returns the level a give
        raised the member to, if it did. If Redis fails, the change is in PostgreSQL all the
        same and a rebuild puts the boards right."""
        try:
            result = await self.board.award(award)
        except (RedisError, OSError) as exc:
            count_redis_error("xp_adjust")
            log.warning("XP change saved but not on the live boards (%s); rebuild them", exc)
            return None
        if not result.ready:
            self.schedule_rebuild()
        if award.amount <= 0:
            return None
        return await self.check_level(
            award.guild_id, award.user_id, result.guild_total, award.amount
        )
