"""Rolling a parsed request, each roll by its game system's rules: general expressions (and
sets of them), Shadowrun pools (Rule of 6, target numbers, opposed net successes), Cyberpunk
2020 (a 10 explodes) and Cyberpunk RED (critical success and fumble).

Pure: no Discord, no database; the only randomness is the injected RNG.
"""

from __future__ import annotations

import random

from bot.cogs.tabletop.dice.results import Die, RollResult, SegmentResult, SetResult, SideResult
from bot.cogs.tabletop.dice.rolling import RNG, Budget, evaluate_node
from bot.cogs.tabletop.dice.syntax import (
    DEFAULT_LIMITS,
    Limits,
    RollRequest,
    RollSpec,
    ShadowrunSide,
)

__all__ = ["roll"]


def _roll_sr_side(side: ShadowrunSide, rng: RNG, budget: Budget, limits: Limits) -> SideResult:
    dice: list[Die] = []
    for _ in range(side.dice):
        v = rng.randint(1, 6)
        d = Die(6, [v], v)
        depth = 0
        # Rule of 6: the reroll adds to the same die, so one die can reach any target number.
        while (
            side.rule_of_six
            and d.rolls[-1] == 6
            and depth < limits.max_explode_depth
            and budget.take()
        ):
            d.exploded = True
            v = rng.randint(1, 6)
            d.rolls.append(v)
            d.value += v
            depth += 1
        dice.append(d)
    res = SideResult(dice, target=side.target, counts_successes=side.target is not None)
    if side.target is not None:
        for d in dice:
            if d.value >= side.target:
                d.success = True
                res.successes += 1
    return res


def _expression(
    seg: SegmentResult, spec: RollSpec, rng: RNG, budget: Budget, limits: Limits
) -> None:
    assert spec.expr is not None
    for _ in range(spec.repeat):
        terms: list[SideResult] = []
        total = evaluate_node(spec.expr, rng, budget, limits, terms)
        counts = any(t.counts_successes for t in terms)
        seg.sets.append(
            SetResult(
                terms=terms,
                total=total,
                successes=sum(t.successes - t.failures for t in terms),
                counts_successes=counts,
            )
        )
    seg.total = seg.sets[0].total if len(seg.sets) == 1 else sum(s.total for s in seg.sets)
    seg.successes = seg.sets[0].successes if len(seg.sets) == 1 else 0


def _shadowrun(
    seg: SegmentResult, spec: RollSpec, rng: RNG, budget: Budget, limits: Limits
) -> None:
    for side in spec.sides:
        seg.sides.append(_roll_sr_side(side, rng, budget, limits))
    first = seg.sides[0]
    seg.total = sum(d.value for d in first.dice) + spec.modifier
    seg.successes = first.successes
    if spec.kind == "opposed":
        seg.net_successes = first.successes - seg.sides[1].successes
        seg.winner = 0 if seg.net_successes > 0 else 1 if seg.net_successes < 0 else None


def _cp2020(seg: SegmentResult, spec: RollSpec, rng: RNG, budget: Budget, limits: Limits) -> None:
    v = rng.randint(1, 10)
    d = Die(10, [v], v)
    depth = 0
    while d.rolls[-1] == 10 and depth < limits.max_explode_depth and budget.take():
        d.exploded = True
        v = rng.randint(1, 10)
        d.rolls.append(v)
        d.value += v
        depth += 1
    seg.sides.append(SideResult([d]))
    seg.total = d.value + spec.modifier


def _cpr(seg: SegmentResult, spec: RollSpec, rng: RNG) -> None:
    v = rng.randint(1, 10)
    d = Die(10, [v], v)
    dice = [d]
    total = v
    if v in (1, 10):
        d.exploded = True
        w = rng.randint(1, 10)
        extra = Die(10, [w], w, from_explosion=True)
        dice.append(extra)
        if v == 10:
            seg.critical = "success"
            d.success = True
            total += w
        else:
            seg.critical = "failure"
            d.failure = True
            total -= w
    seg.sides.append(SideResult(dice))
    seg.total = total + spec.modifier


def roll(
    request: RollRequest, rng: RNG | None = None, limits: Limits = DEFAULT_LIMITS
) -> RollResult:
    """Roll a parsed request. `rng` needs only `randint(a, b)`; default is the OS's RNG."""
    rng = rng if rng is not None else random.SystemRandom()
    budget = Budget(limits)
    out: list[SegmentResult] = []
    for spec in request.rolls:
        seg = SegmentResult(spec)
        if spec.kind == "expr":
            _expression(seg, spec, rng, budget, limits)
        elif spec.kind in ("shadowrun", "opposed"):
            _shadowrun(seg, spec, rng, budget, limits)
        elif spec.kind == "cp2020":
            _cp2020(seg, spec, rng, budget, limits)
        else:
            _cpr(seg, spec, rng)
        out.append(seg)
    return RollResult(request, out)
