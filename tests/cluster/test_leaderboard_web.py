"""The web leaderboard against real Redis: the JSON API, bad input, the page in headless Chromium.

The launcher's aiohttp app is served in-process on a real port; boards are written with
Leaderboard.award, as the bot writes them.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from browser import OFFLINE, check_screenshot, chromium, headless

from bot.entry import xp_progress
from bot.rpc import FindGuild
from cluster.http import Probes, build_app, serve
from cluster.leaderboard_page import MAX_PAGE_SIZE, PAGE_SIZE, avatar_url, icon_url
from cluster.workers import Supervisor
from ipc.bus import Bus
from ipc.client import Keys, create_redis
from ipc.leaderboard import Award, Leaderboard
from ipc.registry import ClusterInfo, Registry

GUILD, OTHER, EMPTY = 410000000000000001, 410000000000000002, 410000000000000003
ANN, BOB, CY, DEE = 510000000000000001, 510000000000000002, 510000000000000003, 510000000000000004
HASH = "0123456789abcdef0123456789abcdef"
NOW = datetime.now(UTC)
BOB_AVATAR = "https://cdn.discordapp.com/embed/avatars/1.png"
XSS = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
SHARDS = 2

_n = 0


async def give(
    board: Leaderboard,
    guild: int,
    user: int,
    xp: int,
    *,
    name: str | None = None,
    avatar: str | None = None,
    at: datetime = NOW,
) -> None:
    global _n
    _n += 1
    name = name if name is not None else f"user{user % 1000}"
    out = await board.award(Award(f"t:{_n}", guild, user, xp, at, name=name, avatar=avatar))
    assert out.awarded


class Site:
    def __init__(self, base: str, session: aiohttp.ClientSession) -> None:
        self.base = base
        self.session = session

    async def get(self, path: str) -> tuple[int, str, Any]:
        async with self.session.get(self.base + path, allow_redirects=False) as resp:
            body = await resp.read()
            ctype = resp.headers.get("Content-Type", "")
            data = await resp.json() if ctype.startswith("application/json") else None
            return resp.status, body.decode(), data


async def _serve(board: Leaderboard, registry: Registry | None = None) -> AsyncIterator[Site]:
    probes = Probes({})
    app = build_app(
        Supervisor([], log_level="INFO", log_format="json"),
        probes,
        registry,
        SHARDS,
        leaderboard=board,
    )
    runner, port = await serve(app, 0)
    try:
        async with aiohttp.ClientSession() as session:
            yield Site(f"http://127.0.0.1:{port}", session)
    finally:
        await runner.cleanup()


@pytest.fixture
def board(redis: aioredis.Redis, keys: Keys) -> Leaderboard:
    return Leaderboard(redis, keys)


@pytest.fixture
async def site(board: Leaderboard) -> AsyncIterator[Site]:
    async for s in _serve(board):
        yield s


@pytest.fixture
async def ranked(board: Leaderboard) -> Leaderboard:
    await give(board, GUILD, ANN, 1200, name="Ann", avatar=HASH)
    await give(board, GUILD, BOB, 500, name="Bob", avatar=BOB_AVATAR)
    await give(board, GUILD, CY, 90, name=XSS, avatar="https://evil.example/track.png")
    # Old XP: on the all-time board, in no current month, week or day.
    await give(board, GUILD, DEE, 2000, name="Dee", at=NOW - timedelta(days=40))
    await give(board, OTHER, BOB, 1000, name="Bob", avatar=BOB_AVATAR)  # profiles are global
    return board


async def test_api_guild_alltime(ranked: Leaderboard, site: Site) -> None:
    status, _, data = await site.get(f"/api/leaderboard/{GUILD}")
    assert status == 200
    assert data["scope"] == "guild" and data["guild_id"] == str(GUILD)
    assert data["period"] == "alltime" and data["period_start"] is None
    assert (data["page"], data["pages"], data["total"], data["per_page"]) == (1, 1, 4, PAGE_SIZE)
    got = [(e["rank"], e["user_id"], e["name"], e["xp"], e["level"]) for e in data["entries"]]
    assert got == [
        (1, str(DEE), "Dee", 2000, 6),
        (2, str(ANN), "Ann", 1200, 5),
        (3, str(BOB), "Bob", 500, 3),
        (4, str(CY), XSS, 90, 0),
    ]
    ann = data["entries"][1]
    # MEE6's curve (docs/leveling.md): level 5 at 1,150 XP, level 6 at 1,150 + 475.
    assert (ann["xp_into_level"], ann["xp_for_next"]) == (50, 475)
    assert ann["progress"] == round(50 / 475, 4)
    assert xp_progress(1200) == (5, 50, 475)  # the same curve, through bot.entry
    assert ann["avatar_url"] == f"https://cdn.discordapp.com/avatars/{ANN}/{HASH}.png?size=64"
    assert data["entries"][2]["avatar_url"] == (
        "https://cdn.discordapp.com/embed/avatars/1.png?size=64"
    )
    assert data["entries"][3]["avatar_url"] is None  # not Discord's CDN
    assert data["entries"][0]["avatar_url"] is None
    assert all(isinstance(e["user_id"], str) for e in data["entries"])


async def test_api_periods_and_global(ranked: Leaderboard, site: Site) -> None:
    for period in ("month", "week", "day"):
        status, _, data = await site.get(f"/api/leaderboard/{GUILD}?period={period}")
        assert status == 200 and data["period"] == period
        assert [e["user_id"] for e in data["entries"]] == [str(ANN), str(BOB), str(CY)]
        assert data["period_start"] is not None and data["period_end"] > data["period_start"]
    _, _, day = await site.get(f"/api/leaderboard/{GUILD}?period=day")
    assert day["period_start"] == NOW.strftime("%Y-%m-%dT00:00:00Z")
    status, _, glob = await site.get("/api/leaderboard/global")
    assert status == 200 and glob["scope"] == "global" and glob["guild_id"] is None
    # Bob: 500 here + 1,000 in the other guild.
    assert [(e["user_id"], e["xp"]) for e in glob["entries"]] == [
        (str(DEE), 2000),
        (str(BOB), 1500),
        (str(ANN), 1200),
        (str(CY), 90),
    ]
    _, _, other = await site.get(f"/api/leaderboard/{OTHER}?period=week")
    assert [(e["rank"], e["user_id"], e["xp"]) for e in other["entries"]] == [(1, str(BOB), 1000)]


async def test_pagination(board: Leaderboard, site: Site) -> None:
    for i in range(120):
        await give(board, GUILD, ANN + i, 10_000 - i)
    status, _, first = await site.get(f"/api/leaderboard/{GUILD}")
    assert status == 200 and first["pages"] == 3 and first["total"] == 120
    assert [e["rank"] for e in first["entries"]] == list(range(1, 51))
    _, _, last = await site.get(f"/api/leaderboard/{GUILD}?page=3")
    assert [e["rank"] for e in last["entries"]] == list(range(101, 121))
    assert last["entries"][-1]["user_id"] == str(ANN + 119)
    assert last["entries"][-1]["name"] == f"user{(ANN + 119) % 1000}"
    _, _, big = await site.get(f"/api/leaderboard/{GUILD}?page=2&per_page={MAX_PAGE_SIZE}")
    assert [e["rank"] for e in big["entries"]] == list(range(101, 121))
    # The page: prev/next links keep the period, and the page number is in the URL.
    status, page, _ = await site.get(f"/leaderboard/{GUILD}?page=2&period=alltime")
    assert status == 200
    assert 'href="/leaderboard/410000000000000001" rel' not in page
    assert f'href="/leaderboard/{GUILD}"' in page  # previous: page 1 has no parameter
    assert f'href="/leaderboard/{GUILD}?page=3"' in page
    assert "Page 2 of 3" in page and 'data-rank="51"' in page and 'data-rank="100"' in page
    _, week, _ = await site.get(f"/leaderboard/{GUILD}?period=week")
    assert f'href="/leaderboard/{GUILD}?period=week&amp;page=2"' in week


@pytest.mark.parametrize(
    ("path", "field", "words"),
    [
        ("/api/leaderboard/abc", "guild_id", "'abc' is not a guild id"),
        ("/api/leaderboard/-5", "guild_id", "is not a guild id"),
        ("/api/leaderboard/0", "guild_id", "is not a guild id"),
        (f"/api/leaderboard/{'9' * 30}", "guild_id", "is not a guild id"),
        (f"/api/leaderboard/{2**64}", "guild_id", "is not a guild id"),
        (f"/api/leaderboard/{GUILD}?period=yearly", "period", "'yearly' is not a period"),
        (f"/api/leaderboard/{GUILD}?page=0", "page", "page must be 1 or more"),
        (f"/api/leaderboard/{GUILD}?page=-1", "page", "whole number"),
        (f"/api/leaderboard/{GUILD}?page=abc", "page", "whole number"),
        (f"/api/leaderboard/{GUILD}?page=1.5", "page", "whole number"),
        (f"/api/leaderboard/{GUILD}?page=1000000000", "page", "past the last page (1;"),
        (f"/api/leaderboard/{GUILD}?page={'9' * 5000}", "page", "past the last page"),
        (f"/api/leaderboard/{GUILD}?page=2", "page", "page 2 is past the last page"),
        (f"/api/leaderboard/{GUILD}?per_page=0", "per_page", "1 or more"),
        (f"/api/leaderboard/{GUILD}?per_page=1000", "per_page", f"at most {MAX_PAGE_SIZE}"),
        ("/api/leaderboard/global?period=", None, None),  # empty: the default, all-time
    ],
)
async def test_bad_input_is_a_400_naming_it(
    ranked: Leaderboard, site: Site, path: str, field: str | None, words: str | None
) -> None:
    status, _, data = await site.get(path)
    if field is None:
        assert status == 200
        return
    assert status == 400, data
    assert data["field"] == field and words in data["error"]
    status, page, _ = await site.get(path.removeprefix("/api"))
    assert status == 400
    assert "No such leaderboard page" in page
    assert words.replace("'", "&#x27;") in page


async def test_empty_guild_is_a_friendly_page(site: Site) -> None:
    status, _, data = await site.get(f"/api/leaderboard/{EMPTY}")
    assert status == 200
    assert (data["total"], data["pages"], data["entries"]) == (0, 1, [])
    status, page, _ = await site.get(f"/leaderboard/{EMPTY}")
    assert status == 200 and "Nobody is ranked here yet." in page
    _, day, _ = await site.get(f"/leaderboard/{EMPTY}?period=day")
    assert "Nobody is ranked here today (UTC)." in day
    status, _, _ = await site.get("/leaderboard")
    assert status == 302


async def test_the_bare_address_opens_the_status_page(site: Site) -> None:
    status, _, _ = await site.get("/")
    assert status == 302
    async with site.session.get(site.base + "/", allow_redirects=False) as resp:
        assert resp.headers["Location"] == "/status"


class Worker:
    """A worker's side of the IPC bus as bot/guildhouse.py registers it: in the registry with its
    shards, answering `find_guild` (with the same payload type) from what it knows."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, guilds: dict[int, dict[str, Any]]):
        self.registry = Registry(redis, keys)
        self.bus = Bus(redis, keys, 0, self.registry)
        self.guilds = guilds
        self.asked: list[int] = []

        async def find_guild(req: FindGuild) -> dict[str, Any] | None:
            self.asked.append(req.guild_id)
            return self.guilds.get(req.guild_id)

        self.bus.handle("find_guild", FindGuild, find_guild)

    async def __aenter__(self) -> Worker:
        info = ClusterInfo(0, list(range(SHARDS)), 1, "test", "ready", 0.0)
        await self.registry.publish(info)
        await self.bus.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.bus.stop()
        await self.registry.remove(0)


