"""The pari-mutuel arithmetic: payouts sum to the pool, the remainder rule, odds."""

from __future__ import annotations

import random

from bot.cogs.predictions.payout import Stake, chance, odds, payouts, potential, totals


def test_whole_pool_to_winners_in_proportion() -> None:
    stakes = [Stake(1, 0, 100, 1), Stake(2, 0, 300, 2), Stake(3, 1, 400, 3)]
    assert payouts(stakes, 0) == {1: 200, 2: 600, 3: 0}
    assert payouts(stakes, 1) == {1: 0, 2: 0, 3: 800}


def test_remainder_goes_to_largest_fractions_then_larger_stake_then_earlier() -> None:
    # pool 100, winners 1/1/1 of 3: 33.33 each, one point left; equal fractions and stakes:
    # the earliest bet gets it.
    stakes = [Stake(7, 0, 1, 2), Stake(5, 0, 1, 1), Stake(9, 0, 1, 3), Stake(4, 1, 97, 4)]
    assert payouts(stakes, 0) == {7: 33, 5: 34, 9: 33, 4: 0}
    # pool 10, stakes 3 and 4 on the winner: 30/7 = 4.28, 40/7 = 5.71: the larger fraction
    # (the second) gets the point.
    stakes = [Stake(1, 0, 3, 1), Stake(2, 0, 4, 2), Stake(3, 1, 3, 3)]
    assert payouts(stakes, 0) == {1: 4, 2: 6, 3: 0}


def test_nobody_on_the_winner_refunds_everyone() -> None:
    stakes = [Stake(1, 0, 10), Stake(2, 1, 20)]
    assert payouts(stakes, 2) == {1: 10, 2: 20}


def test_no_point_created_or_destroyed_at_random() -> None:
    rng = random.Random(27)
    for _ in range(2000):
        n = rng.randint(1, 30)
        stakes = [Stake(u, rng.randrange(4), rng.randint(1, 10**6), u) for u in range(n)]
        winner = rng.randrange(4)
        paid = payouts(stakes, winner)
        assert sum(paid.values()) == sum(s.amount for s in stakes)
        assert all(v >= 0 for v in paid.values())
        winning = sum(s.amount for s in stakes if s.option == winner)
        if winning:
            pool = sum(s.amount for s in stakes)
            for s in stakes:
                exact = pool * s.amount / winning if s.option == winner else 0
                assert abs(paid[s.user_id] - exact) < 1 + 1e-9


def test_odds_and_potential() -> None:
    pools = totals([Stake(1, 0, 100), Stake(2, 1, 300)], 3)
    assert pools == [100, 300, 0]
    assert odds(pools, 0) == 4.0
    assert odds(pools, 2) is None
    assert chance(pools, 1) == 0.75
    assert potential(pools, 0, 100) == 400
    assert potential(pools, 2, 0) == 0
