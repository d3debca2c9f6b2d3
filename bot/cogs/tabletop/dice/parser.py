"""Parsing a roll line: split at `;` (not inside a note), then read each roll as the game
system it is written in (Shadowrun pools, opposed rolls, sets, Cyberpunk, or a general dice
expression, expressions.py).

Pure: no Discord, no database. `parse` raises DiceError naming the offending token and its
position in the whole line; the dice of the whole line count against `Limits.max_dice`.
"""

from __future__ import annotations

from typing import Literal

from bot.cogs.tabletop.dice.expressions import ExpressionParser
from bot.cogs.tabletop.dice.syntax import (
    DEFAULT_LIMITS,
    DiceError,
    Limits,
    RollRequest,
    RollSpec,
    ShadowrunSide,
)

__all__ = ["parse"]


class _SegmentParser(ExpressionParser):
    """One `;`-separated roll: which system it is, and its parts."""

    def segment(self) -> RollSpec:
        self.skip_ws()
        text = self.s.strip()
        if self.at_end() or self.peek() == "#":
            raise self.error("empty roll")
        for kw in ("cp2020", "cpr"):
            if self.s[self.i : self.i + len(kw)].lower() == kw and not self.peek(len(kw)).isalnum():
                self.i += len(kw)
                mod = self.opt_modifier()
                note = self.rest_as_note()
                kind: Literal["cp2020", "cpr"] = "cp2020" if kw == "cp2020" else "cpr"
                self.add_dice(1, 0)
                return RollSpec(kind=kind, text=text, note=note, modifier=mod)
        if self.is_digit():
            save = self.i
            n = self.number("dice count")
            if self.peek().lower() != "d":
                return self.shadowrun(n, save, text)
            self.i = save
        expr = self.expr()
        return RollSpec(kind="expr", text=text, expr=expr, note=self.rest_as_note())

    def opt_modifier(self) -> int:
        save = self.i
        self.skip_ws()
        if self.peek() in ("+", "-"):
            sign = -1 if self.peek() == "-" else 1
            self.i += 1
            self.skip_ws()
            return sign * self.number("modifier")
        self.i = save
        return 0

    def shadowrun_side(self, n: int, at: int, tn_word: str) -> ShadowrunSide:
        if n < 1:
            raise self.error("need at least 1 die", at)
        self.add_dice(n, at)
        rule6 = False
        if self.peek() == "!":
            rule6 = True
            self.i += 1
        target = None
        save = self.i
        self.skip_ws()
        for w in (tn_word, "tn") if tn_word != "tn" else ("tn",):
            if self.word(w):
                self.skip_ws()
                t_at = self.i
                target = self.number("target number")
                if target < 2:
                    raise self.error("target number must be at least 2", t_at)
                if rule6 and target > 6 * (self.limits.max_explode_depth + 1):
                    raise self.error("target number too high", t_at)
                break
        else:
            self.i = save
        return ShadowrunSide(dice=n, rule_of_six=rule6, target=target)

    def shadowrun(self, n: int, at: int, text: str) -> RollSpec:
        """A roll that starts with a number not followed by `d`: a Shadowrun pool (`6`, `6t`,
        `6! tn4`, `5! tn3 vs 6! otn4`) or a set of expressions (`6 4d6`)."""
        if self.peek().lower() == "t" and not self.peek(1).isalpha():
            self.i += 1
            self.add_dice(n, at)
            if n < 1:
                raise self.error("need at least 1 die", at)
            mod = self.opt_modifier()
            return RollSpec(
                kind="shadowrun",
                text=text,
                sides=(ShadowrunSide(n, False, None),),
                show_total=True,
                modifier=mod,
                note=self.rest_as_note(),
            )
        if self.peek() in (" ", "\t"):
            a_set = self.set_of(n, at, text)
            if a_set is not None:
                return a_set
        first = self.shadowrun_side(n, at, "tn")
        mod = self.opt_modifier()
        save = self.i
        self.skip_ws()
        if self.word("vs"):
            if first.target is None:
                raise self.error("opposed rolls need a target number (tn)", save)
            return self.opposed(first, mod, text)
        self.i = save
        return RollSpec(
            kind="shadowrun", text=text, sides=(first,), modifier=mod, note=self.rest_as_note()
        )

    def set_of(self, n: int, at: int, text: str) -> RollSpec | None:
        """`6 4d6`: `n` rolls of the expression after the space; None (cursor unmoved) when
        what follows is not a dice expression."""
        save = self.i
        self.skip_ws()
        if self.is_digit() or (self.peek().lower() == "d" and not self.peek(1).isalpha()):
            j = self.i
            while j < len(self.s) and self.s[j].isdigit():
                j += 1
            if j < len(self.s) and self.s[j].lower() == "d":
                if n < 1 or n > self.limits.max_set:
                    raise self.error(f"set size must be 1..{self.limits.max_set}", at)
                before = self.dice
                expr = self.expr()
                per = self.dice - before
                self.add_dice(per * (n - 1), at)
                return RollSpec(
                    kind="expr", text=text, expr=expr, repeat=n, note=self.rest_as_note()
                )
        self.i = save
        return None

    def opposed(self, first: ShadowrunSide, mod: int, text: str) -> RollSpec:
        """After `vs`: the second side, which needs its own target number (`otn`)."""
        self.skip_ws()
        o_at = self.i
        m = self.number("dice count")
        second = self.shadowrun_side(m, o_at, "otn")
        if second.target is None:
            raise self.error("opposed rolls need a target number (otn)", self.i)
        return RollSpec(
            kind="opposed",
            text=text,
            sides=(first, second),
            modifier=mod,
            note=self.rest_as_note(),
        )


def parse(expr: str, limits: Limits = DEFAULT_LIMITS) -> RollRequest:
    """Parse a roll expression; raise DiceError naming the offending token."""
    if not isinstance(expr, str):
        raise DiceError("roll expression must be text", 0, "")
    if len(expr) > limits.max_length:
        raise DiceError(
            f"roll expression too long ({len(expr)} > {limits.max_length} characters)",
            limits.max_length,
            expr[limits.max_length : limits.max_length + 1],
        )
    # `;` splits rolls, except inside a note (after `#`), where it is just text.
    pieces: list[tuple[int, str]] = []
    start = 0
    in_note = False
    for j, c in enumerate(expr):
        if c == "#":
            in_note = True
        elif c == ";" and not in_note:
            pieces.append((start, expr[start:j]))
            start = j + 1
    pieces.append((start, expr[start:]))
    if len(pieces) > limits.max_rolls:
        raise DiceError(
            f"too many rolls (max {limits.max_rolls})",
            pieces[limits.max_rolls][0] - 1,
            ";",
        )
    total_dice = 0
    specs: list[RollSpec] = []
    for base, text in pieces:
        p = _SegmentParser(text, base, expr, limits)
        p.dice = total_dice
        specs.append(p.segment())
        total_dice = p.dice
    return RollRequest(text=expr, rolls=tuple(specs))
