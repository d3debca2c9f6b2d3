from __future__ import annotations

import contextlib
import random
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.cogs.tabletop.dice import DiceError, Limits, evaluate, parse


class Scripted:
    """An RNG that returns a fixed sequence, so explosions and criticals are exact."""

    def __init__(self, *values: int) -> None:
        self.values = list(values)
        self.calls: list[tuple[int, int]] = []

    def randint(self, a: int, b: int) -> int:
        self.calls.append((a, b))
        v = self.values.pop(0)
        assert a <= v <= b
        return v


def one(expr: str, *values: int):  # type: ignore[no-untyped-def]
    return evaluate(expr, Scripted(*values)).segments[0]


def test_shadowrun_plain_shows_dice() -> None:
    s = one("6", 1, 2, 3, 4, 5, 6)
    assert [d.value for d in s.dice] == [1, 2, 3, 4, 5, 6]
    assert s.spec.kind == "shadowrun" and not s.spec.show_total
    assert s.total == 21


def test_shadowrun_total_and_modifier() -> None:
    s = one("6t -5", 1, 2, 3, 4, 5, 6)
    assert s.spec.show_total and s.total == 16


def test_rule_of_six_reaches_high_targets() -> None:
    s = one("3! tn8", 6, 2, 6, 1, 5)
    assert [d.rolls for d in s.dice] == [[6, 2], [6, 1], [5]]
    assert [d.value for d in s.dice] == [8, 7, 5]
    assert s.successes == 1 and s.dice[0].exploded and s.dice[0].success


def test_rule_of_six_repeats() -> None:
    s = one("1! tn13", 6, 6, 1)
    assert s.dice[0].rolls == [6, 6, 1] and s.successes == 1


def test_opposed_net_successes() -> None:
    s = one("2! tn3 vs 2! otn4", 3, 5, 1, 4)
    assert s.sides[0].successes == 2 and s.sides[1].successes == 1
    assert s.net_successes == 1 and s.winner == 0
    s = one("1! tn3 vs 1! otn4", 1, 1)
    assert s.net_successes == 0 and s.winner is None


def test_notes() -> None:
    s = one("6! tn4 # dodge; not a split", 1, 2, 3, 4, 5, 5)
    assert s.note == "dodge; not a split"
    assert one("2d6 fire damage", 1, 2).note == "fire damage"
    with pytest.raises(DiceError):
        parse("2d6fire")


def test_multiple_rolls() -> None:
    r = evaluate("d6; 2d6+1", Scripted(4, 1, 2))
    assert [s.total for s in r.segments] == [4, 4]


def test_cp2020_explodes_repeatedly() -> None:
    s = one("cp2020 +5", 10, 10, 3)
    assert s.dice[0].rolls == [10, 10, 3] and s.total == 28


def test_cpr_criticals() -> None:
    s = one("cpr +7", 10, 4)
    assert s.critical == "success" and s.total == 21
    s = one("cpr", 1, 4)
    assert s.critical == "failure" and s.total == -3
    s = one("cpr", 5)
    assert s.critical is None and s.total == 5


def test_general_arithmetic() -> None:
    assert one("2d6+3*2", 1, 2).total == 9
    assert one("(1d4-1)*3", 4).total == 9
    assert one("d%", 55).dice[0].sides == 100
    assert one("-d4", 2).total == -2


@pytest.mark.parametrize(
    ("expr", "kept", "total"),
    [
        ("4d6kh3", [True, True, False, True], 12),
        ("4d6kl1", [False, False, True, False], 1),
        ("4d6dh1", [True, False, True, True], 8),
        ("4d6dl1", [True, True, False, True], 12),
    ],
)
def test_keep_drop(expr: str, kept: list[bool], total: int) -> None:
    s = one(expr, 3, 5, 1, 4)
    assert [d.kept for d in s.dice] == kept and s.total == total


def test_reroll_once_and_repeatedly() -> None:
    s = one("2d6r1", 1, 1, 3)
    assert [d.rolls for d in s.dice] == [[1, 1], [3]] and s.total == 4
    s = one("1d6ir1", 1, 1, 2)
    assert s.dice[0].rolls == [1, 1, 2] and s.total == 2
    s = one("1d6ir<2", 2, 1, 6)
    assert s.dice[0].rolls == [2, 1, 6]


def test_explode_once_and_repeatedly() -> None:
    s = one("1d6e6", 6, 6)
    assert [d.value for d in s.dice] == [6, 6] and s.total == 12 and s.dice[1].from_explosion
    s = one("1d6ie5", 6, 5, 2)
    assert [d.value for d in s.dice] == [6, 5, 2] and s.total == 13


def test_successes_and_failures() -> None:
    s = one("5d10t7f1", 7, 10, 1, 3, 8)
    assert s.total == 2 and s.successes == 2
    assert [d.success for d in s.dice] == [True, True, False, False, True]
    assert [d.failure for d in s.dice] == [False, False, True, False, False]


def test_sets() -> None:
    s = evaluate("6 4d6kh3", random.Random(3)).segments[0]
    assert len(s.sets) == 6 and all(len(x.terms[0].dice) == 4 for x in s.sets)


