"""Output helpers: Discord's size limits, safe echoing of user text, and paginated output."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import discord
from discord.utils import escape_mentions

# Discord's limits (https://discord.com/developers/docs/resources/message#embed-object-embed-limits)
MESSAGE_CONTENT = 2000
EMBED_TITLE = 256
EMBED_DESCRIPTION = 4096
EMBED_FIELDS = 25
EMBED_FIELD_NAME = 256
EMBED_FIELD_VALUE = 1024
EMBED_FOOTER = 2048
EMBED_AUTHOR = 256
EMBED_TOTAL = 6000

TRUNCATED = "… (truncated)"
MAX_PAGES = 100


def truncate(text: str, limit: int, marker: str = TRUNCATED) -> str:
    """`text` cut to `limit` characters, visibly."""
    if len(text) <= limit:
        return text
    if limit <= len(marker):
        return text[:limit]
    return text[: limit - len(marker)] + marker


def safe_text(text: str, limit: int = MESSAGE_CONTENT) -> str:
    """User input fit to echo: mentions neutralised, code fences broken, cut to `limit`."""
    text = escape_mentions(text).replace("```", "`\u200b``")
    return truncate(text, limit)


def chunk_lines(lines: Iterable[str], limit: int) -> list[str]:
    """Join lines into pages of at most `limit` characters; an overlong line is truncated."""
    pages: list[str] = []
    current: list[str] = []
    size = 0
    for raw in lines:
        line = truncate(raw, limit)
        extra = len(line) + (1 if current else 0)
        if current and size + extra > limit:
            pages.append("\n".join(current))
            current, size = [], 0
            extra = len(line)
        current.append(line)
        size += extra
    if current:
        pages.append("\n".join(current))
    return pages


def _embed_size(embed: discord.Embed) -> int:
    return len(embed)


def fit_embed(embed: discord.Embed) -> discord.Embed:
    """Trim an embed to every Discord limit, marking what was cut."""
    if embed.title:
        embed.title = truncate(embed.title, EMBED_TITLE)
    if embed.description:
        embed.description = truncate(embed.description, EMBED_DESCRIPTION)
    if embed.author and embed.author.name:
        embed.set_author(
            name=truncate(embed.author.name, EMBED_AUTHOR),
            url=embed.author.url,
            icon_url=embed.author.icon_url,
        )
    if embed.footer and embed.footer.text:
        embed.set_footer(
            text=truncate(embed.footer.text, EMBED_FOOTER), icon_url=embed.footer.icon_url
        )
    fields = list(embed.fields)
    dropped = max(0, len(fields) - EMBED_FIELDS)
    embed.clear_fields()
    for f in fields[:EMBED_FIELDS]:
        embed.add_field(
            name=truncate(f.name or "\u200b", EMBED_FIELD_NAME),
            value=truncate(f.value or "\u200b", EMBED_FIELD_VALUE),
            inline=f.inline,
        )
    while _embed_size(embed) > EMBED_TOTAL and embed.fields:
        embed.remove_field(len(embed.fields) - 1)
        dropped += 1
    if dropped:
        note = f"{dropped} more field(s) not shown"
        base = embed.footer.text if embed.footer and embed.footer.text else ""
        text = f"{truncate(base, EMBED_FOOTER - len(note) - 3)} · {note}" if base else note
        embed.set_footer(text=text, icon_url=embed.footer.icon_url if embed.footer else None)
    over = _embed_size(embed) - EMBED_TOTAL
    if over > 0 and embed.description:
        embed.description = truncate(embed.description, max(0, len(embed.description) - over))
    over = _embed_size(embed) - EMBED_TOTAL
    if over > 0 and embed.title:
        embed.title = truncate(embed.title, max(0, len(embed.title) - over))
    return embed


def pages_from_lines(
    title: str, lines: Sequence[str], *, per_page: int = 10, colour: int = 0x5865F2
) -> list[discord.Embed]:
    """Embeds of `per_page` lines each (fewer when the lines are long), numbered."""
    groups: list[list[str]] = []
    for start in range(0, len(lines), per_page):
        for page in chunk_lines(lines[start : start + per_page], EMBED_DESCRIPTION):
            groups.append(page.split("\n"))
    groups = groups[:MAX_PAGES] or [["Nothing to show."]]
    total = len(groups)
    return [
        fit_embed(
            discord.Embed(title=title, description="\n".join(g), colour=colour).set_footer(
                text=f"Page {i} of {total}"
            )
        )
        for i, g in enumerate(groups, start=1)
    ]


async def send_pages(ctx: Any, pages: Sequence[discord.Embed]) -> None:
    """Send one embed, or the first of several with buttons to page through them (for whoever
    asked; they work on any worker, for an hour, also after a restart)."""
    # The paginator is a persistent component (bot/components/paginator.py), whose framework
    # uses bot.errors, which uses this module: imported when first needed, not at import time.
    from bot.components.paginator import send_pages as send

    await send(ctx, pages)
