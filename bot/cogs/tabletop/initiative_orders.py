"""Initiative orders: kept as JSON with the table, shown as lines. No database or Discord
objects; names are escaped with discord.py's `escape_markdown`, the one import of discord."""

from __future__ import annotations

from typing import Any

from discord.utils import escape_markdown

from bot.cogs.tabletop.initiative import Combatant, InitiativeEntry, passes

SYSTEM_NAMES = {
    "sr1": "Shadowrun 1e",
    "sr2": "Shadowrun 2e",
    "sr3": "Shadowrun 3e",
    "cp2020": "Cyberpunk 2020",
    "cpr": "Cyberpunk RED",
}


def order_to_json(order: list[InitiativeEntry]) -> list[dict[str, Any]]:
    return [
        {
            "name": e.combatant.name,
            "npc": e.combatant.is_npc,
            "dice": e.combatant.dice,
            "modifier": e.combatant.modifier,
            "rolls": e.rolls,
            "score": e.score,
            "tiebreak": e.tiebreak,
            "passes": e.passes,
        }
        for e in order
    ]


def order_from_json(data: list[dict[str, Any]]) -> list[InitiativeEntry]:
    return [
        InitiativeEntry(
            Combatant(str(d["name"]), bool(d["npc"]), int(d["dice"]), int(d["modifier"])),
            [int(r) for r in d["rolls"]],
            int(d["score"]),
            [int(t) for t in d.get("tiebreak", [])],
            [int(p) for p in d.get("passes", [])],
        )
        for d in data
    ]


def _entry(n: int, e: InitiativeEntry) -> str:
    c = e.combatant
    rolls = "+".join(str(r) for r in e.rolls)
    npc = " (NPC)" if c.is_npc else ""
    return f"{n}. **{e.score}** {escape_markdown(c.name)}{npc} [{rolls}]{c.modifier:+d}"


def render_order(
    order: list[InitiativeEntry], system: str, *, reversed_: bool = False
) -> list[str]:
    """Lines for an initiative order: everyone in acting order, then (Shadowrun) who acts in
    each later pass."""
    lines = [_entry(n, e) for n, e in enumerate(order, 1)]
    if system.startswith("sr"):
        later = passes(order)[1:]
        for k, group in enumerate(later, 2):
            shown = list(reversed(group)) if reversed_ else group
            names = ", ".join(f"{escape_markdown(e.combatant.name)} {score}" for e, score in shown)
            lines.append(f"Pass {k}: {names}")
        if any(e.score <= 0 for e in order):
            out = ", ".join(escape_markdown(e.combatant.name) for e in order if e.score <= 0)
            lines.append(f"No action this turn (score 0 or less): {out}")
    return lines
