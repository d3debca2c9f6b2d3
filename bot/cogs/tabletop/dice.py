"""Dice engine: parse a roll expression, roll it with an injected RNG, return plain data.

Pure: no Discord, no database. See docs/dice.md for the syntax.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal, Protocol

__all__ = [
    "RNG",
    "SYNTAX_HELP",
    "BinOp",
    "Const",
    "DiceError",
    "DiceTerm",
    "Die",
    "Limits",
    "Neg",
    "Node",
    "RollRequest",
    "RollResult",
    "RollSpec",
    "SegmentResult",
    "SetResult",
    "SideResult",
    "evaluate",
    "parse",
    "roll",
]

SYNTAX_HELP = """\
Shadowrun: `6` (6d6), `6t` (total), `6t -5` (total with modifier), `6! tn4` (Rule of 6, \
successes vs target number 4), `5! tn3 vs 6! otn4` (opposed, net successes).
Cyberpunk: `cp2020` (1d10, a 10 explodes), `cp2020 +5`, `cpr` (1d10: 10 crit adds a d10, \
1 fumble subtracts a d10), `cpr +7`.
Dice: `3d6+2`, `d20`, `d%`, `2d6*3`, keep/drop `4d6kh3` `4d6kl1` `4d6dh1` `4d6dl1`, \
reroll once `r1` or until not `ir1` (`r<3`, `r>5` too), explode once `e6` / repeatedly \
`ie6` (on >= N), successes `t7` (dice >= 7) minus failures `f1` (dice <= 1), \
sets `6 4d6` (six rolls of 4d6).
Several rolls: separate with `;`. Notes: `6! tn4 # dodge`, or words after a space.\
"""


class RNG(Protocol):
    def randint(self, a: int, b: int) -> int: ...


class DiceError(ValueError):
    """A roll expression the engine refuses; the message is safe to show users."""

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

# --------------------------------------------------------------------------- AST

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


# ------------------------------------------------------------------------ results


@dataclass
class Die:
    sides: int
    rolls: list[int]  # every face rolled for this die, in order
    value: int  # what the die counts as (after rerolls; summed for Rule of 6)
    kept: bool = True
    exploded: bool = False  # this die triggered an explosion (or a Rule of 6 reroll)
    from_explosion: bool = False  # this die was added by an explosion
    rerolled: bool = False
    success: bool = False
    failure: bool = False


@dataclass
class SideResult:
    """Dice of one Shadowrun side, or one dice term of an expression."""

    dice: list[Die]
    target: int | None = None
    successes: int = 0
    failures: int = 0
    counts_successes: bool = False


@dataclass
class SetResult:
    """One evaluation of an expression (one member of a set)."""

    terms: list[SideResult]
    total: int
    successes: int = 0
    counts_successes: bool = False


@dataclass
class SegmentResult:
    spec: RollSpec
    sets: list[SetResult] = field(default_factory=list)  # kind "expr"
    sides: list[SideResult] = field(default_factory=list)  # shadowrun / opposed / cyberpunk
    total: int = 0
    successes: int = 0
    net_successes: int = 0  # opposed: first side minus second
    winner: int | None = None  # opposed: 0, 1 or None for a tie
    critical: Literal["success", "failure"] | None = None  # cpr

    @property
    def note(self) -> str:
        return self.spec.note

    @property
    def dice(self) -> list[Die]:
        out = [d for s in self.sides for d in s.dice]
        out += [d for st in self.sets for t in st.terms for d in t.dice]
        return out


@dataclass
class RollResult:
    request: RollRequest
    segments: list[SegmentResult]


# ------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, text: str, base: int, full: str, limits: Limits) -> None:
        self.s = text
        self.i = 0
        self.base = base  # offset of this segment in the full string, for positions
        self.full = full
        self.limits = limits
        self.depth = 0
        self.dice = 0

    # -- helpers
    def error(self, msg: str | None = None, at: int | None = None) -> DiceError:
        pos = self.i if at is None else at
        tok = self._token_at(pos)
        abs_pos = self.base + pos
        if msg is None:
            if tok:
                msg = f"unexpected '{tok}' at position {abs_pos} in '{self.full}'"
            else:
                msg = f"unexpected end at position {abs_pos} in '{self.full}'"
        else:
            msg = f"{msg} at position {abs_pos} in '{self.full}'"
        return DiceError(msg, abs_pos, tok)

    def _token_at(self, pos: int) -> str:
        if pos >= len(self.s):
            return ""
        c = self.s[pos]
        j = pos + 1
        if c.isdigit():
            while j < len(self.s) and self.s[j].isdigit():
                j += 1
        elif c.isalpha():
            while j < len(self.s) and self.s[j].isalpha():
                j += 1
        return self.s[pos:j]

    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.s[j] if j < len(self.s) else ""

    def skip_ws(self) -> bool:
        start = self.i
        while self.peek() in (" ", "\t", "\n", "\r") and self.peek():
            self.i += 1
        return self.i > start

    def at_end(self) -> bool:
        return self.i >= len(self.s)

    def word(self, w: str) -> bool:
        """Consume keyword `w` (case-insensitive) if it is next."""
        if self.s[self.i : self.i + len(w)].lower() == w:
            self.i += len(w)
            return True
        return False

    def number(self, what: str = "number") -> int:
        start = self.i
        while self.peek().isdigit() and self.peek().isascii():
            self.i += 1
            if self.i - start > 9:
                raise self.error(f"{what} too large", start)
        if self.i == start:
            raise self.error()
        value = int(self.s[start : self.i])
        if value > self.limits.max_constant:
            raise self.error(f"{what} {value} too large (max {self.limits.max_constant})", start)
        return value

    def add_dice(self, n: int, at: int) -> None:
        self.dice += n
        if self.dice > self.limits.max_dice:
            raise self.error(f"too many dice (max {self.limits.max_dice})", at)

    def is_digit(self) -> bool:
        return self.peek().isdigit() and self.peek().isascii()

    # -- notes
    def rest_as_note(self) -> str:
        """At a note boundary: `#...`, or words after whitespace. Else error."""
        had_ws = self.skip_ws()
        if self.at_end():
            return ""
        if self.peek() == "#":
            return self.s[self.i + 1 :].strip()
        if had_ws and self.peek().isalpha():
            return self.s[self.i :].strip()
        raise self.error()

    # -- segment
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
        # a set: `6 4d6`
        if self.peek() in (" ", "\t"):
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
        first = self.shadowrun_side(n, at, "tn")
        mod = self.opt_modifier()
        save = self.i
        self.skip_ws()
        if self.word("vs"):
            if first.target is None:
                raise self.error("opposed rolls need a target number (tn)", save)
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
        self.i = save
        return RollSpec(
            kind="shadowrun", text=text, sides=(first,), modifier=mod, note=self.rest_as_note()
        )

    # -- general expressions
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
        keep: tuple[str, int] | None = None
        reroll: Condition | None = None
        reroll_rep = False
        explode: Condition | None = None
        explode_rep = False
        success: Condition | None = None
        failure: Condition | None = None
        while True:
            m_at = self.i
            two = self.s[self.i : self.i + 2].lower()
            one = two[:1]
            if two in ("kh", "kl", "dh", "dl") or (one == "k" and two != "kh"):
                if keep is not None:
                    raise self.error("only one keep/drop per dice term", m_at)
                kind = two if two in ("kh", "kl", "dh", "dl") else "kh"
                self.i += len(kind) if two == kind else 1
                n = self.number() if self.is_digit() else 1
                if n > count:
                    raise self.error(f"cannot keep/drop {n} of {count} dice", m_at)
                keep = (kind, n)
            elif two in ("ir", "ie") or one in ("r", "e"):
                rep = one == "i"
                self.i += 2 if rep else 1
                cond = self.condition("=" if two[-1] == "r" or one == "r" else ">")
                is_reroll = (two == "ir") or one == "r"
                faces = cond.count_faces(sides)
                if is_reroll:
                    if reroll is not None:
                        raise self.error("only one reroll per dice term", m_at)
                    if rep and faces >= sides:
                        raise self.error("that reroll would never stop", m_at)
                    reroll, reroll_rep = cond, rep
                else:
                    if explode is not None:
                        raise self.error("only one explode per dice term", m_at)
                    if rep and faces >= sides:
                        raise self.error("that explosion would never stop", m_at)
                    explode, explode_rep = cond, rep
                if faces == 0:
                    raise self.error("no face of the die matches", m_at)
            elif one == "t":
                if success is not None:
                    raise self.error("only one success target per dice term", m_at)
                self.i += 1
                success = self.condition(">")
            elif one == "f":
                if failure is not None:
                    raise self.error("only one failure target per dice term", m_at)
                self.i += 1
                failure = self.condition("<")
            else:
                break
        if self.peek().isalnum() and not self.peek().isspace():
            raise self.error()
        return DiceTerm(
            count=count,
            sides=sides,
            keep=keep,
            reroll=reroll,
            reroll_repeat=reroll_rep,
            explode=explode,
            explode_repeat=explode_rep,
            success=success,
            failure=failure,
            position=self.base + start,
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
        p = _Parser(text, base, expr, limits)
        p.dice = total_dice
        specs.append(p.segment())
        total_dice = p.dice
    return RollRequest(text=expr, rolls=tuple(specs))


# ------------------------------------------------------------------------- roller


class _Budget:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.extra = 0

    def take(self) -> bool:
        if self.extra >= self.limits.max_extra_rolls:
            return False
        self.extra += 1
        return True


def _roll_term(t: DiceTerm, rng: RNG, budget: _Budget, limits: Limits) -> SideResult:
    dice: list[Die] = []
    for _ in range(t.count):
        v = rng.randint(1, t.sides)
        d = Die(t.sides, [v], v)
        if t.reroll is not None and t.reroll.matches(v):
            depth = 0
            while t.reroll.matches(d.value) and depth < limits.max_explode_depth and budget.take():
                v = rng.randint(1, t.sides)
                d.rolls.append(v)
                d.value = v
                d.rerolled = True
                depth += 1
                if not t.reroll_repeat:
                    break
        dice.append(d)
    if t.explode is not None:
        # An explosion adds a new die to the pool (as most dice bots do); that die may
        # explode again only with `ie`.
        out: list[Die] = []
        for d in dice:
            out.append(d)
            cur = d
            depth = 0
            while (
                t.explode.matches(cur.value) and depth < limits.max_explode_depth and budget.take()
            ):
                cur.exploded = True
                v = rng.randint(1, t.sides)
                cur = Die(t.sides, [v], v, from_explosion=True)
                out.append(cur)
                depth += 1
                if not t.explode_repeat:
                    break
        dice = out
    if t.keep is not None:
        kind, n = t.keep
        ascending = sorted(range(len(dice)), key=lambda k: (dice[k].value, k))
        highest_first = ascending[::-1]
        if kind == "kh":
            chosen = highest_first[:n]
        elif kind == "kl":
            chosen = ascending[:n]
        elif kind == "dh":
            chosen = ascending[: max(0, len(dice) - n)]
        else:
            chosen = highest_first[: max(0, len(dice) - n)]
        keep_idx = set(chosen)
        for k, d in enumerate(dice):
            d.kept = k in keep_idx
    res = SideResult(dice)
    if t.success is not None or t.failure is not None:
        res.counts_successes = True
        for d in dice:
            if not d.kept:
                continue
            if t.success is not None and t.success.matches(d.value):
                d.success = True
                res.successes += 1
            if t.failure is not None and t.failure.matches(d.value):
                d.failure = True
                res.failures += 1
    return res


def _eval(node: Node, rng: RNG, budget: _Budget, limits: Limits, terms: list[SideResult]) -> int:
    if isinstance(node, Const):
        return node.value
    if isinstance(node, Neg):
        return -_eval(node.operand, rng, budget, limits, terms)
    if isinstance(node, BinOp):
        a = _eval(node.left, rng, budget, limits, terms)
        b = _eval(node.right, rng, budget, limits, terms)
        if node.op == "+":
            return a + b
        if node.op == "-":
            return a - b
        return a * b
    r = _roll_term(node, rng, budget, limits)
    terms.append(r)
    if r.counts_successes:
        return r.successes - r.failures
    return sum(d.value for d in r.dice if d.kept)


def _roll_sr_side(side: ShadowrunSide, rng: RNG, budget: _Budget, limits: Limits) -> SideResult:
    dice: list[Die] = []
    for _ in range(side.dice):
        v = rng.randint(1, 6)
        d = Die(6, [v], v)
        depth = 0
        # Rule of 6: the reroll adds to the same die, so one die can reach any target number.
        while (
            side.rule_of_six
            and d.rolls[-1] == 6
            and depth < limits.max_explode_depth
            and budget.take()
        ):
            d.exploded = True
            v = rng.randint(1, 6)
            d.rolls.append(v)
            d.value += v
            depth += 1
        dice.append(d)
    res = SideResult(dice, target=side.target, counts_successes=side.target is not None)
    if side.target is not None:
        for d in dice:
            if d.value >= side.target:
                d.success = True
                res.successes += 1
    return res


def roll(
    request: RollRequest, rng: RNG | None = None, limits: Limits = DEFAULT_LIMITS
) -> RollResult:
    """Roll a parsed request. `rng` needs only `randint(a, b)`; default is the OS's RNG."""
    rng = rng if rng is not None else random.SystemRandom()
    budget = _Budget(limits)
    out: list[SegmentResult] = []
    for spec in request.rolls:
        seg = SegmentResult(spec)
        if spec.kind == "expr":
            assert spec.expr is not None
            for _ in range(spec.repeat):
                terms: list[SideResult] = []
                total = _eval(spec.expr, rng, budget, limits, terms)
                counts = any(t.counts_successes for t in terms)
                seg.sets.append(
                    SetResult(
                        terms=terms,
                        total=total,
                        successes=sum(t.successes - t.failures for t in terms),
                        counts_successes=counts,
                    )
                )
            seg.total = seg.sets[0].total if len(seg.sets) == 1 else sum(s.total for s in seg.sets)
            seg.successes = seg.sets[0].successes if len(seg.sets) == 1 else 0
        elif spec.kind in ("shadowrun", "opposed"):
            for side in spec.sides:
                seg.sides.append(_roll_sr_side(side, rng, budget, limits))
            first = seg.sides[0]
            seg.total = sum(d.value for d in first.dice) + spec.modifier
            seg.successes = first.successes
            if spec.kind == "opposed":
                seg.net_successes = first.successes - seg.sides[1].successes
                seg.winner = 0 if seg.net_successes > 0 else 1 if seg.net_successes < 0 else None
        elif spec.kind == "cp2020":
            v = rng.randint(1, 10)
            d = Die(10, [v], v)
            depth = 0
            while d.rolls[-1] == 10 and depth < limits.max_explode_depth and budget.take():
                d.exploded = True
                v = rng.randint(1, 10)
                d.rolls.append(v)
                d.value += v
                depth += 1
            seg.sides.append(SideResult([d]))
            seg.total = d.value + spec.modifier
        else:  # cpr
            v = rng.randint(1, 10)
            d = Die(10, [v], v)
            dice = [d]
            total = v
            if v in (1, 10):
                d.exploded = True
                w = rng.randint(1, 10)
                extra = Die(10, [w], w, from_explosion=True)
                dice.append(extra)
                if v == 10:
                    seg.critical = "success"
                    d.success = True
                    total += w
                else:
                    seg.critical = "failure"
                    d.failure = True
                    total -= w
            seg.sides.append(SideResult(dice))
            seg.total = total + spec.modifier
        out.append(seg)
    return RollResult(request, out)


def evaluate(expr: str, rng: RNG | None = None, limits: Limits = DEFAULT_LIMITS) -> RollResult:
    """Parse and roll in one step."""
    return roll(parse(expr, limits), rng, limits)
