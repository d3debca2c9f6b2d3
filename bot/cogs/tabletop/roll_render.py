"""Format a RollResult as Discord markdown, shortened safely to a character limit.

Everything is built from atoms (one die, one label, one total) and only whole atoms are
dropped, so a markdown token is never cut in half.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.cogs.tabletop.dice import Die, RollResult, SegmentResult, SetResult, SideResult

__all__ = ["DISCORD_LIMIT", "SUMMARY_LIMIT", "render", "render_die", "summary"]

DISCORD_LIMIT = 2000
_MARKDOWN = "\\*_~`|>#[]()"


def _escape(text: str) -> str:
    return "".join("\\" + c if c in _MARKDOWN else c for c in text.replace("\n", " "))


def render_die(d: Die) -> str:
    """One die: bold if it exploded, underlined if a success, italic if a failure,
    struck through if dropped; rerolled faces shown struck before the kept face."""
    if d.rolls and d.value == sum(d.rolls) and len(d.rolls) > 1 and not d.rerolled:
        face = "+".join(str(v) for v in d.rolls)  # Rule of 6 / cp2020: rolls add up
    else:
        face = str(d.value)
    if d.exploded:
        face = f"**{face}**"
    if d.success:
        face = f"__{face}__"
    if d.failure:
        face = f"*{face}*"
    if d.rerolled:
        face = "".join(f"~~{v}~~→" for v in d.rolls[:-1]) + face
    if not d.kept:
        face = f"~~{face}~~"
    return face


@dataclass
class _Line:
    head: list[str]
    dice: list[str]
    tail: list[str] = field(default_factory=list)
    shown: int = -1  # dice atoms kept; -1 means all

    def text(self) -> str:
        dice = self.dice if self.shown < 0 else self.dice[: self.shown]
        body = ""
        if self.dice:
            more = "" if self.shown < 0 else f", … {len(self.dice) - self.shown} more"
            body = " [" + ", ".join(dice) + more + "]"
        return "".join(self.head) + body + "".join(self.tail)


def _side_dice(side: SideResult) -> list[str]:
    return [render_die(d) for d in side.dice]


def _successes(n: int) -> str:
    return "success" if n == 1 else "successes"


def _result(st: SetResult, *, bold: bool = True) -> str:
    """A set's result: its successes when it counts them, else its total."""
    b = "**" if bold else ""
    if st.counts_successes:
        return f"{b}{st.successes}{b} {_successes(st.successes)}"
    return f"{b}{st.total}{b}"


def _note(seg: SegmentResult) -> list[str]:
    return [f" — {_escape(seg.note)}"] if seg.note else []


def _lines(seg: SegmentResult) -> list[_Line]:
    spec = seg.spec
    label = f"`{spec.text.replace('`', chr(39))}`" if spec.text else ""
    head = [label, ": "]
    k = spec.kind
    if k == "expr":
        if len(seg.sets) == 1:
            st = seg.sets[0]
            dice = [a for t in st.terms for a in _side_dice(t)]
            res = _result(st)
            return [_Line([*head, res], dice, _note(seg))]
        out = [_Line(head, [], _note(seg))]
        for n, st in enumerate(seg.sets, 1):
            dice = [a for t in st.terms for a in _side_dice(t)]
            res = _result(st)
            out.append(_Line([f"{n}. ", res], dice))
        return out
    if k == "shadowrun":
        side = seg.sides[0]
        mod = f" ({spec.modifier:+d})" if spec.modifier else ""
        if side.counts_successes:
            res = f"**{side.successes}** {_successes(side.successes)} (TN {side.target})"
        elif spec.show_total or spec.modifier:
            res = f"total **{seg.total}**{mod}"
        else:
            res = f"{len(side.dice)}d6"
        return [_Line([*head, res], _side_dice(side), _note(seg))]
    if k == "opposed":
        a, b = seg.sides
        if seg.winner is None:
            verdict = "tie"
        else:
            verdict = f"{'attacker' if seg.winner == 0 else 'defender'} wins"
        res = f"net **{seg.net_successes:+d}** ({verdict})"
        return [
            _Line([*head, res], [], _note(seg)),
            _Line([f"attacker: **{a.successes}** (TN {a.target})"], _side_dice(a)),
            _Line([f"defender: **{b.successes}** (TN {b.target})"], _side_dice(b)),
        ]
    mod = f" ({spec.modifier:+d})" if spec.modifier else ""
    crit = ""
    if seg.critical == "success":
        crit = " — **critical success**"
    elif seg.critical == "failure":
        crit = " — **critical failure**"
    return [_Line([*head, f"**{seg.total}**{mod}{crit}"], _side_dice(seg.sides[0]), _note(seg))]


