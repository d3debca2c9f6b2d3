"""Live XP leaderboards in Redis: sorted sets per guild and global, all-time and per period.

Postgres is the system of record (see bot/cogs/leveling/); everything here can be rebuilt from
it. An award is one Lua script: it checks the idempotency key and the per-user cooldown, then
appends the award to the XP stream (which the flushers move to Postgres) and adds it to the
eight boards it counts on (this guild and global; all-time, month, week, day) in one step, so a
counted award is always on its way to Postgres.

Boards (``{prefix}lb:...``):

- ``lb:g:{guild_id}:all`` and ``lb:global:all``: all-time.
- ``lb:g:{guild_id}:m202612`` / ``lb:global:m202612``: the month starting 2026-12-01 (UTC).
- ``...:w20261130``: the week starting Monday 2026-11-30 00:00 UTC.
- ``...:d20261201``: the day 2026-12-01 (UTC).

Period boards carry their period's start in the key and expire a day after the period ends.
Members are user ids (decimal strings); scores are XP. A member whose score falls to 0 or below
(an admin took or reset XP) is removed from the board.

``lb:profiles`` is a hash user id -> JSON ``{"name", "avatar"}`` for pages that show names
(a web leaderboard needs only this module and a Redis client). ``lb:ready`` marks boards
that were built from Postgres; when it is missing (Redis was wiped), the bot rebuilds.

The read API (`top`, `rank`, `count`, `profiles`) takes a guild id, or None for the global
boards, and a period name.
"""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

import orjson
import redis.asyncio as aioredis

from ipc.client import Keys

PERIODS = ("alltime", "month", "week", "day")
# Period boards outlive their period by this much, so "last week" can still be read a while.
EXPIRY_MARGIN = timedelta(days=1)
# An award id is remembered this long (15 minutes); the same id again is a duplicate (e.g. a
# replayed MESSAGE_CREATE after a gateway RESUME).
SEEN_TTL = 900
# Stream entries stay this long after they were flushed: a rebuild replays entries that reached
# the stream after its Postgres snapshot, so it must finish within this time.
STREAM_RETENTION = 300.0
REBUILD_LOCK_TTL = STREAM_RETENTION


class PeriodError(ValueError):
    """Not a period name; the message lists the valid ones."""


def check_period(period: str) -> str:
    if period not in PERIODS:
        raise PeriodError(f"{period!r} is not a period; expected one of {', '.join(PERIODS)}")
    return period


def period_start(period: str, when: datetime) -> datetime | None:
    """Start (UTC) of the period containing `when`; None for all-time.

    Days start at 00:00 UTC, weeks on Monday 00:00 UTC (ISO weeks), months on the 1st.
    """
    check_period(period)
    when = when.astimezone(UTC)
    day = datetime(when.year, when.month, when.day, tzinfo=UTC)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=when.weekday())
    if period == "month":
        return day.replace(day=1)
    return None


def period_end(period: str, when: datetime) -> datetime | None:
    """End (exclusive, UTC) of the period containing `when`; None for all-time."""
    start = period_start(period, when)
    if start is None:
        return None
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(days=7)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def period_tag(period: str, when: datetime) -> str:
    """The key suffix of the period containing `when`: all, m202612, w20261130, d20261201."""
    start = period_start(period, when)
    if start is None:
        return "all"
    if period == "month":
        return f"m{start:%Y%m}"
    return f"{period[0]}{start:%Y%m%d}"


@dataclass(frozen=True)
class _Day:
    """What an award on one UTC day needs: its boards' tags and the periods' expiry times."""

    tags: tuple[str, str, str, str]  # all, month, week, day
    expiry: tuple[int, int, int]  # unix time the month, week and day boards expire


@functools.lru_cache(maxsize=64)
def _day_cached(day: date) -> _Day:
    when = datetime(day.year, day.month, day.day, tzinfo=UTC)
    tags = tuple(period_tag(p, when) for p in PERIODS)
    expiry = []
    for p in ("month", "week", "day"):
        end = period_end(p, when)
        assert end is not None
        expiry.append(int((end + EXPIRY_MARGIN).timestamp()))
    return _Day(tags, tuple(expiry))  # type: ignore[arg-type]


