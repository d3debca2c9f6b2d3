"""What a roll expression parses to, what the parser refuses and the limits it holds to.

Pure: no Discord, no database. See docs/dice.md for the syntax.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bot.user_error import UserError

__all__ = [
    "DEFAULT_LIMITS",
    "BinOp",
    "Compare",
    "Condition",
    "Const",
    "DiceError",
    "DiceTerm",
    "Limits",
    "Neg",
    "Node",
    "RollRequest",
    "RollSpec",
    "ShadowrunSide",
]


class DiceError(UserError, ValueError):
    """A roll expression the engine refuses; the message says what and where (the token and
    its position in the line). A `UserError`: the one command handler shows it as it is."""

    def __init__(self, message: str, position: int, token: str) -> None:
        super().__init__(message)
        self.position = position
        self.token = token


@dataclass(frozen=True)
class Limits:
    max_dice: int = 100  # dice written in the whole expression, sets and `;` rolls included
    min_sides: int = 2
    max_sides: int = 1000
    max_explode_depth: int = 20  # extra rolls for one die
    max_extra_rolls: int = 200  # extra rolls (explosions, rerolls) across the whole request
    max_length: int = 300
    max_rolls: int = 10  # `;`-separated rolls
    max_set: int = 20
    max_constant: int = 1_000_000
    max_nesting: int = 10  # parentheses and unary minus


DEFAULT_LIMITS = Limits()

Compare = Literal["<", ">", "="]


@dataclass(frozen=True)
class Condition:
    op: Compare
    value: int

    def matches(self, x: int) -> bool:
        if self.op == "<":
            return x <= self.value
        if self.op == ">":
            return x >= self.value
        return x == self.value

    def count_faces(self, sides: int) -> int:
        return sum(1 for f in range(1, sides + 1) if self.matches(f))


@dataclass(frozen=True)
class DiceTerm:
    count: int
    sides: int
    keep: tuple[str, int] | None = None  # ("kh"|"kl"|"dh"|"dl", n)
    reroll: Condition | None = None
    reroll_repeat: bool = False
    explode: Condition | None = None
    explode_repeat: bool = False
    success: Condition | None = None
    failure: Condition | None = None
    position: int = 0


@dataclass(frozen=True)
class Const:
    value: int


@dataclass(frozen=True)
class Neg:
    operand: Node


@dataclass(frozen=True)
class BinOp:
    op: Literal["+", "-", "*"]
    left: Node
    right: Node


Node = DiceTerm | Const | Neg | BinOp


@dataclass(frozen=True)
class ShadowrunSide:
    dice: int
    rule_of_six: bool
    target: int | None


@dataclass(frozen=True)
class RollSpec:
    """One `;`-separated roll."""

    kind: Literal["expr", "shadowrun", "opposed", "cp2020", "cpr"]
    text: str
    note: str = ""
    expr: Node | None = None  # kind "expr"
    repeat: int = 1  # sets: `6 4d6`
    sides: tuple[ShadowrunSide, ...] = ()  # shadowrun / opposed
    show_total: bool = False  # `6t`
    modifier: int = 0  # shadowrun / cyberpunk


@dataclass(frozen=True)
class RollRequest:
    text: str
    rolls: tuple[RollSpec, ...]