async def test_a_server_page_shows_its_name_and_icon(
    ranked: Leaderboard, redis: aioredis.Redis, keys: Keys
) -> None:
    """The launcher has no Discord cache: the worker with the guild names it over the bus."""
    known = {GUILD: {"cluster_id": 0, "shard_id": 0, "name": "The <Dice> Tower", "icon": HASH}}
    async with Worker(redis, keys, known) as worker:
        async for s in _serve(ranked, Registry(redis, keys)):
            status, page, _ = await s.get(f"/leaderboard/{GUILD}")
            assert status == 200
            assert "<h1><bdi>The &lt;Dice&gt; Tower</bdi></h1>" in page
            assert f"Server {GUILD}" not in page
            assert f'src="{icon_url(GUILD, HASH)}"' in page
            assert icon_url(GUILD, HASH) == (
                f"https://cdn.discordapp.com/icons/{GUILD}/{HASH}.png?size=64"
            )
            _, _, data = await s.get(f"/api/leaderboard/{GUILD}?period=week")
            assert data["guild_name"] == "The <Dice> Tower"
            assert data["guild_icon_url"] == icon_url(GUILD, HASH)
            # Remembered: page views don't each cost the worker a request.
            assert worker.asked == [GUILD]
            # A server the worker doesn't have (or no worker answers for) keeps its id.
            status, page, _ = await s.get(f"/leaderboard/{EMPTY}")
            assert status == 200 and f"Server {EMPTY}" in page
            _, _, glob = await s.get("/api/leaderboard/global")
            assert glob["guild_name"] is None
    assert icon_url(GUILD, "not a hash") is None


