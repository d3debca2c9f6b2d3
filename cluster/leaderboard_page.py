"""The public web leaderboard: a page per guild, and the global one, with a JSON API behind it.

``/leaderboard/{guild_id|global}?period=alltime&page=1`` is rendered here on the server (no
front-end build; inline CSS and a few lines of script for avatars that fail to load), from the
same data ``/api/leaderboard/{guild_id|global}`` returns as JSON. Everything comes from Redis
through ipc.leaderboard.Leaderboard: one page is three Redis calls (count, top, profiles).
Levels come from the bot's one level curve, through bot.entry.xp_progress.

Names are user-controlled: every value is escaped (html.escape) and names are isolated with
<bdi>, so a name can neither inject markup nor flip the direction of the row.

A server's name and icon are not in the boards, and the launcher has no Discord cache: the
worker whose shard holds the guild knows them, and answers the IPC bus's `find_guild` request
(`GuildDirectory`, which remembers the answers for a while).
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

from redis.exceptions import RedisError

from ipc.bus import Bus, BusError
from ipc.leaderboard import PERIODS, Leaderboard, Profile, period_end, period_start
from ipc.registry import Registry

log = logging.getLogger(__name__)

PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
MAX_GUILD_ID = 2**64 - 1

Progress = Callable[[float], tuple[int, int, int]]  # xp -> (level, into level, for next)

PERIOD_LABELS = {"alltime": "All time", "month": "This month", "week": "This week", "day": "Today"}
_DIGITS = re.compile(r"[0-9]+")
_AVATAR_HASH = re.compile(r"(a_)?[0-9a-f]{32}")
CDN = "https://cdn.discordapp.com"
_CDN_HOSTS = frozenset({"cdn.discordapp.com", "media.discordapp.net"})


class BadRequest(ValueError):
    """A bad path or query parameter; `field` names it, the message says what was wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Query:
    guild_id: int | None  # None: the global board
    period: str
    page: int
    per_page: int

    @property
    def scope(self) -> str:
        return "global" if self.guild_id is None else str(self.guild_id)


def _whole(field: str, raw: str, *, lowest: int = 1) -> int:
    if not _DIGITS.fullmatch(raw):
        raise BadRequest(field, f"{field} must be a whole number of {lowest} or more, not {raw!r}")
    if len(raw) > 9:  # absurd; past any last page, and no huge int() on request input
        return 10**9
    value = int(raw)
    if value < lowest:
        raise BadRequest(field, f"{field} must be {lowest} or more, not {value}")
    return value


def parse_query(scope: str, params: Mapping[str, str]) -> Query:
    """The board, period, page and page size of a request; BadRequest naming what is wrong."""
    if scope == "global":
        guild_id = None
    elif _DIGITS.fullmatch(scope) and len(scope) <= 20 and 0 < int(scope) <= MAX_GUILD_ID:
        guild_id = int(scope)
    else:
        raise BadRequest(
            "guild_id",
            f"{scope[:40]!r} is not a guild id: use a server id (a Discord snowflake, a "
            "positive whole number) or 'global'",
        )
    period = params.get("period", "alltime") or "alltime"
    if period not in PERIODS:
        raise BadRequest(
            "period", f"{period[:40]!r} is not a period; use one of {', '.join(PERIODS)}"
        )
    page = _whole("page", params.get("page", "1") or "1")
    per_page = _whole("per_page", params.get("per_page", str(PAGE_SIZE)) or str(PAGE_SIZE))
    if per_page > MAX_PAGE_SIZE:
        raise BadRequest("per_page", f"per_page must be at most {MAX_PAGE_SIZE}, not {per_page}")
    return Query(guild_id, period, page, per_page)


def avatar_url(user_id: int, avatar: str | None, size: int = 64) -> str | None:
    """A Discord CDN URL for a profile's avatar: built from an avatar hash, or the stored URL
    if it is on Discord's CDN; None (the page shows an initial) for anything else."""
    if not avatar:
        return None
    if _AVATAR_HASH.fullmatch(avatar):
        ext = "gif" if avatar.startswith("a_") else "png"
        return f"{CDN}/avatars/{user_id}/{avatar}.{ext}?size={size}"
    try:
        parts = urlsplit(avatar)
    except ValueError:
        return None
    if parts.scheme != "https" or parts.hostname not in _CDN_HOSTS:
        return None  # never a tracking pixel or a javascript: URL on a public page
    return parts._replace(query=f"size={size}", fragment="").geturl()


