"""The parser's cursor over one `;`-separated roll: characters, words, numbers, notes, and
errors that name the offending token and its position in the whole line.

Pure: no Discord, no database. It also counts the dice written so far, so that the whole
request stays within `Limits.max_dice` however it is spread over sets and rolls.
"""

from __future__ import annotations

from bot.cogs.tabletop.dice.syntax import DiceError, Limits

__all__ = ["Cursor"]


class Cursor:
    def __init__(self, text: str, base: int, full: str, limits: Limits) -> None:
        self.s = text
        self.i = 0
        self.base = base  # offset of this segment in the full string, for positions
        self.full = full
        self.limits = limits
        self.depth = 0
        self.dice = 0

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
