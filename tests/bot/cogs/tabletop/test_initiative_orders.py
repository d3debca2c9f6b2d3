"""Initiative output and roll summaries (pure)."""

from __future__ import annotations

from bot.cogs.tabletop.dice import evaluate
from bot.cogs.tabletop.initiative import Combatant, flip, roll_initiative
from bot.cogs.tabletop.initiative_orders import render_order
from bot.cogs.tabletop.roll_render import summary


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


def test_summary_of_a_long_roll_keeps_every_total() -> None:
    """Roll history showed `6! tn4` ten times cut off at 200 characters, after the fourth
    roll's count: the results are what the history is for."""
    ten = "; ".join(["6! tn4"] * 10)
    whole = summary(evaluate(ten, Scripted(*([5, 5, 4, 1, 2, 3] * 10))))
    assert whole == "; ".join(["6! tn4 → 3 successes (TN 4)"] * 10)  # 288 characters
    # Too long for the limit: labels are shortened, then left out; every result stays.
    tight = summary(evaluate(ten, Scripted(*([5, 5, 4, 1, 2, 3] * 10))), limit=200)
    assert tight == "; ".join(["3 successes (TN 4)"] * 10)
    sums = "; ".join(["2d6+1d6+1d6"] * 5)
    short = summary(evaluate(sums, Scripted(*([1, 2, 3, 4] * 5))), limit=80)
    assert len(short) <= 80
    assert short.count("…") == 5  # each label cut...
    assert [part.split(" → ")[1] for part in short.split("; ")] == ["10"] * 5  # ...no total
    # An open test (no target number) lists its dice; when that is too long, its highest die.
    pool = summary(evaluate("30!", Scripted(*([2] * 29 + [6, 5]))), limit=40)
    assert pool == "30! → 30 dice, highest 11"


def test_history_line_shows_each_result() -> None:
    from bot.cogs.tabletop.dice_commands import history_result

    assert history_result("d20 → 14") == " → 14"
    # Several rolls: each with its label (the old line showed "7; d20 → 13" after `2d6; d20`).
    assert history_result("2d6 → 7; d20 → 13") == ": 2d6 → 7; d20 → 13"
    # Labels left out of a long line: the results, all of them.
    ten = "; ".join(["3 successes (TN 4)"] * 10)
    assert history_result(ten) == " → " + ten