async def test_names_are_escaped(ranked: Leaderboard, site: Site) -> None:
    status, page, _ = await site.get(f"/leaderboard/{GUILD}")
    assert status == 200
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img src=x" in page
    assert "evil.example" not in page


async def test_redis_down_is_a_503_not_a_500(keys: Keys) -> None:
    dead = create_redis("redis://127.0.0.1:1")
    try:
        async for s in _serve(Leaderboard(dead, keys)):
            status, _, data = await s.get(f"/api/leaderboard/{GUILD}")
            assert status == 503 and "unavailable" in data["error"]
            status, page, _ = await s.get(f"/leaderboard/{GUILD}")
            assert status == 503 and "unavailable" in page
            status, _, data = await s.get("/api/leaderboard/nope")
            assert status == 400  # input is checked before Redis is asked
    finally:
        await dead.aclose()


def test_avatar_urls() -> None:
    assert avatar_url(1, None) is None
    assert (
        avatar_url(1, "a_" + HASH) == f"https://cdn.discordapp.com/avatars/1/a_{HASH}.gif?size=64"
    )
    assert avatar_url(1, "javascript:alert(1)") is None
    assert avatar_url(1, "http://cdn.discordapp.com/x.png") is None  # not https
    assert avatar_url(1, "https://cdn.discordapp.com.evil.example/x.png") is None
    assert (
        avatar_url(1, "https://cdn.discordapp.com/avatars/1/abc.png?size=1024")
        == "https://cdn.discordapp.com/avatars/1/abc.png?size=64"
    )