@pytest.mark.parametrize(
    ("expr", "pos", "token"),
    [
        ("4d6x", 3, "x"),
        ("2d6 +", 5, ""),
        ("d6; 2d6 +)", 9, ")"),
        ("1d6ie1", 3, "ie"),
        ("d6ir<6", 2, "ir"),
        ("101d6", 0, "101"),
        ("50d6; 51d6", 6, "51"),
        ("21 4d6", 0, "21"),
        ("d1", 1, "1"),
        ("d1001", 1, "1001"),
    ],
)
def test_errors_name_token_and_position(expr: str, pos: int, token: str) -> None:
    with pytest.raises(DiceError) as ei:
        parse(expr)
    assert ei.value.position == pos and ei.value.token == token
    assert f"position {pos}" in str(ei.value)


def test_limits_are_configurable() -> None:
    parse("200d6", Limits(max_dice=200))
    with pytest.raises(DiceError):
        parse("x" * 301)
    with pytest.raises(DiceError):
        parse(";".join(["d6"] * 11))


def test_extra_rolls_capped() -> None:
    class Sixes:
        def randint(self, a: int, b: int) -> int:
            return b

    s = evaluate("1! tn4", Sixes()).segments[0]
    assert len(s.dice[0].rolls) == 21
    r = evaluate("100d6ie6", Sixes())
    assert len(r.segments[0].dice) <= 100 + 200


# --------------------------------------------------------------- properties

small = st.integers(1, 8)


@settings(max_examples=200, deadline=None)
@given(n=small, sides=st.integers(2, 30), seed=st.integers(0, 2**32))
def test_dice_in_range_and_totals(n: int, sides: int, seed: int) -> None:
    s = evaluate(f"{n}d{sides}ie{sides}r1+3", random.Random(seed)).segments[0]
    assert all(1 <= v <= sides for d in s.dice for v in d.rolls)
    assert s.total == sum(d.value for d in s.dice if d.kept) + 3
    assert len(s.dice) >= n


@settings(max_examples=200, deadline=None)
@given(n=small, k=small, seed=st.integers(0, 2**32), kind=st.sampled_from(["kh", "kl", "dh", "dl"]))
def test_keep_drop_keeps_the_right_ones(n: int, k: int, seed: int, kind: str) -> None:
    k = min(k, n)
    s = evaluate(f"{n}d20{kind}{k}", random.Random(seed)).segments[0]
    kept = sorted(d.value for d in s.dice if d.kept)
    values = sorted(d.value for d in s.dice)
    expect = {
        "kh": values[n - k :],
        "kl": values[:k],
        "dh": values[: n - k],
        "dl": values[k:],
    }[kind]
    assert kept == expect


@settings(max_examples=200, deadline=None)
@given(n=small, tn=st.integers(2, 20), seed=st.integers(0, 2**32))
def test_successes_at_most_dice(n: int, tn: int, seed: int) -> None:
    s = evaluate(f"{n}! tn{tn}", random.Random(seed)).segments[0]
    assert 0 <= s.successes <= n
    assert s.successes == sum(d.value >= tn for d in s.dice)
    g = evaluate(f"{n}d10ie10t{min(tn, 10)}", random.Random(seed)).segments[0]
    assert g.successes <= len(g.dice)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_deterministic_for_a_seed(seed: int) -> None:
    expr = "6! tn5; 4d6kh3; cpr; cp2020; 3 2d10ie10"
    a = evaluate(expr, random.Random(seed))
    b = evaluate(expr, random.Random(seed))
    assert [s.dice for s in a.segments] == [s.dice for s in b.segments]


# --------------------------------------------------------------------- fuzz

VALID = ["6! tn4", "5! tn3 vs 6! otn4", "4d6kh3+2", "cpr +7", "6 4d6", "3d10ie10t7f1", "d%*2"]
ALPHABET = "0123456789d%!+-*()<>=;# tnvskhlrieofcpx \t"


def _check(expr: str) -> None:
    with contextlib.suppress(DiceError):
        evaluate(expr, random.Random(0))


@settings(max_examples=400, deadline=200)
@given(st.text(max_size=60))
def test_fuzz_text_only_raises_dice_error(expr: str) -> None:
    _check(expr)


@settings(max_examples=600, deadline=200)
@given(st.text(alphabet=ALPHABET, max_size=80))
def test_fuzz_dice_alphabet(expr: str) -> None:
    _check(expr)


@settings(max_examples=400, deadline=200)
@given(
    base=st.sampled_from(VALID),
    pos=st.integers(0, 30),
    ins=st.text(alphabet=ALPHABET + "9999", max_size=6),
    cut=st.integers(0, 3),
)
def test_fuzz_mutated_valid(base: str, pos: int, ins: str, cut: int) -> None:
    p = min(pos, len(base))
    tracemalloc.start()
    try:
        _check(base[:p] + ins + base[p + cut :])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000


def test_worst_case_allocation_is_small() -> None:
    tracemalloc.start()
    try:
        _check("(" * 200 + "999999*" * 20)
        _check("100d1000ie2")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000


def test_the_engine_imports_no_discord_redis_or_database() -> None:
    """The pure cores (the dice package, initiative, render) stay importable without Discord,
    Redis or asyncpg, as the architecture's import rules say."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import bot.cogs.tabletop.dice, bot.cogs.tabletop.initiative\n"
        "import bot.cogs.tabletop.roll_render\n"
        "print(sorted(m for m in ('discord', 'redis', 'asyncpg', 'aiohttp') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
