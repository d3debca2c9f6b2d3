"""The analytics web page, `/analytics/<server id>` on the launcher's HTTP side (reached through
bot/entry.py), for admins who follow the signed link `analytics` gives; `format=csv` is the
export. Server id 0 is every server (the bot's owners' link).

A link is `?days=7&expires=<epoch>&sig=<hmac>`: an HMAC-SHA256 of the scope, the span and the
expiry, with a key from ANALYTICS_LINK_SECRET if set (WorkerConfig.analytics), else derived
from the bot's token (which the launcher and every worker already hold, so no key needs storing
or handing out; changing the token voids the links). A link is good for LINK_TTL seconds.
Everything shown is escaped.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import urlencode

from bot.cogs.analytics import store
from bot.cogs.analytics.figures import SPANS, Figures, to_csv
from bot.db.pool import connect

LINK_TTL = 24 * 3600


class LinkError(ValueError):
    pass


def public_url(
    scope: int,
    days: int,
    token: str,
    now: float,
    *,
    base: str = "http://localhost:8080",
    secret: str | None = None,
) -> str:
    """The link `analytics` gives: `base` (PUBLIC_URL: the launcher's HTTP address as people
    reach it) + the path signed with `link_key(token, secret)`."""
    query = link_query(link_key(token, secret), scope, days, now)
    return f"{base.rstrip('/')}/analytics/{scope}?{query}"


def link_key(token: str, secret: str | None = None) -> bytes:
    """ANALYTICS_LINK_SECRET when set, else a key derived from the bot's token."""
    if secret:
        return secret.encode()
    return hashlib.sha256(b"guildhouse analytics links\0" + token.encode()).digest()


def _sig(key: bytes, scope: int, days: int, expires: int) -> str:
    return hmac.new(key, f"{scope}:{days}:{expires}".encode(), hashlib.sha256).hexdigest()[:40]


def link_query(key: bytes, scope: int, days: int, now: float) -> str:
    expires = int(now) + LINK_TTL
    return urlencode({"days": days, "expires": expires, "sig": _sig(key, scope, days, expires)})


def check(key: bytes, scope: int, query: Mapping[str, str], now: float) -> int:
    """The span the link is for, or LinkError (a bad or forged link, or an expired one)."""
    try:
        days, expires = int(query.get("days", "")), int(query.get("expires", ""))
    except ValueError as exc:
        raise LinkError("This link is incomplete: ask `analytics` for a new one.") from exc
    if days not in SPANS.values():
        raise LinkError("This link is incomplete: ask `analytics` for a new one.")
    if not hmac.compare_digest(_sig(key, scope, days, expires), query.get("sig", "")):
        raise LinkError("This link is not valid: ask `analytics` for a new one.")
    if expires < now:
        raise LinkError("This link has expired: ask `analytics` for a new one.")
    return days


def render(f: Figures, scope: int, csv_query: str) -> str:
    e = html.escape
    most = max(f.per_day, default=0) or 1
    days = "".join(
        f"<tr><td>{d.isoformat()}</td><td>{n:,}</td><td><div class=bar "
        f'style="width:{n / most * 100:.1f}%"></div></td></tr>'
        for d, n in zip(f.days, f.per_day, strict=True)
    )
    top = "".join(
        f"<tr><td>{e(c.command)}</td><td>{c.uses:,}</td><td>{c.refused:,}</td>"
        f"<td>{c.errors:,}</td><td>{c.avg_ms:.0f}</td></tr>"
        for c in f.top
    )
    hmost = max(f.per_hour, default=0) or 1
    hours = "".join(
        f"<tr><td>{d.isoformat()}</td>"
        + "".join(
            f'<td class=h title="{d.isoformat()} {h:02d}:00 UTC: {n:,}" '
            f'style="opacity:{0.08 + 0.92 * n / hmost:.2f}">{n or ""}</td>'
            for h, n in enumerate(f.per_hour[i * 24 : (i + 1) * 24])
        )
        + "</tr>"
        for i, d in enumerate(f.hour_days if f.per_hour else [])
    )
    head = "".join(f"<th>{h:02d}" for h in range(24))
    where = "every server" if scope == 0 else f"server {scope}"
    return f"""<!doctype html><html><head><meta charset=utf-8>
<title>Guildhouse analytics: {e(where)}</title><style>
body{{font-family:sans-serif;background:#2f3136;color:#dcddde;margin:2em}}
td,th{{padding:2px 8px;text-align:left}} .bar{{background:#5865f2;height:12px}}
td:last-child{{width:50%}} a{{color:#8ea1e1}}
.hours td:last-child{{width:auto}} td.h{{background:#5865f2;color:#fff;text-align:center;
min-width:1.6em;font-size:80%}}</style></head><body>
<h1>Usage of Guildhouse in {e(where)}</h1>
<p>{f.first.isoformat()} to {f.last.isoformat()} (UTC days): {f.uses:,} commands,
{f.active_users:,} active users, error rate {f.error_rate:.1%}, {f.refused:,} refused.
<a href="?{e(csv_query)}">Download CSV</a></p>
<h2>Commands per day</h2><table><tr><th>day<th>uses<th></tr>{days}</table>
<h2>The last 7 days by hour (UTC)</h2><table class=hours><tr><th>day{head}</tr>{hours}</table>
<h2>Top commands</h2><table><tr><th>command<th>uses<th>refused<th>errors<th>avg ms</tr>
{top}</table></body></html>"""


async def page(
    database_url: str,
    token: str,
    scope: int,
    query: Mapping[str, str],
    *,
    secret: str | None = None,
) -> tuple[int, str, bytes]:
    """(status, content type, body) of `/analytics/<scope>?<query>`."""
    try:
        days = check(link_key(token, secret), scope, query, time.time())
    except LinkError as exc:
        return 403, "text/plain", str(exc).encode()
    conn = await connect(database_url)
    try:
        f = await store.figures(conn, None if scope == 0 else scope, days, datetime.now(UTC).date())
    finally:
        await conn.close()
    if query.get("format") == "csv":
        return 200, "text/csv", to_csv(f).encode()
    csv_query = urlencode({**query, "format": "csv"})
    return 200, "text/html", render(f, scope, csv_query).encode()
