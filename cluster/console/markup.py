"""Discord's markup as its client shows it, on a terminal (styles) or in a pipe (plain text):
mentions, channels and roles by name (`Directory`), `<t:...>` timestamps in the console's time
zone, markdown, code, spoilers, quotes."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

# -- styles ---------------------------------------------------------------------------------------


class Style:
    """ANSI styles on a terminal; plain text elsewhere (a pipe, a file, NO_COLOR)."""

    def __init__(self, colour: bool) -> None:
        self.colour = colour

    def _wrap(self, on: str, off: str, text: str) -> str:
        return f"\x1b[{on}m{text}\x1b[{off}m" if self.colour else text

    def bold(self, text: str) -> str:
        return self._wrap("1", "22", text)

    def italic(self, text: str) -> str:
        return self._wrap("3", "23", text)

    def underline(self, text: str) -> str:
        return self._wrap("4", "24", text)

    def strike(self, text: str) -> str:
        # Without styles a struck-out die (dropped, rerolled) must still read as struck out.
        return self._wrap("9", "29", text) if self.colour else f"~~{text}~~"

    def spoiler(self, text: str) -> str:
        return self._wrap("7", "27", text) if self.colour else f"||{text}||"

    def code(self, text: str) -> str:
        return self._wrap("36", "39", text) if self.colour else f"`{text}`"

    def dim(self, text: str) -> str:
        return self._wrap("2", "22", text)

    def mention(self, text: str) -> str:
        return self._wrap("94", "39", text)

    def bot(self, text: str) -> str:
        return self._wrap("1;36", "22;39", text)

    def you(self, text: str) -> str:
        return self._wrap("1;32", "22;39", text)

    def notice(self, text: str) -> str:
        return self._wrap("33", "39", text)

    def error(self, text: str) -> str:
        return self._wrap("31", "39", text)

    def bar(self, colour: int | None) -> str:
        if not self.colour or not colour:
            return self._wrap("2", "22", "│")
        r, g, b = colour >> 16 & 255, colour >> 8 & 255, colour & 255
        return f"\x1b[38;2;{r};{g};{b}m│\x1b[39m"


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def visible_len(text: str) -> int:
    return len(_ANSI.sub("", text))


# -- names --------------------------------------------------------------------------------------


@dataclass
class Directory:
    """What a member's client knows by name: users, roles and channels of the server."""

    users: dict[int, str] = field(default_factory=dict)
    roles: dict[int, str] = field(default_factory=dict)
    channels: dict[int, str] = field(default_factory=dict)

    def user(self, user_id: int) -> str:
        return self.users.get(user_id) or f"user {user_id}"

    def role(self, role_id: int) -> str:
        return self.roles.get(role_id) or f"role {role_id}"

    def channel(self, channel_id: int) -> str:
        return self.channels.get(channel_id) or f"channel {channel_id}"

    def find_user(self, name: str) -> int | None:
        return _by_name(self.users, name)

    def find_role(self, name: str) -> int | None:
        return _by_name(self.roles, name)

    def find_channel(self, name: str) -> int | None:
        return _by_name(self.channels, name)


def _by_name(names: dict[int, str], wanted: str) -> int | None:
    wanted = wanted.casefold()
    return next((i for i, n in names.items() if n.casefold() == wanted), None)


def display_name(user: dict[str, Any], nick: str | None = None) -> str:
    """A member's name as Discord shows it: nickname, else display name, else username."""
    return str(nick or user.get("global_name") or user.get("username") or user.get("id"))


# -- Discord markup -----------------------------------------------------------------------------

_MENTION = re.compile(r"<(@!?|@&|#)(\d{1,20})>")
_TOKEN = re.compile(
    r"(?P<block>```(?:[a-zA-Z0-9_+-]*\n)?(?P<block_body>(?:[^`]|`(?!``))*)```)"
    r"|(?P<span>``?)(?P<span_body>[^`]+?)(?P=span)"
    r"|<(?P<kind>@!?|@&|#)(?P<id>\d{1,20})>"
    r"|<t:(?P<ts>-?\d{1,13})(?::(?P<ts_style>[tTdDfFR]))?>"
    r"|<a?:(?P<emoji>\w{1,32}):\d{1,20}>"
    r"|</(?P<slash>[\w\- ]{1,100}):\d{1,20}>"
    r"|\[(?P<link_text>[^\]\n]{1,256})\]\(<?(?P<url>https?://[^\s)>]+)>?\)"
    r"|\\(?P<escaped>[\\*_~`|>#\[\]()<:@\-])"
)
_EMPHASIS = (
    (re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*", re.S), "bold"),
    (re.compile(r"__(?=\S)(.+?)(?<=\S)__", re.S), "underline"),
    (re.compile(r"~~(?=\S)(.+?)(?<=\S)~~", re.S), "strike"),
    (re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])", re.S), "italic"),
    (re.compile(r"(?<![\w])_(?=\S)(.+?)(?<=\S)_(?![\w])", re.S), "italic"),
)
_SPOILER = re.compile(r"\|\|(.+?)\|\|", re.S)
_HOLE = re.compile("\x00(\\d+)\x00")


