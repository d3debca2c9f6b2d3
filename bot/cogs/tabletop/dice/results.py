"""What a roll returns: every die with its faces, per term, per set, per `;` roll.

Pure: no Discord, no database; plain data that roll_render.py turns into text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from bot.cogs.tabletop.dice.syntax import RollRequest, RollSpec

__all__ = ["Die", "RollResult", "SegmentResult", "SetResult", "SideResult"]


@dataclass
class Die:
    sides: int
    rolls: list[int]  # every face rolled for this die, in order
    value: int  # what the die counts as (after rerolls; summed for Rule of 6)
    kept: bool = True
    exploded: bool = False  # this die triggered an explosion (or a Rule of 6 reroll)
    from_explosion: bool = False  # this die was added by an explosion
    rerolled: bool = False
    success: bool = False
    failure: bool = False


@dataclass
class SideResult:
    """Dice of one Shadowrun side, or one dice term of an expression."""

    dice: list[Die]
    target: int | None = None
    successes: int = 0
    failures: int = 0
    counts_successes: bool = False


@dataclass
class SetResult:
    """One evaluation of an expression (one member of a set)."""

    terms: list[SideResult]
    total: int
    successes: int = 0
    counts_successes: bool = False


@dataclass
class SegmentResult:
    spec: RollSpec
    sets: list[SetResult] = field(default_factory=list)  # kind "expr"
    sides: list[SideResult] = field(default_factory=list)  # shadowrun / opposed / cyberpunk
    total: int = 0
    successes: int = 0
    net_successes: int = 0  # opposed: first side minus second
    winner: int | None = None  # opposed: 0, 1 or None for a tie
    critical: Literal["success", "failure"] | None = None  # cpr

    @property
    def note(self) -> str:
        return self.spec.note

    @property
    def dice(self) -> list[Die]:
        out = [d for s in self.sides for d in s.dice]
        out += [d for st in self.sets for t in st.terms for d in t.dice]
        return out


@dataclass
class RollResult:
    request: RollRequest
    segments: list[SegmentResult]
