from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.cogs.tabletop.initiative import Combatant, flip, passes, roll_initiative


class Scripted:
    def __init__(self, *values: int) -> None:
        self.values = list(values)

    def randint(self, a: int, b: int) -> int:
        v = self.values.pop(0)
        assert a <= v <= b
        return v


def test_shadowrun_passes() -> None:
    sam = Combatant("Sam", dice=3, modifier=9)  # 9 + 4+5+6 = 24
    ork = Combatant("Ork", is_npc=True, dice=1, modifier=4)  # 4 + 3 = 7
    order = roll_initiative([ork, sam], "sr3", Scripted(3, 4, 5, 6))
    assert [e.combatant.name for e in order] == ["Sam", "Ork"]
    assert order[0].passes == [24, 14, 4] and order[1].passes == [7]
    ps = passes(order)
    assert [[(e.combatant.name, s) for e, s in p] for p in ps] == [
        [("Sam", 24), ("Ork", 7)],
        [("Sam", 14)],
        [("Sam", 4)],
    ]


def test_exactly_ten_does_not_act_twice() -> None:
    order = roll_initiative([Combatant("A", dice=1, modifier=4)], "sr2", Scripted(6))
    assert order[0].passes == [10]


def test_cyberpunk_highest_first_and_flip() -> None:
    cs = [Combatant("V", modifier=8), Combatant("Goon", is_npc=True, modifier=5)]
    order = roll_initiative(cs, "cp2020", Scripted(2, 9))
    assert [e.score for e in order] == [14, 10]
    assert [e.combatant.name for e in flip(order)] == ["V", "Goon"]


def test_ties_modifier_then_pc_then_reroll() -> None:
    cs = [Combatant("Low", modifier=2), Combatant("High", modifier=5)]
    order = roll_initiative(cs, "cpr", Scripted(8, 5))
    assert [e.combatant.name for e in order] == ["High", "Low"]
    cs = [Combatant("NPC", is_npc=True, modifier=5), Combatant("PC", modifier=5)]
    order = roll_initiative(cs, "cpr", Scripted(5, 5))
    assert [e.combatant.name for e in order] == ["PC", "NPC"]
    cs = [Combatant("A", modifier=5), Combatant("B", modifier=5), Combatant("C", modifier=5)]
    # all 10; tiebreak: A 3, B 7, C 7; then B 2, C 9
    order = roll_initiative(cs, "cpr", Scripted(5, 5, 5, 3, 7, 7, 2, 9))
    assert [e.combatant.name for e in order] == ["C", "B", "A"]


@settings(max_examples=100, deadline=None)
@given(
    mods=st.lists(st.integers(-5, 15), min_size=1, max_size=12),
    seed=st.integers(0, 2**32),
    system=st.sampled_from(["sr1", "sr2", "sr3", "cp2020", "cpr"]),
)
def test_order_sorted_and_deterministic(mods: list[int], seed: int, system: str) -> None:
    cs = [Combatant(f"c{k}", dice=1 + k % 4, modifier=m) for k, m in enumerate(mods)]
    a = roll_initiative(cs, system, random.Random(seed))  # type: ignore[arg-type]
    b = roll_initiative(cs, system, random.Random(seed))  # type: ignore[arg-type]
    assert [e.combatant.name for e in a] == [e.combatant.name for e in b]
    scores = [e.score for e in a]
    assert scores == sorted(scores, reverse=True)
    assert sorted(e.combatant.name for e in a) == sorted(c.name for c in cs)
