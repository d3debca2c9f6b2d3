"""Dice engine: parse a roll expression, roll it with an injected RNG, return plain data.

Pure: no Discord, no database. See docs/dice.md for the syntax. The parts, one job each:
syntax.py (the parsed form, DiceError, Limits), lexer.py and expressions.py (reading
characters, numbers and general dice expressions), parser.py (`parse`: a line's rolls and
their game systems), rolling.py (dice terms and arithmetic with the RNG), systems.py (`roll`:
each roll by its system's rules), results.py (what a roll returns). Import from here.
"""

from __future__ import annotations

from bot.cogs.tabletop.dice.parser import parse
from bot.cogs.tabletop.dice.results import Die, RollResult, SegmentResult, SetResult, SideResult
from bot.cogs.tabletop.dice.rolling import RNG
from bot.cogs.tabletop.dice.syntax import (
    DEFAULT_LIMITS,
    BinOp,
    Const,
    DiceError,
    DiceTerm,
    Limits,
    Neg,
    Node,
    RollRequest,
    RollSpec,
)
from bot.cogs.tabletop.dice.systems import roll

__all__ = [
    "RNG",
    "SYNTAX_HELP",
    "BinOp",
    "Const",
    "DiceError",
    "DiceTerm",
    "Die",
    "Limits",
    "Neg",
    "Node",
    "RollRequest",
    "RollResult",
    "RollSpec",
    "SegmentResult",
    "SetResult",
    "SideResult",
    "evaluate",
    "parse",
    "roll",
]

SYNTAX_HELP = """\
Shadowrun: `6` (6d6), `6t` (total), `6t -5` (total with modifier), `6! tn4` (Rule of 6, \
successes vs target number 4), `5! tn3 vs 6! otn4` (opposed, net successes).
Cyberpunk: `cp2020` (1d10, a 10 explodes), `cp2020 +5`, `cpr` (1d10: 10 crit adds a d10, \
1 fumble subtracts a d10), `cpr +7`.
Dice: `3d6+2`, `d20`, `d%`, `2d6*3`, keep/drop `4d6kh3` `4d6kl1` `4d6dh1` `4d6dl1`, \
reroll once `r1` or until not `ir1` (`r<3`, `r>5` too), explode once `e6` / repeatedly \
`ie6` (on >= N), successes `t7` (dice >= 7) minus failures `f1` (dice <= 1), \
sets `6 4d6` (six rolls of 4d6).
Several rolls: separate with `;`. Notes: `6! tn4 # dodge`, or words after a space.\
"""


def evaluate(expr: str, rng: RNG | None = None, limits: Limits = DEFAULT_LIMITS) -> RollResult:
    """Parse and roll in one step."""
    return roll(parse(expr, limits), rng, limits)