def icon_url(guild_id: int, icon: str | None, size: int = 64) -> str | None:
    """A Discord CDN URL for a server's icon hash; None (the page shows an initial) without
    one, or for anything that isn't a hash."""
    if not icon or not _AVATAR_HASH.fullmatch(icon):
        return None
    ext = "gif" if icon.startswith("a_") else "png"
    return f"{CDN}/icons/{guild_id}/{icon}.{ext}?size={size}"


@dataclass(frozen=True)
class GuildInfo:
    name: str
    icon_url: str | None


class GuildLookup(Protocol):
    async def get(self, guild_id: int) -> GuildInfo | None: ...


# An id no worker has: the launcher's side of the bus only asks.
LAUNCHER_BUS_ID = -1


class GuildDirectory:
    """Server names and icons for the pages, asked of the worker that has the guild.

    The launcher keeps no Discord cache, and the boards store members, not servers; the worker
    whose shard holds the guild answers the IPC bus's `find_guild` (bot/guildhouse.py) from its
    cache. Answers are remembered for `ttl` seconds (a renamed server shows its new name after
    that), unknown guilds and silent workers for `miss_ttl`, so a page view costs no round trip
    most of the time; lookups of one guild at the same moment share one request. A lookup
    that fails leaves the page with the server's id, as before: a name is a nicety, the board
    is what matters.

    The bus is started for a lookup and stopped after it, not kept: a launcher subscribed all
    the time would receive every cluster-wide request of the workers and answer each with an
    error, for a lookup that is rare once cached."""

    def __init__(
        self,
        registry: Registry,
        shard_count: int,
        *,
        ttl: float = 600.0,
        miss_ttl: float = 60.0,
        within: float = 1.5,
    ) -> None:
        self.registry = registry
        self.shard_count = max(1, shard_count)
        self.ttl = ttl
        self.miss_ttl = miss_ttl
        self.within = within
        self._known: dict[int, tuple[float, GuildInfo | None]] = {}
        self._asking: dict[int, asyncio.Future[GuildInfo | None]] = {}

    async def get(self, guild_id: int) -> GuildInfo | None:
        now = time.monotonic()
        known = self._known.get(guild_id)
        if known is not None and known[0] > now:
            return known[1]
        running = self._asking.get(guild_id)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[GuildInfo | None] = asyncio.get_running_loop().create_future()
        self._asking[guild_id] = future
        try:
            found = await self._ask(guild_id)
            future.set_result(found)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: nobody else may be waiting for it
            raise
        finally:
            del self._asking[guild_id]
        if len(self._known) > 10_000:  # a crawler walking ids must not grow this forever
            self._known = {k: v for k, v in self._known.items() if v[0] > now}
        self._known[guild_id] = (now + (self.ttl if found else self.miss_ttl), found)
        return found

    async def _ask(self, guild_id: int) -> GuildInfo | None:
        try:
            owner = await self.registry.find_guild_cluster(guild_id, self.shard_count)
            if owner is None:
                return None
            bus = Bus(self.registry.redis, self.registry.keys, LAUNCHER_BUS_ID, self.registry)
            await bus.start()
            try:
                answer = await bus.call(
                    owner.cluster_id, "find_guild", {"guild_id": guild_id}, within=self.within
                )
            finally:
                await bus.stop()
        except (BusError, RedisError, OSError, TimeoutError) as exc:
            log.debug("leaderboard: no name for guild %d: %s", guild_id, exc)
            return None
        if not isinstance(answer, dict) or not isinstance(answer.get("name"), str):
            return None  # not on that cluster's shards (yet): the id it is
        icon = answer.get("icon")
        icon_hash = icon if isinstance(icon, str) else None
        return GuildInfo(answer["name"], icon_url(guild_id, icon_hash))


