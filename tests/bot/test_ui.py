from __future__ import annotations

import discord

from bot import ui
from bot.components import paginator


def test_truncate_is_visible_and_exact() -> None:
    assert ui.truncate("short", 10) == "short"
    cut = ui.truncate("x" * 3000, 2000)
    assert len(cut) == 2000 and cut.endswith(ui.TRUNCATED)


def test_safe_text_neutralises_mentions_and_fences() -> None:
    text = ui.safe_text("@everyone hi <@123456789012345678> <@&223456789012345678> @here ```c```")
    assert "@everyone" not in text and "@here" not in text
    assert "<@123456789012345678>" not in text and "<@&223456789012345678>" not in text
    assert "```" not in text


def test_chunk_lines_respects_the_limit_and_keeps_order() -> None:
    lines = [f"line {i} " + "x" * (i % 50) for i in range(500)]
    pages = ui.chunk_lines(lines, 1000)
    assert all(len(p) <= 1000 for p in pages)
    assert "\n".join(pages).split("\n") == lines


def test_chunk_lines_truncates_an_overlong_line() -> None:
    (page,) = ui.chunk_lines(["y" * 5000], 1000)
    assert len(page) == 1000 and page.endswith(ui.TRUNCATED)


def test_fit_embed_obeys_every_limit() -> None:
    embed = discord.Embed(title="t" * 300, description="d" * 5000)
    embed.set_footer(text="f" * 3000)
    embed.set_author(name="a" * 400)
    for i in range(40):
        embed.add_field(name=f"n{i}" * 200, value="v" * 2000)
    ui.fit_embed(embed)
    assert len(embed.title or "") <= ui.EMBED_TITLE
    assert len(embed.description or "") <= ui.EMBED_DESCRIPTION
    assert len(embed.fields) <= ui.EMBED_FIELDS
    assert all(len(f.name or "") <= 256 and len(f.value or "") <= 1024 for f in embed.fields)
    assert len(embed) <= ui.EMBED_TOTAL
    assert "not shown" in (embed.footer.text or "")


def test_pages_from_lines_numbers_pages_and_caps_them() -> None:
    pages = ui.pages_from_lines("T", [f"row {i}" for i in range(25)], per_page=10)
    assert len(pages) == 3
    assert pages[0].footer.text == "Page 1 of 3" and pages[2].footer.text == "Page 3 of 3"
    assert pages[2].description == "\n".join(f"row {i}" for i in range(20, 25))
    many = ui.pages_from_lines("T", [str(i) for i in range(5000)], per_page=10)
    assert len(many) == ui.MAX_PAGES
    assert ui.pages_from_lines("T", [])[0].description == "Nothing to show."


def test_paginator_buttons_move_and_clamp() -> None:
    # The first page: first and previous disabled; next goes to page 1, last to page 2.
    assert paginator.buttons(0, 3) == [
        ("«", "f0", True),
        ("‹", "p0", True),
        ("›", "n1", False),
        ("»", "l2", False),
    ]
    # The last page: next and last disabled, and clamped (no page 3).
    assert paginator.buttons(2, 3) == [
        ("«", "f0", False),
        ("‹", "p1", False),
        ("›", "n2", True),
        ("»", "l2", True),
    ]
    for total in range(2, ui.MAX_PAGES + 1):
        for index in range(total):
            actions = [action for _, action, _ in paginator.buttons(index, total)]
            # Discord refuses a message whose custom_ids repeat; each names its target page.
            assert len(set(actions)) == 4
            assert all(0 <= (paginator.target(a) or 0) < total for a in actions)
            assert all(len(a) <= paginator.Pages.action_room for a in actions)
    assert paginator.target("n12") == 12
    assert paginator.target("x1") is None and paginator.target("n") is None
