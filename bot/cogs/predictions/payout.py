"""Pari-mutuel arithmetic, pure: payouts, odds, what a bet would pay.

The whole pool goes to the members who bet on the winning option, in proportion to their
stakes, in whole points. The remainder rule (stated in docs/predictions.md too):

1. each winner first gets `floor(pool * stake / winning_stakes)`;
2. the points left over (fewer than the number of winners) go one each to the winners with the
   largest discarded fractions; ties go to the larger stake, then the earlier bet, then the
   lower user id.

So the payouts always sum to the pool exactly: no point is created or destroyed. If nobody bet
on the winning option, every stake is refunded (there is nobody to pay).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Stake:
    user_id: int
    option: int
    amount: int
    order: int = 0  # the bet's place in time (earlier first): a tie-breaker only


def payouts(stakes: Sequence[Stake], winner: int) -> dict[int, int]:
    """{user id: points paid} for every bettor (losers get 0). Sums to the pool."""
    pool = sum(s.amount for s in stakes)
    winners = [s for s in stakes if s.option == winner and s.amount > 0]
    winning = sum(s.amount for s in winners)
    out = {s.user_id: 0 for s in stakes}
    if winning == 0:
        return refunds(stakes)
    fractions = []
    for s in winners:
        whole, rest = divmod(pool * s.amount, winning)
        out[s.user_id] = whole
        fractions.append((rest, s.amount, -s.order, -s.user_id, s.user_id))
    left = pool - sum(out.values())
    for *_, user_id in sorted(fractions, reverse=True)[:left]:
        out[user_id] += 1
    return out


def refunds(stakes: Iterable[Stake]) -> dict[int, int]:
    return {s.user_id: s.amount for s in stakes}


def totals(stakes: Iterable[Stake], options: int) -> list[int]:
    """The pool of each option."""
    out = [0] * options
    for s in stakes:
        out[s.option] += s.amount
    return out


def odds(pools: Sequence[int], option: int) -> float | None:
    """Implied decimal odds of an option: what one point on it returns if it wins (the whole
    pool over the option's pool). None while nothing is on it."""
    total, on = sum(pools), pools[option]
    return total / on if on else None


def potential(pools: Sequence[int], option: int, stake: int) -> int:
    """What a stake of `stake` already in `pools[option]` pays if that option wins now (before
    the remainder rule's extra point, which it may or may not get)."""
    total, on = sum(pools), pools[option]
    if on <= 0 or stake <= 0:
        return 0
    return total * stake // on


def chance(pools: Sequence[int], option: int) -> float | None:
    """The option's share of the pool (the crowd's implied probability)."""
    total = sum(pools)
    return pools[option] / total if total else None
