"""Counter channels, the pure part: name templates and the rename pacer.

Discord allows **2 renames of a channel per 10 minutes** and says so only in the 429 that
refuses a third. `RenamePacer` decides when a counter channel may be renamed so that this 429
never happens in normal running, and coalesces bursts:

- a channel is renamed only when the name it would show differs from the name it shows;
- the first change after a quiet spell waits `settle` seconds, so a burst (a raid of 500 joins)
  lands in one rename with the count it reached;
- renames of one channel are at least `window / limit` apart (5 minutes on Discord), and never
  more than `limit` in any `window` (plus a small margin for the trip to Discord), counted from
  the renames the pacer was told about, including those of an earlier process (the store keeps
  each channel's last renames);
- what arrives while a channel must wait only changes the name it will get: the last value
  wins, nothing queues.

No discord, redis or asyncpg here: the clock is passed in.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from bot.user_error import UserError

MAX_NAME = 100  # Discord's limit on a channel name
MAX_TEMPLATE = 100
RENAMES, RENAME_WINDOW = 2, 600.0  # Discord: 2 renames of a channel per 10 minutes
SETTLE = 10.0  # seconds a burst may go on before its rename


class Counter(StrEnum):
    MEMBERS = "members"
    ONLINE = "online"
    BANS = "bans"

    @property
    def default_template(self) -> str:
        return DEFAULT_TEMPLATES[self]


DEFAULT_TEMPLATES = {
    Counter.MEMBERS: "Members: {count:,}",
    Counter.ONLINE: "Online: {count:,}",
    Counter.BANS: "Bans: {count:,}",
}


class TemplateError(UserError):
    """A counter's name template that can't be used (the message says why)."""


def counter_of(text: str) -> Counter:
    try:
        return Counter(text.strip().lower())
    except ValueError:
        names = ", ".join(c.value for c in Counter)
        raise TemplateError(f"`{text}` is not a counter; use one of {names}.") from None


def check_template(template: str) -> str:
    """The template, checked: it names `{count}` (with an optional format such as `{count:,}`)
    and nothing else, and its name fits Discord's 100 characters for any count up to a
    billion."""
    template = template.strip()
    if not template:
        raise TemplateError("The name template is empty; put `{count}` in it.")
    if len(template) > MAX_TEMPLATE:
        raise TemplateError(f"The name template is over {MAX_TEMPLATE} characters.")
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise TemplateError(f"The name template has a stray brace: {exc}.") from None
    if "count" not in fields:
        raise TemplateError("The name template must contain `{count}` (or `{count:,}`).")
    others = sorted({f for f in fields if f != "count"})
    if others:
        raise TemplateError(f"The name template may only use `{{count}}`, not `{{{others[0]}}}`.")
    for sample in (0, 1_234_567_890):
        try:
            name = template.format(count=sample)
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            raise TemplateError(f"The name template can't show a number: {exc}.") from None
        if not name.strip() or len(name) > MAX_NAME:
            raise TemplateError(f"The name template makes a name over {MAX_NAME} characters.")
    return template


def render(template: str, count: int) -> str:
    """The channel name a counter shows (a stored template is already checked)."""
    return template.format(count=max(0, count))[:MAX_NAME]


@dataclass
class _Channel:
    shown: str | None  # the name the channel has (None: not known; any name differs)
    wanted: str | None = None
    dirty_since: float | None = None  # when `wanted` first differed from `shown`
    renames: list[float] = field(default_factory=list)  # times of its last renames


@dataclass(frozen=True)
class Rename:
    channel_id: int
    name: str


class RenamePacer:
    """When each counter channel may be renamed (see the module's docstring)."""

    def __init__(
        self,
        *,
        limit: int = RENAMES,
        window: float = RENAME_WINDOW,
        settle: float = SETTLE,
    ) -> None:
        self.limit = limit
        self.window = window
        # The trip to Discord and its clock: a rename counts as a little closer to the last.
        self.margin = max(0.5, window * 0.02)
        self.settle = settle
        self._channels: dict[int, _Channel] = {}

    def track(self, channel_id: int, shown: str | None, renames: Sequence[float] = ()) -> None:
        """Start pacing a channel that shows `shown`, renamed at `renames` (times, newest
        last) by an earlier process."""
        ch = self._channels.setdefault(channel_id, _Channel(shown))
        ch.shown = shown
        ch.renames = sorted(renames)[-self.limit :]

    def forget(self, channel_id: int) -> None:
        self._channels.pop(channel_id, None)

    def tracked(self, channel_id: int) -> bool:
        return channel_id in self._channels

    def want(self, channel_id: int, name: str, now: float) -> None:
        """The channel should show `name` (the last call wins)."""
        ch = self._channels.setdefault(channel_id, _Channel(None))
        ch.wanted = name
        if name == ch.shown:
            ch.dirty_since = None
        elif ch.dirty_since is None:
            ch.dirty_since = now

    def ready_at(self, channel_id: int) -> float | None:
        """When the channel's pending rename may be made (None: nothing pending)."""
        ch = self._channels.get(channel_id)
        if ch is None or ch.wanted is None or ch.wanted == ch.shown or ch.dirty_since is None:
            return None
        at = ch.dirty_since + self.settle
        if ch.renames:
            at = max(at, ch.renames[-1] + self.window / self.limit + self.margin)
        if len(ch.renames) >= self.limit:
            at = max(at, ch.renames[-self.limit] + self.window + self.margin)
        return at

    def next_at(self) -> float | None:
        """The soonest time any channel's rename is ready (None: none pending)."""
        times = [t for c in self._channels if (t := self.ready_at(c)) is not None]
        return min(times, default=None)

    def due(self, now: float) -> list[Rename]:
        """The renames that may be made now, the longest waiting first."""
        ready = [
            (t, cid) for cid in self._channels if (t := self.ready_at(cid)) is not None and t <= now
        ]
        out = []
        for _, cid in sorted(ready):
            wanted = self._channels[cid].wanted
            assert wanted is not None
            out.append(Rename(cid, wanted))
        return out

    def renamed(self, channel_id: int, name: str, at: float) -> None:
        """A rename to `name` was made (sent) at `at`."""
        ch = self._channels.setdefault(channel_id, _Channel(None))
        ch.renames = [*ch.renames, at][-self.limit :]
        ch.shown = name
        if ch.wanted == name:
            ch.dirty_since = None
        elif ch.wanted is not None:
            ch.dirty_since = at

    def refused(self, channel_id: int, retry_after: float, now: float) -> None:
        """Discord refused a rename (a 429 the pacer did not foresee: another client renamed
        the channel): treat the window as full until `retry_after` has passed."""
        ch = self._channels.setdefault(channel_id, _Channel(None))
        until = now + retry_after - self.window - self.margin
        ch.renames = [until] * self.limit

    def wanted(self, channel_id: int) -> str | None:
        ch = self._channels.get(channel_id)
        return ch.wanted if ch else None

    def history(self, channel_id: int) -> list[float]:
        ch = self._channels.get(channel_id)
        return list(ch.renames) if ch else []
