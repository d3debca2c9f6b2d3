"""Pages of embeds behind first / previous / next / last buttons, for whoever asked.

The pages are kept in PostgreSQL (`component_state`) for an hour; each button's custom_id
names the page it goes to (`n3`: next, to page 3), so a press needs no state of its own but
that one page, and pressing the same button twice shows the same page: a double click is
harmless.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import discord

from bot import outages
from bot.components import state
from bot.components.handlers import Handler, Who
from bot.components.ids import CustomId
from bot.components.items import Ref, view
from bot.components.press import Press

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse

PAGES_TTL = 60 * 60


def buttons(index: int, total: int) -> list[tuple[str, str, bool]]:
    """(label, action, disabled) of the four buttons shown with page `index` of `total`.
    Actions are unique in a message (Discord refuses duplicate custom_ids), so each names its
    kind as well as its target."""
    last = total - 1
    return [
        ("«", "f0", index == 0),
        ("‹", f"p{max(index - 1, 0)}", index == 0),
        ("›", f"n{min(index + 1, last)}", index >= last),
        ("»", f"l{last}", index >= last),
    ]


def target(action: str) -> int | None:
    """The page an action goes to."""
    if len(action) < 2 or action[0] not in "fpnl" or not action[1:].isdigit():
        return None
    return int(action[1:])


def page_view(ref: Ref, index: int, total: int) -> discord.ui.View:
    styles = {"«": discord.ButtonStyle.secondary, "»": discord.ButtonStyle.secondary}
    return view(
        *(
            ref.button(
                label,
                action=action,
                style=styles.get(label, discord.ButtonStyle.primary),
                disabled=disabled,
            )
            for label, action, disabled in buttons(index, total)
        )
    )


class Pages(Handler, name="pages"):
    ttl = PAGES_TTL
    who = Who.OWNER
    refusal = "These buttons belong to whoever asked; run the command yourself."
    action_room = 4  # "l99": MAX_PAGES is 100

    async def load(self, bot: Guildhouse, custom: CustomId) -> state.Stored | None:
        # Only the page shown next, not all of them.
        sid, index = custom.stored_id, target(custom.action)
        if sid is None or index is None:
            return None
        row = await bot.pool.fetchrow(
            """
            SELECT owner_id, expires_at, data->'pages'->$3::int AS page,
                   jsonb_array_length(data->'pages') AS total
            FROM component_state WHERE id = $1 AND handler = $2
            """,
            sid,
            self.name,
            index,
        )
        if row is None or row["page"] is None:
            return None
        data = {"index": index, "total": row["total"], "page": row["page"]}
        return state.Stored(row["owner_id"], row["expires_at"].timestamp(), data)

    async def pressed(self, press: Press) -> None:
        index, total = press.state["index"], press.state["total"]
        ref = Ref(Pages, press.custom.ref)
        await press.update(
            embed=discord.Embed.from_dict(press.state["page"]), view=page_view(ref, index, total)
        )


async def send_pages(ctx: Any, pages: Sequence[discord.Embed]) -> None:
    """Send one embed, or the first of several with buttons to page through them."""
    if len(pages) == 1:
        await ctx.send(embed=pages[0])
        return
    try:
        ref = await Pages.new(
            ctx.bot, owner=ctx.author.id, state={"pages": [p.to_dict() for p in pages]}, stored=True
        )
    except Exception as exc:
        if outages.note(exc, "the paginator") is None:
            raise
        # The pages can't be kept while PostgreSQL is away: the first is still an answer.
        first = pages[0].copy()
        footer = first.footer.text or ""
        first.set_footer(text=f"{footer} · the rest once the database is back".lstrip(" ·"))
        await ctx.send(embed=first)
        return
    await ctx.send(embed=pages[0], view=page_view(ref, 0, len(pages)))
