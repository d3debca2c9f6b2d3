"""The analytics web page on the launcher's HTTP side: a link the `analytics` command signs
opens the server's figures and their CSV; a forged, altered, expired or other server's link is
refused; every server's page (0) only with its own link."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest

from bot.cogs.analytics import store, web
from bot.cogs.analytics.figures import Use, fold
from bot.entry import analytics_page
from cluster.http import Probes, build_app, serve
from cluster.workers import Supervisor

pytestmark = pytest.mark.integration

G = 6161
TOKEN = "test-token"


@pytest.fixture
async def base(migrated_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[str]:
    now = datetime.now(UTC).timestamp()
    uses = [Use(G, "roll", "ok", 1, 10, now), Use(G, "roll", "error", 2, 30, now)]
    uses.append(Use(G + 1, "help", "ok", 3, 5, now))
    await store.write(pool, fold(uses))
    app = build_app(
        Supervisor([], log_level="INFO", log_format="json"),
        Probes({}),
        analytics=partial(analytics_page, migrated_dsn, TOKEN),
    )
    runner, port = await serve(app, 0)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _path(scope: int, days: int = 7, now: float | None = None) -> str:
    url = web.public_url(scope, days, TOKEN, time.time() if now is None else now)
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def _get(base: str, path: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as http, http.get(base + path) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


async def test_a_signed_link_opens_the_page_and_its_csv(base: str) -> None:
    status, ctype, body = await _get(base, _path(G))
    assert status == 200 and ctype.startswith("text/html")
    assert f"server {G}" in body and "2 commands" in body and "error rate 50.0%" in body
    assert "<td>roll</td><td>2</td><td>0</td><td>1</td><td>20</td>" in body
    # The last 7 days by hour: both uses in one hour's cell (the fixture's), the other 167 empty.
    assert body.count(' UTC: 2" style') == 1 and body.count(' UTC: 0" style') == 7 * 24 - 1
    status, ctype, csv = await _get(base, _path(G) + "&format=csv")
    assert status == 200 and ctype.startswith("text/csv")
    assert csv.splitlines()[0] == "day,uses" and '"roll",2,0,1,20' in csv
    by_hour = csv.splitlines()[csv.splitlines().index("hour_utc,uses") + 1 :]
    assert len(by_hour) == 168 and [h[-2:] for h in by_hour].count(",2") == 1
    assert sum(int(h.split(",")[1]) for h in by_hour) == 2
    status, _, everywhere = await _get(base, _path(0))
    assert status == 200 and "3 commands" in everywhere and "every server" in everywhere


async def test_other_links_are_refused(base: str) -> None:
    good = _path(G)
    for path, says in [
        (good.replace(f"/analytics/{G}", f"/analytics/{G + 1}"), "not valid"),  # another server
        (good.replace(f"/analytics/{G}", "/analytics/0"), "not valid"),  # every server
        (good.replace("days=7", "days=90"), "not valid"),  # a longer span
        (_path(G, now=time.time() - web.LINK_TTL - 5), "expired"),
        (f"/analytics/{G}?days=7", "incomplete"),
    ]:
        status, _, body = await _get(base, path)
        assert status == 403 and says in body, (path, body)
    status, _, _ = await _get(base, "/analytics/abc")
    assert status == 400