def mentioned_users(text: str) -> set[int]:
    return {int(m.group(2)) for m in _MENTION.finditer(text) if m.group(1) in ("@", "@!")}


def format_timestamp(ts: int, style: str, now: float, tz: tzinfo | None = None) -> str:
    """`<t:ts:style>` as Discord's client writes it (in the console's time zone)."""
    when = datetime.fromtimestamp(ts, tz).astimezone(tz)
    date = f"{when.day} {when:%B %Y}"
    if style == "t":
        return f"{when:%H:%M}"
    if style == "T":
        return f"{when:%H:%M:%S}"
    if style == "d":
        return f"{when:%d/%m/%Y}"
    if style == "D":
        return date
    if style == "F":
        return f"{when:%A}, {date} {when:%H:%M}"
    if style == "R":
        return relative_time(ts - now)
    return f"{date} {when:%H:%M}"  # f, Discord's default


def relative_time(seconds: float) -> str:
    """ "in 2 hours", "3 days ago": the thresholds of Discord's client (moment.js)."""
    s = abs(seconds)
    minutes, hours, days = s / 60, s / 3600, s / 86400
    if s < 45:
        text = "a few seconds"
    elif s < 90:
        text = "a minute"
    elif minutes < 44.5:
        text = f"{round(minutes)} minutes"
    elif minutes < 90:
        text = "an hour"
    elif hours < 21.5:
        text = f"{round(hours)} hours"
    elif hours < 36:
        text = "a day"
    elif days < 25.5:
        text = f"{round(days)} days"
    elif days < 45:
        text = "a month"
    elif days < 319.5:
        text = f"{max(2, round(days / 30.4))} months"
    elif days < 548:
        text = "a year"
    else:
        text = f"{round(days / 365.25)} years"
    return f"in {text}" if seconds >= 0 else f"{text} ago"


def render_markup(
    text: str,
    names: Directory,
    style: Style,
    *,
    now: float | None = None,
    tz: tzinfo | None = None,
) -> str:
    """Discord's markup as a person reads it: mentions, channels and roles by name, timestamps
    as times, emoji by name, masked links with their address, markdown as styles."""
    moment = time.time() if now is None else now
    holes: list[str] = []

    def hole(rendered: str) -> str:
        holes.append(rendered)
        return f"\x00{len(holes) - 1}\x00"

    def token(m: re.Match[str]) -> str:
        if m.group("block") is not None:
            body = m.group("block_body").strip("\n")
            return hole("\n".join(style.code(line) if line else "" for line in body.split("\n")))
        if m.group("span") is not None:
            return hole(style.code(m.group("span_body").strip()))
        if m.group("kind") is not None:
            kind, ident = m.group("kind"), int(m.group("id"))
            if kind == "#":
                return hole(style.mention("#" + names.channel(ident)))
            if kind == "@&":
                return hole(style.mention("@" + names.role(ident)))
            return hole(style.mention("@" + names.user(ident)))
        if m.group("ts") is not None:
            stamp = format_timestamp(int(m.group("ts")), m.group("ts_style") or "f", moment, tz)
            return hole(style.underline(stamp) if style.colour else stamp)
        if m.group("emoji") is not None:
            return hole(f":{m.group('emoji')}:")
        if m.group("slash") is not None:
            return hole(style.mention("/" + m.group("slash")))
        if m.group("url") is not None:
            link = render_markup(m.group("link_text"), names, style, now=moment, tz=tz)
            return hole(f"{link} <{m.group('url')}>")
        return hole(m.group("escaped"))

    out = _TOKEN.sub(token, text)
    for pattern, name in _EMPHASIS:
        out = pattern.sub(_styled(getattr(style, name)), out)
    out = _SPOILER.sub(_styled(style.spoiler), out)
    out = "\n".join(_line_markup(line, style) for line in out.split("\n"))
    while _HOLE.search(out):  # a link's text may hold holes of its own
        out = _HOLE.sub(lambda m: holes[int(m.group(1))], out)
    return out


def _styled(apply: Callable[[str], str]) -> Callable[[re.Match[str]], str]:
    return lambda m: apply(m.group(1))


def _line_markup(line: str, style: Style) -> str:
    """Markdown that belongs to a whole line: headings, small text, quotes."""
    heading = re.match(r"(#{1,3}) (.*)", line)
    if heading:
        return style.bold(heading.group(2))
    if line.startswith("-# "):
        return style.dim(line[3:])
    quote = re.match(r">(?:>>)? (.*)", line)
    if quote:
        return style.dim("│ ") + quote.group(1)
    return line