def _period_range(period: str, now: datetime) -> tuple[datetime | None, datetime | None]:
    return period_start(period, now), period_end(period, now)


def _iso(when: datetime | None) -> str | None:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if when else None


async def board_page(
    board: Leaderboard,
    q: Query,
    progress: Progress,
    *,
    now: datetime | None = None,
    guilds: GuildLookup | None = None,
) -> dict[str, Any]:
    """One page of a board, as the JSON API returns it. BadRequest for a page past the end."""
    when = now or datetime.now(UTC)
    guild = None
    if guilds is not None and q.guild_id is not None:
        guild = await guilds.get(q.guild_id)
    total = await board.count(q.guild_id, q.period, when=when)
    pages = max(1, -(-total // q.per_page))
    if q.page > pages:
        raise BadRequest(
            "page",
            f"page {q.page:,} is past the last page ({pages:,}; {total:,} ranked, "
            f"{q.per_page} a page)",
        )
    entries = await board.top(
        q.guild_id, q.period, offset=(q.page - 1) * q.per_page, limit=q.per_page, when=when
    )
    profiles: dict[int, Profile] = await board.profiles(e.user_id for e in entries)
    rows = []
    for e in entries:
        xp = int(e.score)
        level, into, needed = progress(xp)
        profile = profiles.get(e.user_id)
        rows.append(
            {
                "rank": e.rank,
                "user_id": str(e.user_id),
                "name": profile.name if profile else None,
                "avatar_url": avatar_url(e.user_id, profile.avatar if profile else None),
                "xp": xp,
                "level": level,
                "xp_into_level": into,
                "xp_for_next": needed,
                "progress": round(min(1.0, into / needed), 4) if needed else 1.0,
            }
        )
    start, end = _period_range(q.period, when)
    return {
        "scope": "global" if q.guild_id is None else "guild",
        "guild_id": None if q.guild_id is None else str(q.guild_id),
        "guild_name": guild.name if guild else None,
        "guild_icon_url": guild.icon_url if guild else None,
        "period": q.period,
        "period_start": _iso(start),
        "period_end": _iso(end),
        "page": q.page,
        "per_page": q.per_page,
        "pages": pages,
        "total": total,
        "entries": rows,
    }


# -- HTML ---------------------------------------------------------------------------------------

_CSS = """
:root { --bg: #f4f5f8; --card: #fff; --ink: #1d2330; --mute: #667085; --line: #e4e7ec;
        --accent: #5865f2; --bar: #e8eaf6; --gold: #f5b301; --silver: #a7b0be; --bronze: #cd7f32; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
       background: var(--bg); color: var(--ink); }
a { color: var(--accent); text-decoration: none; }
.wrap { max-width: 920px; margin: 0 auto; padding: 20px 16px 40px; }
header { display: flex; align-items: center; gap: 14px; }
header h1 { font-size: 22px; margin: 0; }
header .avatar { width: 56px; height: 56px; border-radius: 16px; font-size: 24px;
                 flex: none; }
header p { margin: 4px 0 0; color: var(--mute); }
nav.tabs { display: flex; gap: 6px; margin: 18px 0 6px; flex-wrap: wrap; }
nav.tabs a { padding: 7px 14px; border-radius: 999px; background: var(--card);
             border: 1px solid var(--line); color: var(--ink); font-weight: 600; }
nav.tabs a[aria-current="page"] { background: var(--accent); border-color: var(--accent);
                                  color: #fff; }
.when { color: var(--mute); font-size: 13px; margin: 0 0 12px; }
ol.board { list-style: none; margin: 0; padding: 0; display: grid; gap: 8px; }
ol.board li { display: grid; grid-template-columns: 48px 44px 1fr auto; gap: 12px;
              align-items: center; background: var(--card); border: 1px solid var(--line);
              border-radius: 10px; padding: 10px 14px; }
.rank { font-weight: 700; font-size: 17px; text-align: center; color: var(--mute);
        font-variant-numeric: tabular-nums; }
li.r1 .rank { color: var(--gold); } li.r2 .rank { color: var(--silver); }
li.r3 .rank { color: var(--bronze); }
.avatar { position: relative; width: 44px; height: 44px; border-radius: 50%; overflow: hidden;
          background: hsl(var(--hue), 55%, 52%); color: #fff; display: grid;
          place-items: center; font-weight: 700; font-size: 18px; }
.avatar img { position: absolute; inset: 0; width: 100%; height: 100%; object-fit: cover; }
.who { min-width: 0; }
.name { font-weight: 600; display: block; overflow: hidden; text-overflow: ellipsis;
        white-space: nowrap; }
.meta { display: block; color: var(--mute); font-size: 13px; }
.bar { display: block; max-width: 420px; height: 8px; border-radius: 4px;
       background: var(--bar); margin-top: 5px; overflow: hidden; }
.bar span { display: block; height: 100%; background: var(--accent); border-radius: 4px; }
.score { text-align: right; font-variant-numeric: tabular-nums; }
.score b { display: block; font-size: 17px; }
.score span { color: var(--mute); font-size: 12px; }
.pager { display: flex; justify-content: space-between; align-items: center; margin-top: 16px;
         gap: 8px; }
.pager a, .pager .off { padding: 7px 14px; border-radius: 8px; background: var(--card);
                        border: 1px solid var(--line); font-weight: 600; }
.pager .off { color: var(--line); }
.empty, .error { background: var(--card); border: 1px dashed var(--line); border-radius: 10px;
                 padding: 36px 20px; text-align: center; color: var(--mute); }
.error { border-style: solid; border-color: #fda29b; color: #912018; }
.empty b { display: block; color: var(--ink); font-size: 17px; margin-bottom: 4px; }
@media (max-width: 560px) {
  ol.board li { grid-template-columns: 34px 36px 1fr auto; gap: 8px; padding: 8px 10px; }
  .avatar { width: 36px; height: 36px; font-size: 15px; }
  .rank { font-size: 15px; }
  .score b { font-size: 15px; }
}
"""

# Avatars are on Discord's CDN; one that fails to load is removed, showing the initial beneath.
_SCRIPT = """
"use strict";
for (const img of document.querySelectorAll(".avatar img")) {
  const drop = () => img.remove();
  if (img.complete && img.naturalWidth === 0) drop(); else img.addEventListener("error", drop);
}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _href(q: Query, *, period: str | None = None, page: int = 1) -> str:
    params: dict[str, str | int] = {}
    if (period or q.period) != "alltime":
        params["period"] = period or q.period
    if page != 1:
        params["page"] = page
    if q.per_page != PAGE_SIZE:
        params["per_page"] = q.per_page
    return f"/leaderboard/{q.scope}" + (f"?{urlencode(params)}" if params else "")


def _when(period: str, now: datetime) -> str:
    start, end = _period_range(period, now)
    if start is None or end is None:
        return "Every XP point earned, since the beginning."
    last = end - timedelta(days=1)
    if period == "month":
        return f"{start:%B %Y} (UTC)."
    if period == "week":
        return (
            f"Monday {start:%-d %b} to Sunday {last:%-d %b %Y} (UTC; a week starts Monday "
            "00:00 UTC)."
        )
    return f"{start:%A %-d %B %Y} (UTC; a day starts at 00:00 UTC)."


def _initial(name: str) -> str:
    for ch in name:
        if ch.isalnum():
            return ch.upper()
    return "?"


def _rows(entries: Iterable[dict[str, Any]]) -> str:
    out = []
    for e in entries:
        name = e["name"] or f"User {e['user_id']}"
        hue = int(e["user_id"]) * 2654435761 % 359  # spread neighbouring ids apart
        img = (
            f'<img src="{_e(e["avatar_url"])}" alt="" width="44" height="44" '
            'loading="lazy" referrerpolicy="no-referrer">'
            if e["avatar_url"]
            else ""
        )
        pct = round(e["progress"] * 100, 1)
        out.append(
            f'<li class="r{e["rank"]}" data-rank="{e["rank"]}" data-user="{_e(e["user_id"])}">'
            f'<span class="rank">#{e["rank"]:,}</span>'
            f'<span class="avatar" style="--hue: {hue}" aria-hidden="true">'
            f"{_e(_initial(name))}{img}</span>"
            f'<span class="who"><bdi class="name">{_e(name)}</bdi>'
            f'<span class="meta">Level {e["level"]} · {e["xp_into_level"]:,} / '
            f"{e['xp_for_next']:,} XP to level {e['level'] + 1}</span>"
            f'<span class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" '
            f'aria-valuenow="{pct}"><span style="width: {pct}%"></span></span></span>'
            f'<span class="score"><b>{e["xp"]:,}</b><span>XP</span></span></li>'
        )
    return "\n".join(out)


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f'<div class="wrap">\n{body}\n</div>\n<script>{_SCRIPT}</script>\n</body>\n</html>\n'
    )


def _guild_badge(guild_id: int, name: str, icon: str | None) -> str:
    hue = guild_id * 2654435761 % 359
    img = (
        f'<img src="{_e(icon)}" alt="" width="56" height="56" referrerpolicy="no-referrer">'
        if icon
        else ""
    )
    return (
        f'<span class="avatar guild-icon" style="--hue: {hue}" aria-hidden="true">'
        f"{_e(_initial(name))}{img}</span>"
    )


def render_html(q: Query, data: dict[str, Any], *, now: datetime | None = None) -> str:
    when = now or datetime.now(UTC)
    badge = ""
    if q.guild_id is None:
        title, about = "Global leaderboard", "Every server Guildhouse is in, added up"
    elif data.get("guild_name"):
        title, about = str(data["guild_name"]), "Leaderboard"
        badge = _guild_badge(q.guild_id, title, data.get("guild_icon_url"))
    else:  # the worker that has it didn't say (not up, or not in the server)
        title, about = "Leaderboard", f"Server {q.guild_id}"
    ranked = data["total"]
    about += f" · {ranked:,} member{'s' if ranked != 1 else ''} ranked"
    tabs = "".join(
        f'<a href="{_e(_href(q, period=p))}" data-period="{p}"'
        + (' aria-current="page"' if p == q.period else "")
        + f">{PERIOD_LABELS[p]}</a>"
        for p in PERIODS
    )
    if data["entries"]:
        main = f'<ol class="board">\n{_rows(data["entries"])}\n</ol>'
    else:
        which = {
            "alltime": "yet",
            "month": "this month",
            "week": "this week",
            "day": "today (UTC)",
        }[q.period]
        main = (
            f'<div class="empty"><b>Nobody is ranked here {which}.</b>'
            "Chatting in the server earns XP; the first message that earns some puts you on "
            "the board.</div>"
        )
    pager = ""
    if data["pages"] > 1:
        prev = (
            f'<a rel="prev" href="{_e(_href(q, page=q.page - 1))}">‹ Previous</a>'
            if q.page > 1
            else '<span class="off">‹ Previous</span>'
        )
        nxt = (
            f'<a rel="next" href="{_e(_href(q, page=q.page + 1))}">Next ›</a>'
            if q.page < data["pages"]
            else '<span class="off">Next ›</span>'
        )
        pager = (
            f'<div class="pager">{prev}<span>Page {q.page:,} of {data["pages"]:,}</span>{nxt}</div>'
        )
    body = (
        f"<header>{badge}<div><h1><bdi>{_e(title)}</bdi></h1><p>{_e(about)}</p></div>"
        "</header>\n"
        f'<nav class="tabs" aria-label="Period">{tabs}</nav>\n'
        f'<p class="when">{_e(_when(q.period, when))}</p>\n{main}\n{pager}'
    )
    page_title = f"{title} · Leaderboard" if badge else title
    return _page(f"{page_title} · {PERIOD_LABELS[q.period]}", body)


def render_error_html(status: int, message: str) -> str:
    heading = "No such leaderboard page" if status == 400 else "The leaderboard is unavailable"
    body = (
        f"<header><h1>{_e(heading)}</h1></header>\n"
        f'<p class="error" role="alert">{_e(message)}</p>\n'
        '<p><a href="/leaderboard/global">Go to the global leaderboard</a></p>'
    )
    return _page(heading, body)
