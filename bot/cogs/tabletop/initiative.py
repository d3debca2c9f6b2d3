"""Initiative: roll and order combatants per game system. Pure; the RNG is injected.

Rules as implemented (sources: the rulebooks as commonly summarised; assumptions marked):

- Shadowrun 2e/3e: score = modifier (Reaction + bonuses) + Nd6 (Initiative dice). A character
  acts in every pass at score, score-10, score-20, ... while that is above 0.
- Shadowrun 1e: the same (Reaction + Initiative dice; after acting, subtract 10 and act again
  in the next pass while above 0, per a table's summary of SR1 p. 102).
- Cyberpunk 2020: 1d10 + modifier (REF + Combat Sense etc.), highest first, one pass.
- Cyberpunk RED: 1d10 + modifier (REF + bonuses), highest first; ties are re-rolled (1d10
  each tied combatant, repeatedly). Whether a natural 10/1 on initiative is a critical is left
  to the table: this module rolls a plain 1d10 (use the `cpr` dice roll for checks).

Tie-break, for every system, so the order is deterministic given the RNG: higher score; then
higher modifier (SR: the higher Reaction acts first); then player characters before NPCs; then
a tie-break d10 rolled for each tied combatant (CPR's reroll), up to 20 times; then the order
in which combatants were added.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from bot.cogs.tabletop.dice import RNG

__all__ = [
    "SYSTEMS",
    "Combatant",
    "InitiativeEntry",
    "System",
    "flip",
    "passes",
    "roll_initiative",
]

System = Literal["sr1", "sr2", "sr3", "cp2020", "cpr"]
SYSTEMS: tuple[System, ...] = ("sr1", "sr2", "sr3", "cp2020", "cpr")
_PASS_STEP = 10
_MAX_TIEBREAK_ROLLS = 20


@dataclass(frozen=True)
class Combatant:
    name: str
    is_npc: bool = False
    dice: int = 1  # Shadowrun initiative dice (d6); Cyberpunk always rolls 1d10
    modifier: int = 0  # SR: Reaction + bonuses; CP: REF + bonuses


@dataclass
class InitiativeEntry:
    combatant: Combatant
    rolls: list[int]
    score: int
    tiebreak: list[int] = field(default_factory=list)
    passes: list[int] = field(default_factory=list)  # the scores at which this one acts


def roll_initiative(
    combatants: Sequence[Combatant], system: System, rng: RNG | None = None
) -> list[InitiativeEntry]:
    """Roll for everyone and return them in acting order (first to act first)."""
    if system not in SYSTEMS:
        raise ValueError(f"unknown initiative system {system!r}")
    rng = rng if rng is not None else random.SystemRandom()
    entries: list[InitiativeEntry] = []
    for c in combatants:
        if system.startswith("sr"):
            rolls = [rng.randint(1, 6) for _ in range(max(1, c.dice))]
        else:
            rolls = [rng.randint(1, 10)]
        score = c.modifier + sum(rolls)
        e = InitiativeEntry(c, rolls, score)
        if system.startswith("sr"):
            e.passes = list(range(score, 0, -_PASS_STEP))
        else:
            e.passes = [score]
        entries.append(e)
    _break_ties(entries, rng)
    index = {id(e): k for k, e in enumerate(entries)}
    return sorted(entries, key=lambda e: (*_static_key(e), [-t for t in e.tiebreak], index[id(e)]))


def _static_key(e: InitiativeEntry) -> tuple[int, int, bool]:
    return (-e.score, -e.combatant.modifier, e.combatant.is_npc)


def _break_ties(entries: list[InitiativeEntry], rng: RNG) -> None:
    groups: dict[tuple[int, int, bool], list[InitiativeEntry]] = {}
    for e in entries:
        groups.setdefault(_static_key(e), []).append(e)
    work = [g for g in groups.values() if len(g) > 1]
    while work:
        group = work.pop()
        if len(group[0].tiebreak) >= _MAX_TIEBREAK_ROLLS:
            continue  # still tied: the order of adding decides
        for e in group:
            e.tiebreak.append(rng.randint(1, 10))
        # Only those still tied with each other roll again; every subgroup shares its
        # prefix, so tiebreak lists compare correctly across subgroups.
        by: dict[tuple[int, ...], list[InitiativeEntry]] = {}
        for e in group:
            by.setdefault(tuple(e.tiebreak), []).append(e)
        work.extend(g for g in by.values() if len(g) > 1)


def passes(order: Sequence[InitiativeEntry]) -> list[list[tuple[InitiativeEntry, int]]]:
    """Shadowrun action passes: pass k lists (entry, score) for everyone who acts in it,
    in acting order. Cyberpunk orders have a single pass."""
    out: list[list[tuple[InitiativeEntry, int]]] = []
    depth = max((len(e.passes) for e in order), default=0)
    for k in range(depth):
        out.append([(e, e.passes[k]) for e in order if len(e.passes) > k])
    return out


def flip(order: Sequence[InitiativeEntry]) -> list[InitiativeEntry]:
    """Reversed order (lowest first), e.g. for declaring actions before acting."""
    return list(reversed(order))