# -- in a real browser ------------------------------------------------------------------------


async def test_page_in_chromium(ranked: Leaderboard, site: Site, tmp_path: Path) -> None:
    import asyncio

    browser = chromium()
    url = f"{site.base}/leaderboard/{GUILD}"
    dom = await asyncio.to_thread(headless, browser, tmp_path / "p1", OFFLINE, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    rows = re.findall(r'<li class="r(\d+)" data-rank="(\d+)" data-user="(\d+)">', html)
    assert [(int(r), int(u)) for _, r, u in rows] == [(1, DEE), (2, ANN), (3, BOB), (4, CY)]
    assert ">Ann</bdi>" in html and ">Dee</bdi>" in html
    assert "Level 5 · 50 / 475 XP to level 6" in html
    assert "<b>1,200</b>" in html and "<b>2,000</b>" in html
    # The hostile name is text: no element was injected, and its initial is shown.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert '<img src="x"' not in html and "<img src=x" not in html
    # Avatars that fail to load are removed, leaving the initial.
    assert "<img" not in html
    assert re.search(r'class="avatar"[^>]*>A</span>', html)
    assert 'aria-current="page">All time</a>' in html
    week = await asyncio.to_thread(
        headless, browser, tmp_path / "p2", OFFLINE, "--dump-dom", url + "?period=week"
    )
    assert 'aria-current="page">This week</a>' in week.stdout
    assert f'data-user="{DEE}"' not in week.stdout  # 40-day-old XP isn't this week's
    shot = tmp_path / "leaderboard.png"
    result = await asyncio.to_thread(
        headless,
        browser,
        tmp_path / "p3",
        OFFLINE,
        f"--screenshot={shot}",
        "--window-size=1100,800",
        url,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    check_screenshot(shot, min_size=20_000, keep_as="leaderboard.png")
