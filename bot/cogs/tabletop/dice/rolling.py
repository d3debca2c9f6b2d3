"""Rolling general dice expressions with an injected RNG: dice terms (rerolls, explosions,
keep/drop, successes) and the arithmetic around them.

Pure: no Discord, no database; the only randomness is `rng.randint`. Every extra roll
(reroll, explosion) takes one from the request's `Budget` and stops at
`Limits.max_explode_depth` for one die, so a roll always ends.
"""

from __future__ import annotations

from typing import Protocol

from bot.cogs.tabletop.dice.results import Die, SideResult
from bot.cogs.tabletop.dice.syntax import BinOp, Const, DiceTerm, Limits, Neg, Node

__all__ = ["RNG", "Budget", "evaluate_node", "roll_term"]


class RNG(Protocol):
    def randint(self, a: int, b: int) -> int: ...


class Budget:
    """The extra rolls (explosions, rerolls) left to a whole request."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.extra = 0

    def take(self) -> bool:
        if self.extra >= self.limits.max_extra_rolls:
            return False
        self.extra += 1
        return True


def _reroll(t: DiceTerm, d: Die, rng: RNG, budget: Budget, limits: Limits) -> None:
    assert t.reroll is not None
    depth = 0
    while t.reroll.matches(d.value) and depth < limits.max_explode_depth and budget.take():
        v = rng.randint(1, t.sides)
        d.rolls.append(v)
        d.value = v
        d.rerolled = True
        depth += 1
        if not t.reroll_repeat:
            break


def _explode(t: DiceTerm, dice: list[Die], rng: RNG, budget: Budget, limits: Limits) -> list[Die]:
    # An explosion adds a new die to the pool (as most dice bots do); that die may
    # explode again only with `ie`.
    assert t.explode is not None
    out: list[Die] = []
    for d in dice:
        out.append(d)
        cur = d
        depth = 0
        while t.explode.matches(cur.value) and depth < limits.max_explode_depth and budget.take():
            cur.exploded = True
            v = rng.randint(1, t.sides)
            cur = Die(t.sides, [v], v, from_explosion=True)
            out.append(cur)
            depth += 1
            if not t.explode_repeat:
                break
    return out


def _keep(kind: str, n: int, dice: list[Die]) -> None:
    ascending = sorted(range(len(dice)), key=lambda k: (dice[k].value, k))
    highest_first = ascending[::-1]
    if kind == "kh":
        chosen = highest_first[:n]
    elif kind == "kl":
        chosen = ascending[:n]
    elif kind == "dh":
        chosen = ascending[: max(0, len(dice) - n)]
    else:
        chosen = highest_first[: max(0, len(dice) - n)]
    keep_idx = set(chosen)
    for k, d in enumerate(dice):
        d.kept = k in keep_idx


def roll_term(t: DiceTerm, rng: RNG, budget: Budget, limits: Limits) -> SideResult:
    dice: list[Die] = []
    for _ in range(t.count):
        v = rng.randint(1, t.sides)
        d = Die(t.sides, [v], v)
        if t.reroll is not None and t.reroll.matches(v):
            _reroll(t, d, rng, budget, limits)
        dice.append(d)
    if t.explode is not None:
        dice = _explode(t, dice, rng, budget, limits)
    if t.keep is not None:
        _keep(*t.keep, dice)
    res = SideResult(dice)
    if t.success is not None or t.failure is not None:
        res.counts_successes = True
        for d in dice:
            if not d.kept:
                continue
            if t.success is not None and t.success.matches(d.value):
                d.success = True
                res.successes += 1
            if t.failure is not None and t.failure.matches(d.value):
                d.failure = True
                res.failures += 1
    return res


def evaluate_node(
    node: Node, rng: RNG, budget: Budget, limits: Limits, terms: list[SideResult]
) -> int:
    """The value of an expression; each dice term rolled is appended to `terms`."""
    if isinstance(node, Const):
        return node.value
    if isinstance(node, Neg):
        return -evaluate_node(node.operand, rng, budget, limits, terms)
    if isinstance(node, BinOp):
        a = evaluate_node(node.left, rng, budget, limits, terms)
        b = evaluate_node(node.right, rng, budget, limits, terms)
        if node.op == "+":
            return a + b
        if node.op == "-":
            return a - b
        return a * b
    r = roll_term(node, rng, budget, limits)
    terms.append(r)
    if r.counts_successes:
        return r.successes - r.failures
    return sum(d.value for d in r.dice if d.kept)
