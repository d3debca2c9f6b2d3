"""Initiative output and roll summaries (pure)."""

from __future__ import annotations

from bot.cogs.tabletop.dice import evaluate
from bot.cogs.tabletop.initiative import Combatant, flip, roll_initiative
from bot.cogs.tabletop.render import summary
from bot.cogs.tabletop.tables import render_order


class Scripted:
    def __init__(self, *values: int) -> None:
        self.values = list(values)

    def randint(self, a: int, b: int) -> int:
        assert self.values, "the test scripted too few rolls"
        v = self.values.pop(0)
        assert a <= v <= b
        return v


def test_shadowrun_order_lists_later_passes() -> None:
    people = [Combatant("Ann", False, 2, 10), Combatant("Troll", True, 1, 4)]
    order = roll_initiative(people, "sr3", Scripted(6, 5, 3))  # Ann 21, Troll 7
    lines = render_order(order, "sr3")
    assert lines[0] == "1. **21** Ann [6+5]+10"
    assert lines[1] == "2. **7** Troll (NPC) [3]+4"
    assert lines[2:] == ["Pass 2: Ann 11", "Pass 3: Ann 1"]
    reversed_lines = render_order(flip(order), "sr3", reversed_=True)
    assert reversed_lines[0].endswith("Troll (NPC) [3]+4")


def test_cyberpunk_has_one_pass_and_names_are_escaped() -> None:
    order = roll_initiative([Combatant("V_1", False, 1, 7)], "cpr", Scripted(4))
    assert render_order(order, "cpr") == ["1. **11** V\\_1 [4]+7"]


def test_no_action_for_scores_of_zero_or_less() -> None:
    order = roll_initiative([Combatant("Slow", True, 1, -5)], "sr2", Scripted(2))
    assert render_order(order, "sr2")[-1] == "No action this turn (score 0 or less): Slow"


def test_summary_per_kind() -> None:
    assert summary(evaluate("3! tn4", Scripted(6, 2, 4, 1))) == "3! tn4 → 2 successes (TN 4)"
    assert summary(evaluate("2d6+3; cpr", Scripted(2, 5, 10, 3))) == (
        "2d6+3 → 10; cpr → 13 (critical success)"
    )
    assert summary(evaluate("1! tn3 vs 1! otn3", Scripted(4, 1))) == (
        "1! tn3 vs 1! otn3 → net +1 (attacker)"
    )
    assert summary(evaluate("2 d6", Scripted(3, 4))) == "2 d6 → set: 3, 4"
    long = summary(evaluate(";".join(["d6"] * 10)), limit=30)
    assert len(long) == 30 and long.endswith("…")
