"""`bench latency`'s schedule (`_wandering`): no fixed phase, and no two commands of a bot
bunched together (bench/README.md, "Where the scheduler puts the bots, and no fixed phase")."""

from __future__ import annotations

import itertools
import random

from bench.latency import WANDER, _wandering


def test_a_bots_commands_stay_about_a_period_apart() -> None:
    starts = _wandering(1_800, random.Random(1))
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(starts) == 1_800
    assert min(gaps) >= 1 - WANDER
    assert max(gaps) <= 1 + WANDER


def test_over_the_goals_load_every_part_of_the_period_gets_commands() -> None:
    # A fixed grid puts every start at one phase; the walk spreads them over the period, so
    # a noise that recurs at one phase meets every side alike.
    for seed in range(5):
        starts = _wandering(1_800, random.Random(seed))
        tenths = [0] * 10
        for at in starts:
            tenths[int(at % 1 * 10)] += 1
        assert min(tenths) >= 1_800 * 0.03, (seed, tenths)


def test_the_same_seed_gives_the_same_schedule() -> None:
    assert _wandering(100, random.Random(7)) == _wandering(100, random.Random(7))
    assert _wandering(100, random.Random(7)) != _wandering(100, random.Random(8))