class AwardOutcome(NamedTuple):  # one per award, like Award
    status: str  # awarded, cooldown, duplicate
    guild_total: float = 0.0  # the user's all-time XP in the guild, after the award
    ready: bool = True  # False: the boards were wiped and are not rebuilt yet
    entry_id: str | None = None

    @property
    def awarded(self) -> bool:
        return self.status == "awarded"


@dataclass(frozen=True)
class Entry:
    user_id: int
    score: float
    rank: int  # 1-based


@dataclass(frozen=True)
class Profile:
    name: str
    avatar: str | None


class Award(NamedTuple):
    """An XP event: XP for one user in one guild, the one shape it has from the chat message
    (or the admin's change) to its row in PostgreSQL (`xp_events`). `award_id` is unique per
    award (`m:<message id>` for chat, `a:<uuid>` for an admin's change); `amount` is negative
    for an admin's take or reset. `name` and `avatar` travel only when the user's profile
    changed.

    In the stream it is the entry the award script below writes from `script_args` and
    `from_stream` reads back: `a` award id, `g` guild, `u` user, `x` amount, `t` time (unix
    ms), `k` kind, `p` profile JSON or '', and `m`, `w`, `d` the tags of its month, week and
    day (a rebuild's replay puts it on the period boards it counts on).

    A named tuple, not a frozen dataclass: one is made per chat message, and a frozen
    dataclass's constructor costs several times a tuple's.
    """

    award_id: str
    guild_id: int
    user_id: int
    amount: int
    at: datetime
    kind: str = "message"  # xp_events.kind: message, admin_give, admin_take, admin_reset, import
    name: str | None = None
    avatar: str | None = None

    def script_args(self, cooldown: float, day: int) -> list[str]:
        """The award's row in the award script's awards (all strings, as ARGV would be);
        `day` numbers its UTC day among the call's days."""
        profile = (
            orjson.dumps({"name": self.name, "avatar": self.avatar}).decode()
            if self.name is not None
            else ""
        )
        return [
            str(max(0, int(cooldown * 1000))),
            str(self.amount),
            str(self.user_id),
            self.award_id,
            str(self.guild_id),
            str(int(self.at.timestamp() * 1000)),
            self.kind,
            profile,
            str(day),
        ]

    @classmethod
    def from_stream(cls, fields: Mapping[str, str]) -> Award:
        """The award as the award script wrote it to the stream; KeyError or ValueError for
        an entry that is not one."""
        profile = orjson.loads(fields["p"]) if fields.get("p") else {}
        return cls(
            award_id=fields["a"],
            guild_id=int(fields["g"]),
            user_id=int(fields["u"]),
            amount=int(float(fields["x"])),
            at=datetime.fromtimestamp(int(fields["t"]) / 1000, UTC),
            kind=fields.get("k") or "message",
            name=profile.get("name"),
            avatar=profile.get("avatar"),
        )


