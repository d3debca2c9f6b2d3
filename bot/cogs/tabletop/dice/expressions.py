"""Parsing general dice expressions: `+ - *`, parentheses, constants and dice terms with
their modifiers (keep/drop, reroll, explode, success and failure targets).

Pure: no Discord, no database. Every refusal is a DiceError naming the token and its position;
a term that could never stop (a reroll or explosion on every face) is refused here, so rolling
always ends.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.cogs.tabletop.dice.lexer import Cursor
from bot.cogs.tabletop.dice.syntax import BinOp, Compare, Condition, Const, DiceTerm, Neg, Node

__all__ = ["ExpressionParser"]


@dataclass
class _Modifiers:
    """What follows `NdS`, filled in as the modifiers are read."""

    keep: tuple[str, int] | None = None
    reroll: Condition | None = None
    reroll_repeat: bool = False
    explode: Condition | None = None
    explode_repeat: bool = False
    success: Condition | None = None
    failure: Condition | None = None


class ExpressionParser(Cursor):
    def expr(self) -> Node:
        node = self.term()
        while True:
            save = self.i
            self.skip_ws()
            c = self.peek()
            if c in ("+", "-"):
                self.i += 1
                self.skip_ws()
                node = BinOp("+" if c == "+" else "-", node, self.term())
            else:
                self.i = save
                return node

    def term(self) -> Node:
        node = self.factor()
        while True:
            save = self.i
            self.skip_ws()
            if self.peek() == "*":
                self.i += 1
                self.skip_ws()
                node = BinOp("*", node, self.factor())
            else:
                self.i = save
                return node

    def factor(self) -> Node:
        self.depth += 1
        if self.depth > self.limits.max_nesting:
            raise self.error("expression nested too deeply")
        try:
            c = self.peek()
            if c == "-":
                self.i += 1
                self.skip_ws()
                return Neg(self.factor())
            if c == "+":
                self.i += 1
                self.skip_ws()
                return self.factor()
            if c == "(":
                self.i += 1
                self.skip_ws()
                node = self.expr()
                self.skip_ws()
                if self.peek() != ")":
                    raise self.error()
                self.i += 1
                return node
            start = self.i
            count = 1
            if self.is_digit():
                count = self.number()
            if self.peek().lower() == "d":
                return self.dice_term(count, start)
            if self.i == start:
                raise self.error()
            return Const(count)
        finally:
            self.depth -= 1

    def condition(self, default_op: Compare) -> Condition:
        op: Compare = default_op
        if self.peek() in ("<", ">", "="):
            op = self.peek()  # type: ignore[assignment]
            self.i += 1
        return Condition(op, self.number())

    def dice_term(self, count: int, start: int) -> DiceTerm:
        self.i += 1  # the d
        if count < 1:
            raise self.error("need at least 1 die", start)
        if self.peek() == "%":
            self.i += 1
            sides = 100
        else:
            s_at = self.i
            sides = self.number("sides")
            if not self.limits.min_sides <= sides <= self.limits.max_sides:
                raise self.error(
                    f"dice need {self.limits.min_sides}..{self.limits.max_sides} sides", s_at
                )
        self.add_dice(count, start)
        mods = _Modifiers()
        while self.modifier(mods, count, sides):
            pass
        if self.peek().isalnum() and not self.peek().isspace():
            raise self.error()
        return DiceTerm(
            count=count,
            sides=sides,
            keep=mods.keep,
            reroll=mods.reroll,
            reroll_repeat=mods.reroll_repeat,
            explode=mods.explode,
            explode_repeat=mods.explode_repeat,
            success=mods.success,
            failure=mods.failure,
            position=self.base + start,
        )

    def modifier(self, mods: _Modifiers, count: int, sides: int) -> bool:
        """Read one modifier of a dice term into `mods`; False when none is next."""
        m_at = self.i
        two = self.s[self.i : self.i + 2].lower()
        one = two[:1]
        if two in ("kh", "kl", "dh", "dl") or (one == "k" and two != "kh"):
            if mods.keep is not None:
                raise self.error("only one keep/drop per dice term", m_at)
            kind = two if two in ("kh", "kl", "dh", "dl") else "kh"
            self.i += len(kind) if two == kind else 1
            n = self.number() if self.is_digit() else 1
            if n > count:
                raise self.error(f"cannot keep/drop {n} of {count} dice", m_at)
            mods.keep = (kind, n)
        elif two in ("ir", "ie") or one in ("r", "e"):
            self.reroll_or_explode(mods, sides, two, one, m_at)
        elif one == "t":
            if mods.success is not None:
                raise self.error("only one success target per dice term", m_at)
            self.i += 1
            mods.success = self.condition(">")
        elif one == "f":
            if mods.failure is not None:
                raise self.error("only one failure target per dice term", m_at)
            self.i += 1
            mods.failure = self.condition("<")
        else:
            return False
        return True

    def reroll_or_explode(
        self, mods: _Modifiers, sides: int, two: str, one: str, m_at: int
    ) -> None:
        rep = one == "i"
        self.i += 2 if rep else 1
        cond = self.condition("=" if two[-1] == "r" or one == "r" else ">")
        is_reroll = (two == "ir") or one == "r"
        faces = cond.count_faces(sides)
        if is_reroll:
            if mods.reroll is not None:
                raise self.error("only one reroll per dice term", m_at)
            if rep and faces >= sides:
                raise self.error("that reroll would never stop", m_at)
            mods.reroll, mods.reroll_repeat = cond, rep
        else:
            if mods.explode is not None:
                raise self.error("only one explode per dice term", m_at)
            if rep and faces >= sides:
                raise self.error("that explosion would never stop", m_at)
            mods.explode, mods.explode_repeat = cond, rep
        if faces == 0:
            raise self.error("no face of the die matches", m_at)
