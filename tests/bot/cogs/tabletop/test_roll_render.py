from __future__ import annotations

import random
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.cogs.tabletop.dice import Limits, evaluate
from bot.cogs.tabletop.roll_render import render


class Scripted:
    def __init__(self, *values: int) -> None:
        self.values = list(values)

    def randint(self, a: int, b: int) -> int:
        return self.values.pop(0)


def test_highlights() -> None:
    text = render(evaluate("2! tn5", Scripted(6, 3, 2)))
    assert "__**6+3**__" in text and "**1** success" in text and "**1** successes" not in text
    text = render(evaluate("4d6kh3", Scripted(3, 5, 1, 4)))
    assert "~~1~~" in text and "**12**" in text
    text = render(evaluate("cpr +2", Scripted(10, 4)))
    assert "critical success" in text and "**16**" in text
    text = render(evaluate("1! tn3 vs 1! otn3", Scripted(1, 5)))
    assert "defender wins" in text and "**-1**" in text


def test_notes_are_escaped() -> None:
    text = render(evaluate("d6 # *bold* `x`", Scripted(2)))
    assert "\\*bold\\*" in text


def _balanced(text: str) -> bool:
    stripped = re.sub(r"\\.", "", text)
    return all(stripped.count(tok) % 2 == 0 for tok in ("~~", "__", "`"))


def test_huge_result_is_shortened_visibly() -> None:
    lim = Limits(max_dice=1000, max_rolls=10)
    expr = ";".join(["100d6ie6t5"] * 10)
    res = evaluate(expr, random.Random(1), lim)
    full = render(res, limit=100_000)
    assert len(full) > 2000
    short = render(res)
    assert len(short) <= 2000 and "more" in short and _balanced(short)
    assert short.count("successes") == 10  # every total survives


@settings(max_examples=100, deadline=None)
@given(limit=st.integers(1, 600), seed=st.integers(0, 1000))
def test_limit_always_respected(limit: int, seed: int) -> None:
    res = evaluate("40d6ie5kh30t4; 6! tn5 # note; 3 4d6dl1", random.Random(seed))
    out = render(res, limit)
    assert len(out) <= limit
    if limit >= 100:
        assert _balanced(out)