# Several awards in one call (one round trip, one script run, however many arrive at once).
# The per-award keys (cooldown, seen, the eight boards) are built in the script from the key
# prefix, so the script needs one Redis server, which is what Guildhouse supports (not Redis
# Cluster). The awards travel as one JSON argument, not 9 arguments each: the worker encodes
# one string per call instead of 9 per award (the values are strings, as ARGV's would be, so a
# snowflake keeps every digit through cjson's numbers).
# KEYS: 1 stream, 2 ready marker, 3 profiles.
# ARGV: 1 seen ttl s, 2 key prefix, 3 number of UTC days D, then per day 6 values: the month,
#       week and day tags and the unix expiry of those boards; then the awards, a JSON array
#       of arrays of 9 strings: cooldown ms, amount, user, award id, guild, time ms, kind,
#       profile json or '', day (1..D).
# Returns per award {status, guild total, stream id} (status 0 awarded, 1 cooldown,
# 2 duplicate), then the ready marker. A period board's expiry is set once per call.
_AWARD = """
local prefix, days = ARGV[2], tonumber(ARGV[3])
local awards = cjson.decode(ARGV[4 + days * 6])
local out = {}
local expiring = {}
for _, r in ipairs(awards) do
  local cd, amount, user, aid = tonumber(r[1]), r[2], r[3], r[4]
  local guild, profile, d = r[5], r[8], 4 + (tonumber(r[9]) - 1) * 6
  local seen = prefix .. 'xp:seen:' .. aid
  local status, total, id = 0, '0', ''
  if redis.call('EXISTS', seen) == 1 then
    status = 2
  elseif cd > 0 then
    local cooldown = prefix .. 'xp:cd:' .. guild .. ':' .. user
    if not redis.call('SET', cooldown, aid, 'NX', 'PX', cd) then status = 1 end
  end
  if status == 0 then
    redis.call('SET', seen, '1', 'EX', ARGV[1])
    id = redis.call('XADD', KEYS[1], '*', 'a', aid, 'g', guild, 'u', user, 'x', amount,
      't', r[6], 'k', r[7], 'p', profile,
      'm', ARGV[d], 'w', ARGV[d + 1], 'd', ARGV[d + 2])
    local scopes = {prefix .. 'lb:g:' .. guild .. ':', prefix .. 'lb:global:'}
    for s = 1, 2 do
      for j = 0, 3 do
        local board = scopes[s] .. (j == 0 and 'all' or ARGV[d + j - 1])
        local score = redis.call('ZINCRBY', board, amount, user)
        if s == 1 and j == 0 then total = score end
        if tonumber(score) <= 0 then redis.call('ZREM', board, user) end
        if j > 0 and not expiring[board] then
          expiring[board] = true
          redis.call('EXPIREAT', board, ARGV[d + j + 2])
        end
      end
    end
    if profile ~= '' then redis.call('HSET', KEYS[3], user, profile) end
  end
  out[#out + 1] = status
  out[#out + 1] = total
  out[#out + 1] = id
end
out[#out + 1] = redis.call('EXISTS', KEYS[2])
return out
"""