def render(result: RollResult, limit: int = DISCORD_LIMIT) -> str:
    """Markdown for a roll; never longer than `limit`. When too long, dice are elided
    (`… N more`) before any total; if even the totals do not fit, whole lines are dropped
    and the output says so."""
    lines = [ln for seg in result.segments for ln in _lines(seg)]
    text = "\n".join(ln.text() for ln in lines)
    if len(text) <= limit:
        return text
    # Fixed part (labels, totals) first; the rest of the budget is shared out to dice.
    for ln in lines:
        ln.shown = 0
    fixed = len("\n".join(ln.text() for ln in lines))
    budget = limit - fixed
    for ln in lines:
        for atom in ln.dice[ln.shown :]:
            cost = len(atom) + 2
            if cost > budget:
                break
            ln.shown += 1
            budget -= cost
        if budget <= 0:
            break
    for ln in lines:
        if ln.shown >= len(ln.dice):
            ln.shown = -1
    text = "\n".join(ln.text() for ln in lines)
    if len(text) <= limit:
        return text
    marker = "\n… (output shortened)"
    kept: list[str] = []
    size = len(marker)
    for ln in lines:
        t = ln.text()
        if size + len(t) + 1 > limit:
            break
        kept.append(t)
        size += len(t) + 1
    return ("\n".join(kept) + marker)[:limit] if kept else marker.strip()[:limit]


def _segment_summary(seg: SegmentResult, *, compact: bool = False) -> str:
    """What one roll came to. `compact`: lists of dice become what they amount to (the
    highest die of an open test), for a line that is too long; nothing else changes."""
    k = seg.spec.kind
    if k == "expr":
        if len(seg.sets) > 1:
            shown = [str(s.successes) if s.counts_successes else str(s.total) for s in seg.sets]
            return "set: " + ", ".join(shown)
        st = seg.sets[0]
        return _result(st, bold=False)
    if k == "shadowrun":
        side = seg.sides[0]
        if side.counts_successes:
            return f"{side.successes} {_successes(side.successes)} (TN {side.target})"
        if seg.spec.show_total or seg.spec.modifier:
            return f"total {seg.total}"
        if compact and side.dice:
            return f"{len(side.dice)} dice, highest {max(d.value for d in side.dice)}"
        return ", ".join(str(d.value) for d in side.dice)
    if k == "opposed":
        verdict = "tie" if seg.winner is None else ("attacker" if seg.winner == 0 else "defender")
        return f"net {seg.net_successes:+d} ({verdict})"
    crit = f" (critical {seg.critical})" if seg.critical else ""
    return f"{seg.total}{crit}"


SUMMARY_LIMIT = 400
_ARROW, _SEP = " → ", "; "


def _shorten(text: str, room: int) -> str:
    return text if len(text) <= room else text[: max(0, room - 1)] + "…"


def summary(result: RollResult, limit: int = SUMMARY_LIMIT) -> str:
    """One plain line per roll for the history: `6! tn4 → 3 successes (TN 4); 2d6 → 7`.

    Within `limit`, every roll's result stays whole, since the result is what the history is
    for: when the line is too long, the labels (the expression, which the history shows
    beside it anyway) are shortened, then left out, then lists of dice become what they
    amount to; only a line still too long after all that (ten rolls of long sets) is cut."""
    labels = [seg.spec.text for seg in result.segments]
    results = [_segment_summary(seg) for seg in result.segments]
    text = _SEP.join(f"{label}{_ARROW}{res}" for label, res in zip(labels, results, strict=True))
    if len(text) <= limit:
        return text
    results = [_segment_summary(seg, compact=True) for seg in result.segments]
    room = limit - len(_SEP.join(results)) - len(_ARROW) * len(labels)
    if room >= 8 * len(labels):
        # Share the room out: short labels whole, what they leave to the longer ones.
        shortened: dict[int, str] = {}
        left, count = room, len(labels)
        for i in sorted(range(len(labels)), key=lambda n: len(labels[n])):
            shortened[i] = _shorten(labels[i], left // count)
            left -= len(shortened[i])
            count -= 1
        return _SEP.join(f"{shortened[i]}{_ARROW}{res}" for i, res in enumerate(results))
    return _shorten(_SEP.join(results), limit)