# The last step of a rebuild, atomic: replay the stream entries Postgres did not have at the
# snapshot onto the freshly built boards, then swap them in and set the ready marker.
# KEYS: 1 stream, 2 skip set (award ids the snapshot had), 3 set of board key names built,
#       4 ready marker, 5 lock.
# ARGV: 1 temp prefix, 2 live board prefix (…lb:), 3 lock token, 4 last stream id the caller
#       checked against the snapshot, 5-7 current month/week/day tags, 8-10 their expiry,
#       11 marker value.
_SWAP = """
if redis.call('GET', KEYS[5]) ~= ARGV[3] then return -1 end
local tmp, live = ARGV[1], ARGV[2]
local tags = {ARGV[5], ARGV[6], ARGV[7]}
local function cmp(a, b)
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  if #am ~= #bm then return #am < #bm and -1 or 1 end
  if am ~= bm then return am < bm and -1 or 1 end
  if #as ~= #bs then return #as < #bs and -1 or 1 end
  if as ~= bs then return as < bs and -1 or 1 end
  return 0
end
local replayed = 0
local entries = redis.call('XRANGE', KEYS[1], '-', '+')
for _, e in ipairs(entries) do
  local f = {}
  for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end
  local known = cmp(e[1], ARGV[4]) <= 0 and redis.call('SISMEMBER', KEYS[2], f['a']) == 1
  if not known then
    replayed = replayed + 1
    local names = {'g:' .. f['g'] .. ':all', 'global:all'}
    local periods = {f['m'], f['w'], f['d']}
    for j = 1, 3 do
      if periods[j] == tags[j] then
        table.insert(names, 'g:' .. f['g'] .. ':' .. tags[j])
        table.insert(names, 'global:' .. tags[j])
      end
    end
    for _, n in ipairs(names) do
      redis.call('ZINCRBY', tmp .. n, f['x'], f['u'])
      redis.call('SADD', KEYS[3], n)
    end
  end
end
local swapped = 0
for _, n in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  redis.call('ZREMRANGEBYSCORE', tmp .. n, '-inf', 0)
  if redis.call('EXISTS', tmp .. n) == 1 then
    redis.call('RENAME', tmp .. n, live .. n)
    for j = 1, 3 do
      if string.sub(n, -string.len(tags[j])) == tags[j] then
        redis.call('EXPIREAT', live .. n, ARGV[7 + j])
      end
    end
    swapped = swapped + 1
  else
    redis.call('DEL', live .. n)
  end
end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('SET', KEYS[4], ARGV[11])
redis.call('DEL', KEYS[5])
return {swapped, replayed}
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_STATUS = {0: "awarded", 1: "cooldown", 2: "duplicate"}


@dataclass(frozen=True)
class RebuildResult:
    boards: int  # board keys written
    replayed: int  # stream entries added on top of the Postgres snapshot


class RebuildBusy(RuntimeError):
    """Another process holds the rebuild lock."""


class Leaderboard:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self.stream = keys("xp", "stream")
        self.marker = keys("lb", "ready")
        self.lock_key = keys("lb", "rebuild-lock")
        self.profiles_key = keys("lb", "profiles")
        self._award = redis.register_script(_AWARD)
        self._swap = redis.register_script(_SWAP)
        self._release = redis.register_script(_RELEASE)

    # -- key names ---------------------------------------------------------------------------

    def board_key(self, guild_id: int | None, period: str, when: datetime | None = None) -> str:
        tag = period_tag(period, when or datetime.now(UTC))
        scope = "global" if guild_id is None else f"g:{guild_id}"
        return self.keys("lb", scope, tag)

    def cooldown_key(self, guild_id: int, user_id: int) -> str:
        return self.keys("xp", "cd", guild_id, user_id)

    # -- writes ------------------------------------------------------------------------------

    async def award(self, award: Award, *, cooldown: float = 0.0) -> AwardOutcome:
        """Count `award` unless the user is on cooldown (`cooldown` s, across every process)
        or the award id was seen already."""
        (outcome,) = await self.award_many([(award, cooldown)])
        return outcome

    async def award_many(self, awards: Sequence[tuple[Award, float]]) -> list[AwardOutcome]:
        """`award` for several (award, cooldown) pairs in one round trip, in order; an award
        later in the list sees the cooldowns and totals of the earlier ones."""
        if not awards:
            return []
        days: dict[date, int] = {}
        day_args: list[str | int] = []
        rows: list[list[str]] = []
        for award, cooldown in awards:
            on = award.at.astimezone(UTC).date()
            index = days.get(on)
            if index is None:
                index = days[on] = len(days) + 1
                day = _day_cached(on)
                day_args += [*day.tags[1:], *day.expiry]
            rows.append(award.script_args(cooldown, index))
        raw = await self._award(
            keys=[self.stream, self.marker, self.profiles_key],
            args=[SEEN_TTL, self.keys.prefix, len(days), *day_args, orjson.dumps(rows)],
        )
        ready = bool(raw[-1])
        return [
            AwardOutcome(
                status=_STATUS[int(raw[i])],
                guild_total=float(raw[i + 1]),
                ready=ready,
                entry_id=_text(raw[i + 2]) or None,
            )
            for i in range(0, len(raw) - 1, 3)
        ]

    async def set_profiles(self, profiles: Mapping[int, Profile]) -> None:
        if profiles:
            await self.redis.hset(
                self.profiles_key,
                mapping={
                    str(uid): orjson.dumps({"name": p.name, "avatar": p.avatar})
                    for uid, p in profiles.items()
                },
            )

    # -- reads -------------------------------------------------------------------------------

    async def top(
        self,
        guild_id: int | None,
        period: str = "alltime",
        *,
        offset: int = 0,
        limit: int = 10,
        when: datetime | None = None,
    ) -> list[Entry]:
        """Ranks offset+1 .. offset+limit, highest score first (ties: higher user id first,
        Redis's order for equal scores in ZREVRANGE)."""
        if limit <= 0:
            return []
        rows: list[Any] = await self.redis.zrevrange(
            self.board_key(guild_id, period, when), offset, offset + limit - 1, withscores=True
        )
        return [Entry(int(_text(m)), float(s), offset + i + 1) for i, (m, s) in enumerate(rows)]

    async def rank(
        self, guild_id: int | None, period: str, user_id: int, when: datetime | None = None
    ) -> Entry | None:
        """`user_id`'s place on a board, or None if they are not on it."""
        key = self.board_key(guild_id, period, when)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrevrank(key, str(user_id))
            pipe.zscore(key, str(user_id))
            rank, score = await pipe.execute()
        if rank is None or score is None:
            return None
        return Entry(user_id, float(score), int(rank) + 1)

    async def score(
        self, guild_id: int | None, period: str, user_id: int, when: datetime | None = None
    ) -> float:
        value = await self.redis.zscore(self.board_key(guild_id, period, when), str(user_id))
        return float(value) if value is not None else 0.0

    async def count(
        self, guild_id: int | None, period: str = "alltime", when: datetime | None = None
    ) -> int:
        return int(await self.redis.zcard(self.board_key(guild_id, period, when)))

    async def profiles(self, user_ids: Iterable[int]) -> dict[int, Profile]:
        ids = [str(u) for u in user_ids]
        if not ids:
            return {}
        raw = await self.redis.hmget(self.profiles_key, ids)
        out: dict[int, Profile] = {}
        for uid, value in zip(ids, raw, strict=True):
            if value is None:
                continue
            data: dict[str, Any] = orjson.loads(value)
            out[int(uid)] = Profile(str(data.get("name") or uid), data.get("avatar"))
        return out

    async def is_ready(self) -> bool:
        return bool(await self.redis.exists(self.marker))

    # -- rebuild -----------------------------------------------------------------------------

    async def acquire_rebuild_lock(self) -> str | None:
        token = secrets.token_hex(8)
        got = await self.redis.set(self.lock_key, token, nx=True, px=int(REBUILD_LOCK_TTL * 1000))
        return token if got else None

    async def release_rebuild_lock(self, token: str) -> None:
        await self._release(keys=[self.lock_key], args=[token])

    async def rebuild(
        self,
        token: str,
        boards: Mapping[tuple[int | None, str], Mapping[int, float]],
        known: Callable[[list[str]], Awaitable[set[str]]],
        *,
        when: datetime,
    ) -> RebuildResult:
        """Replace every board with `boards` ((guild id or None, period) -> user -> score, the
        current periods at `when`, from a Postgres snapshot), plus the awards in the stream that
        the snapshot doesn't have.

        `known(award_ids)` answers which of the given award ids the snapshot has; it must read
        the same snapshot as `boards`, taken before this call. The caller holds the lock
        (`token`). Entries that reach the stream during the rebuild are replayed in the final,
        atomic swap, so no award is lost or counted twice.
        """
        tmp = self.keys("lb", "tmp", token) + ":"
        live = self.keys("lb") + ":"
        skip = tmp + "skip"
        built = tmp + "built"
        names: list[str] = []
        async with self.redis.pipeline(transaction=False) as pipe:
            for (guild_id, period), scores in boards.items():
                name = self.board_key(guild_id, period, when)[len(live) :]
                names.append(name)
                items = [(str(u), s) for u, s in scores.items() if s > 0]
                for start in range(0, len(items), 1000):
                    pipe.zadd(tmp + name, dict(items[start : start + 1000]))
            if names:
                pipe.sadd(built, *names)
            await pipe.execute()
        # Which of the awards in the stream the snapshot already counts.
        # Up to the stream's end as it is now: entries added later came after the snapshot and
        # are replayed without asking (the scan must not chase a stream that keeps growing).
        last = "0-0"
        newest = await self.redis.xrevrange(self.stream, max="+", min="-", count=1)
        stream_end = _text(newest[0][0]) if newest else None
        cursor = "-"
        while stream_end is not None:
            raw = await self.redis.xrange(self.stream, min=cursor, max=stream_end, count=2000)
            batch: list[Any] = list(raw or [])
            if cursor != "-" and batch and _text(batch[0][0]) == cursor:
                batch = batch[1:]
            if not batch:
                break
            ids = [_text(fields[b"a"]) for _, fields in batch if fields and b"a" in fields]
            have = await known(ids)
            if have:
                await self.redis.sadd(skip, *have)
            last = cursor = _text(batch[-1][0])
        expiry, tags = [], []
        for p in ("month", "week", "day"):
            end = period_end(p, when)
            assert end is not None
            expiry.append(int((end + EXPIRY_MARGIN).timestamp()))
            tags.append(period_tag(p, when))
        marker = orjson.dumps({"rebuilt_at": time.time()}).decode()
        result = await self._swap(
            keys=[self.stream, skip, built, self.marker, self.lock_key],
            args=[tmp, live, token, last, *tags, *expiry, marker],
        )
        if result == -1 or not isinstance(result, list):
            await self._drop_temp(tmp)
            raise RebuildBusy("the rebuild lock expired or was taken over")
        return RebuildResult(boards=int(result[0]), replayed=int(result[1]))

    async def _drop_temp(self, tmp: str) -> None:
        async for key in self.redis.scan_iter(match=tmp + "*", count=500):
            await self.redis.delete(key)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return str(value)
