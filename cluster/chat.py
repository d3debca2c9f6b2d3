"""`guildhouse chat`: talk to the bot from a terminal, as a member of a sandbox server.

The console plays a user of the sandbox through its control API (`/_sandbox/...`), found in
DATA_DIR/sandbox.json, which `guildhouse run` writes when it starts a sandbox, or given with
--url. What you type is sent as that member's message, a slash command (`/roll dice:2d6`) or a
click (`:click 1`); what the bot sends to the channel from then on is printed as Discord's
client would show it: mentions, channels, roles and `<t:...>` timestamps by name and time,
markdown as styles (on a terminal) or plain text, embeds as indented blocks, buttons numbered.

It is a plain line console on purpose: it works the same piped (`printf '!ping\\n' | guildhouse
chat` prints the answer and exits) as typed, and its output reads as a transcript.

How piped input is paced (documented in the README): each line that asks the bot something
(a command prefix such as `!`, a mention of the bot, a slash command, a click) waits for the
bot's first answer (up to ANSWER_WAIT seconds, longer while the bot is rate limited) and
SETTLE seconds more for what comes with it (an edit, a second message); after the last line
the console waits until the bot has said nothing for QUIET seconds (at most TAIL seconds), then
exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import orjson
import psutil

SANDBOX_FILE = "sandbox.json"

ANSWER_WAIT = 15.0  # s a line that asks the bot something waits for its first answer
SETTLE = 0.4  # s more, for what comes with an answer (an edit, a second message)
QUIET = 2.0  # s of silence after the last line before the console exits
TAIL = 10.0  # s at most that it waits for that silence
SLOW = 0.75  # s after which a missing answer is looked into (is the bot rate limited?)
# What the bot posts in answer to something (an edit, a reaction or a deletion follows one).
ANSWERS = ("message", "interaction_response", "followup", "modal")

STANDINGS = ("member", "moderator", "admin", "owner")

# Discord's permission bits the bot's levels are built from (bot/checks.py).
ADMINISTRATOR, MANAGE_GUILD = 1 << 3, 1 << 5
MOD_PERMISSIONS = (1 << 13) | (1 << 1) | (1 << 2) | (1 << 40)  # messages, kick, ban, timeout

# Application command option types.
SUB_COMMAND, SUB_COMMAND_GROUP, STRING, INTEGER, BOOLEAN = 1, 2, 3, 4, 5
USER, CHANNEL, ROLE, MENTIONABLE, NUMBER = 6, 7, 8, 9, 10

BUTTON, TEXT_INPUT = 2, 4
SELECTS = {3: "menu", 5: "user menu", 6: "role menu", 7: "user or role menu", 8: "channel menu"}
TEXT_DISPLAY, SEPARATOR = 10, 14
LINK = 5

HELP = """The console's own commands (anything else is sent to the channel as you):
  /name opt:value ...   run the bot's slash command, options by name: /roll dice:2d6,
                        /remind create when:in 2h message:Check the oven
  :click [N]            press button N (the last one shown, without N)
  :pick N VALUE...      choose from menu N (option values, or @user, @role, #channel)
  :submit               fill in the form the bot opened: one line per field follows
  :commands             the bot's slash commands and their options
  :who                  who you are here, and where
  :help                 this list
  :quit                 leave (Ctrl-D does too)
  //text, ::text        send a line that starts with / or : as it is"""


class ChatError(RuntimeError):
    pass


class InputError(ValueError):
    """A line the console can't act on; the message says why (and it is printed, not sent)."""


# -- finding the sandbox ------------------------------------------------------------------------


def write_sandbox_file(path: Path, info: dict[str, Any]) -> None:
    """Publish a running sandbox's addresses (with `owner_pid`, the launcher that runs it)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps(info))
    tmp.replace(path)


def remove_sandbox_file(path: Path) -> None:
    """Remove the file only if this process wrote it: another launcher's sandbox stays found."""
    with contextlib.suppress(OSError, orjson.JSONDecodeError, TypeError, ValueError):
        if int(orjson.loads(path.read_bytes()).get("owner_pid", 0)) == os.getpid():
            path.unlink(missing_ok=True)


def running_sandbox(data_dir: Path) -> dict[str, Any]:
    """The sandbox a running launcher started under DATA_DIR; ChatError if there is none."""
    path = data_dir / SANDBOX_FILE
    hint = (
        "start `guildhouse run` without DISCORD_TOKEN first, or pass --url of a sandbox's "
        "control API"
    )
    try:
        info = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        raise ChatError(f"no sandbox is running ({path} is missing): {hint}") from None
    owner = info.get("owner_pid") if isinstance(info, dict) else None
    if not isinstance(owner, int) or not psutil.pid_exists(owner):
        raise ChatError(f"no sandbox is running (the launcher that wrote {path} is gone): {hint}")
    return dict(info)


def find_control_url(data_dir: Path, url: str | None) -> str:
    if url:
        return url.rstrip("/")
    return str(running_sandbox(data_dir)["control_url"]).rstrip("/")


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


# -- what the bot sends -------------------------------------------------------------------------


@dataclass
class Control:
    """A numbered button or menu on screen."""

    number: int
    message_id: str
    custom_id: str
    label: str
    kind: str  # "button" or a SELECTS name
    options: list[dict[str, Any]] = field(default_factory=list)
    disabled: bool = False


@dataclass
class Screen:
    """Renders what the bot sends, numbering buttons and menus as they appear (a message's
    control keeps its number through edits)."""

    names: Directory
    style: Style
    bot_name: str = "Guildhouse"
    tz: tzinfo | None = None
    controls: dict[int, Control] = field(default_factory=dict)
    _numbers: dict[tuple[str, str], int] = field(default_factory=dict)

    def markup(self, text: str) -> str:
        return render_markup(text, self.names, self.style, tz=self.tz)

    def entry(self, entry: dict[str, Any], *, mine: bool = True) -> list[str]:
        """The lines for one outbox entry. `mine`: an ephemeral answer is for this user."""
        kind = str(entry.get("kind") or "message")
        s = self.style
        if kind == "delete":
            return [s.dim(f"· {self.bot_name} deleted a message")]
        if kind == "reaction":
            return [s.dim(f"· {self.bot_name} reacted {entry.get('emoji', '')}")]
        if kind == "modal":
            return self._modal(entry)
        who = s.bot(self.bot_name)
        if kind == "edit":
            who += s.dim(" (edited)")
        if entry.get("ephemeral"):
            who += s.dim(" (only you can see this)" if mine else " (to someone else)")
        body = self.body(entry)
        head = f"{who} › "
        indent = " " * visible_len(head)
        if not body:
            body = [s.dim("(nothing)")]
        return [head + body[0], *(indent + line if line else "" for line in body[1:])]

    def body(self, entry: dict[str, Any]) -> list[str]:
        lines: list[str] = []
        if entry.get("content"):
            lines += self.markup(str(entry["content"])).split("\n")
        for embed in entry.get("embeds") or []:
            lines += self.embed(embed)
        lines += self.components(str(entry.get("message_id") or ""), entry.get("components"))
        return lines

    def embed(self, embed: dict[str, Any]) -> list[str]:
        s = self.style
        colour = embed.get("color") if isinstance(embed.get("color"), int) else None
        rows: list[str] = []
        author = (embed.get("author") or {}).get("name")
        if author:
            rows.append(s.dim(self.markup(str(author))))
        if embed.get("title"):
            rows.append(s.bold(self.markup(str(embed["title"]))))
        if embed.get("description"):
            rows += self.markup(str(embed["description"])).split("\n")
        for f in embed.get("fields") or []:
            name, value = self.markup(str(f.get("name", ""))), self.markup(str(f.get("value", "")))
            first, *more = value.split("\n")
            rows.append(f"{s.bold(name)}: {first}")
            rows += ["  " + line for line in more]
        footer = (embed.get("footer") or {}).get("text")
        if footer:
            rows.append(s.dim(self.markup(str(footer))))
        for key in ("image", "thumbnail"):
            url = (embed.get(key) or {}).get("url")
            if url:
                rows.append(s.dim(f"[{key}: {url}]"))
        bar = s.bar(colour)
        return [f"{bar} {row}" for row in rows]

    def components(self, message_id: str, components: Any) -> list[str]:
        lines: list[str] = []
        for row in components or []:
            if not isinstance(row, dict):
                continue
            kind = row.get("type")
            if kind == TEXT_DISPLAY:
                lines += self.markup(str(row.get("content", ""))).split("\n")
            elif kind == SEPARATOR:
                lines.append(self.style.dim("─" * 20))
            children = [c for c in row.get("components") or [] if isinstance(c, dict)]
            accessory = row.get("accessory")
            if isinstance(accessory, dict):
                children.append(accessory)
            parts = [self.control(message_id, c) for c in children]
            flat = [p for p in parts if p]
            if flat:
                lines.append("  ".join(flat))
        return lines

    def control(self, message_id: str, c: dict[str, Any]) -> str:
        kind = c.get("type")
        if kind == TEXT_DISPLAY:
            return self.markup(str(c.get("content", "")))
        if kind == BUTTON:
            emoji = (c.get("emoji") or {}).get("name") or ""
            label = " ".join(p for p in (emoji, str(c.get("label") or "")) if p)
            if c.get("style") == LINK or c.get("url"):
                return f"[{label} → {c.get('url')}]"
            if not c.get("custom_id"):
                return f"[{label}]"
            number = self._number(message_id, str(c["custom_id"]))
            off = bool(c.get("disabled"))
            self.controls[number] = Control(
                number, message_id, str(c["custom_id"]), label, "button", disabled=off
            )
            text = f"[{number} {label}]" + (" (disabled)" if off else "")
            return self.style.dim(text) if off else self.style.bold(text)
        if kind in SELECTS and c.get("custom_id"):
            number = self._number(message_id, str(c["custom_id"]))
            options = [o for o in c.get("options") or [] if isinstance(o, dict)]
            off = bool(c.get("disabled"))
            self.controls[number] = Control(
                number,
                message_id,
                str(c["custom_id"]),
                str(c.get("placeholder") or ""),
                SELECTS[int(kind)],
                options,
                off,
            )
            what = ", ".join(f"{o.get('label')} ({o.get('value')})" for o in options)
            low, high = int(c.get("min_values", 1)), int(c.get("max_values", 1))
            pick = "one" if high == 1 else f"{low} to {high}"
            text = f"[{number} ▾ {c.get('placeholder') or SELECTS[int(kind)]}: choose {pick}"
            return text + (f" of {what}]" if what else "]") + (" (disabled)" if off else "")
        return ""

    def _number(self, message_id: str, custom_id: str) -> int:
        key = (message_id, custom_id)
        if key not in self._numbers:
            self._numbers[key] = len(self._numbers) + 1
        return self._numbers[key]

    def _modal(self, entry: dict[str, Any]) -> list[str]:
        s = self.style
        lines = [
            s.bot(self.bot_name) + f" › opens a form for you: {s.bold(str(entry.get('title', '')))}"
        ]
        for n, field_ in enumerate(entry.get("inputs") or [], 1):
            need = "" if field_.get("required", True) else " (optional)"
            lines.append(f"    {n}. {field_.get('label') or field_.get('custom_id')}{need}")
        lines.append(s.dim("    answer with :submit, then one line per field"))
        return lines


# -- slash commands ------------------------------------------------------------------------------


def _declared(options: Any) -> list[dict[str, Any]]:
    return [o for o in options or [] if isinstance(o, dict)]


def parse_slash(
    line: str, commands: Iterable[dict[str, Any]], names: Directory
) -> tuple[str, dict[str, Any]]:
    """`/roll dice:2d6` -> ("roll", {"dice": "2d6"}); subcommands by name
    (`/remind create when:in 2h message:Check the oven` -> ("remind", {"create": {...}})).
    Values take the option's type; InputError says what is wrong, with the options there are."""
    words = line[1:].strip()
    if not words:
        raise InputError("a slash command has a name: /roll dice:2d6 (:commands lists them)")
    name, _, rest = words.partition(" ")
    found = [c for c in commands if c.get("type", 1) == 1]
    cmd = next((c for c in found if str(c.get("name", "")).lower() == name.lower()), None)
    if cmd is None:
        known = ", ".join(sorted("/" + str(c.get("name")) for c in found)) or "none"
        raise InputError(f"the bot has no slash command /{name} (it has: {known})")
    path = "/" + str(cmd["name"])
    spec = _declared(cmd.get("options"))
    result: dict[str, Any] = {}
    holder = result
    while any(o.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP) for o in spec):
        subs = [o for o in spec if o.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP)]
        word, _, rest = rest.strip().partition(" ")
        sub = next((o for o in subs if str(o.get("name", "")).lower() == word.lower()), None)
        if sub is None:
            choices = " | ".join(str(o.get("name")) for o in subs)
            raise InputError(f"{path} needs one of: {choices} ({path} {subs[0].get('name')} ...)")
        path += f" {sub['name']}"
        holder[str(sub["name"])] = {}
        holder = holder[str(sub["name"])]
        spec = _declared(sub.get("options"))
    holder.update(_options(path, rest.strip(), spec, names))
    return str(cmd["name"]), result


def _options(path: str, text: str, spec: list[dict[str, Any]], names: Directory) -> dict[str, Any]:
    by_name = {str(o.get("name")): o for o in spec}
    given: dict[str, str] = {}
    example = " ".join(f"{n}:..." for n, o in by_name.items() if o.get("required")) or (
        " ".join(f"{n}:..." for n in list(by_name)[:1])
    )
    if by_name:
        pattern = re.compile(
            r"(?:^|(?<=\s))(" + "|".join(re.escape(n) for n in by_name) + r"):", re.I
        )
        marks = list(pattern.finditer(text))
        lead = text[: marks[0].start() if marks else len(text)].strip()
        for i, m in enumerate(marks):
            end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
            key = next(n for n in by_name if n.lower() == m.group(1).lower())
            if key in given:
                raise InputError(f"{path}: {key}: is given twice")
            given[key] = text[m.end() : end].strip()
        unknown = re.match(r"([\w-]+):", lead)
        if unknown:
            have = ", ".join(n + ":" for n in by_name)
            raise InputError(f"{path} has no option {unknown.group(1)}: (it has {have})")
        if lead:
            # `/roll 2d6`: text before any name goes to the one option it can be.
            free = [n for n, o in by_name.items() if n not in given and o.get("required")]
            free = free or [n for n in by_name if n not in given]
            if len(free) != 1:
                raise InputError(f"{path}: write options by name: {path} {example}")
            given[free[0]] = lead
    elif text:
        raise InputError(f"{path} takes no options")
    missing = [n for n, o in by_name.items() if o.get("required") and n not in given]
    if missing:
        raise InputError(f"{path} needs {', '.join(m + ':' for m in missing)} ({path} {example})")
    return {key: _value(path, key, raw, by_name[key], names) for key, raw in given.items()}


_ID = re.compile(r"<(?:@[!&]?|#)?(\d{15,20})>|(\d{15,20})")


def _value(path: str, key: str, raw: str, decl: dict[str, Any], names: Directory) -> Any:
    kind = decl.get("type", STRING)
    if not raw:
        raise InputError(f"{path}: {key}: has no value")
    choices = [c for c in decl.get("choices") or [] if isinstance(c, dict)]
    if choices:
        for c in choices:
            if raw.lower() in (str(c.get("name", "")).lower(), str(c.get("value", "")).lower()):
                return c.get("value")
        shown = ", ".join(str(c.get("name")) for c in choices)
        raise InputError(f"{path}: {key}: is one of {shown}")
    if kind == INTEGER:
        try:
            return int(raw)
        except ValueError:
            raise InputError(f"{path}: {key}: must be a whole number, not {raw!r}") from None
    if kind == NUMBER:
        try:
            return float(raw)
        except ValueError:
            raise InputError(f"{path}: {key}: must be a number, not {raw!r}") from None
    if kind == BOOLEAN:
        if raw.lower() in ("true", "yes", "y", "on", "1"):
            return True
        if raw.lower() in ("false", "no", "n", "off", "0"):
            return False
        raise InputError(f"{path}: {key}: must be true or false, not {raw!r}")
    if kind in (USER, CHANNEL, ROLE, MENTIONABLE):
        found = _ID.fullmatch(raw)
        if found:
            return found.group(1) or found.group(2)
        name = raw.lstrip("@#")
        finders: dict[int, tuple[Callable[[str], int | None], ...]] = {
            USER: (names.find_user,),
            ROLE: (names.find_role,),
            MENTIONABLE: (names.find_user, names.find_role),
            CHANNEL: (names.find_channel,),
        }
        look = finders[kind]
        for finder in look:
            ident = finder(name)
            if ident is not None:
                return str(ident)
        what = {USER: "member", ROLE: "role", CHANNEL: "channel", MENTIONABLE: "member or role"}
        raise InputError(f"{path}: {key}: no {what[kind]} called {raw!r} (or give its id)")
    return raw


def describe_commands(commands: Iterable[dict[str, Any]]) -> list[str]:
    """One line per slash command (and subcommand) with its options: `:commands`."""
    lines: list[str] = []

    def walk(prefix: str, options: Any, description: str) -> None:
        spec = _declared(options)
        subs = [o for o in spec if o.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP)]
        if subs:
            for sub in subs:
                walk(
                    f"{prefix} {sub.get('name')}",
                    sub.get("options"),
                    str(sub.get("description") or ""),
                )
            return
        args = " ".join(
            f"{o.get('name')}:…" if o.get("required") else f"[{o.get('name')}:…]" for o in spec
        )
        lines.append(f"  {prefix} {args}".rstrip() + (f"  — {description}" if description else ""))

    for cmd in sorted(commands, key=lambda c: str(c.get("name"))):
        if cmd.get("type", 1) == 1:
            walk("/" + str(cmd.get("name")), cmd.get("options"), str(cmd.get("description") or ""))
    return lines


# -- who you are ---------------------------------------------------------------------------------


def guild_permissions(guild: dict[str, Any], user_id: int) -> int:
    roles = {int(r["id"]): int(r.get("permissions") or 0) for r in guild.get("roles") or []}
    member = next((m for m in guild.get("members") or [] if int(m.get("id", 0)) == user_id), None)
    value = roles.get(int(guild["id"]), 0)  # @everyone's id is the guild's
    for rid in (member or {}).get("roles") or []:
        value |= roles.get(int(rid), 0)
    return value


def standing_of(guild: dict[str, Any], user_id: int) -> str:
    """The member's standing by Discord permissions, as the bot's levels see it by default
    (a server's own moderator and admin roles, set with `settings modrole`, aside)."""
    if int(guild.get("owner_id") or 0) == user_id:
        return "owner"
    perms = guild_permissions(guild, user_id)
    if perms & (ADMINISTRATOR | MANAGE_GUILD):
        return "admin"
    if perms & MOD_PERMISSIONS:
        return "moderator"
    return "member"


def pick_member(guild: dict[str, Any], wanted: str) -> tuple[int, str]:
    """A member of the server with the standing wanted: (user id, a note when it is not
    exactly that standing). The server's owner is an admin too (bot/checks.py): when no other
    member has admin rights, --as admin speaks as the owner, and says so."""
    members = [int(m["id"]) for m in guild.get("members") or []]
    if not members:
        members = [int(m) for m in guild.get("member_ids") or []]
    exact = [m for m in members if standing_of(guild, m) == wanted]
    if exact:
        return exact[0], ""
    if wanted == "admin":
        return int(guild["owner_id"]), "for an admin: no other member here has admin rights"
    raise ChatError(f"no {wanted} in this server; pick someone with --user ID")


# -- rate limits --------------------------------------------------------------------------------


class RateLimitWatch:
    """Whether the bot is being held back by Discord's rate limits, from what is at hand: the
    sandbox's count of 429 answers (`/_sandbox/stats`), and, when the bot's Redis is
    reachable, the shared per-route bucket of this channel's messages and the global pause the
    bot's limiter keeps there (ipc/ratelimit.py): the bot waits for an empty bucket before it
    sends, so most of the time no 429 ever happens and only the bucket tells."""

    def __init__(self, redis_url: str | None, prefix: str, channel_id: int) -> None:
        self.redis_url = redis_url
        self.prefix = prefix
        self.channel_id = channel_id
        self._redis: Any = None
        self._seen_429: int | None = None

    async def check(self, http: aiohttp.ClientSession, base: str) -> str | None:
        """A line saying why answers are slow, or None when no rate limit is in the way."""
        found = await self.held_back()
        if found:
            return found
        return await self._stats(http, base)

    async def _stats(self, http: aiohttp.ClientSession, base: str) -> str | None:
        try:
            async with http.get(f"{base}/_sandbox/stats") as resp:
                stats = await resp.json()
        except (aiohttp.ClientError, ValueError):
            return None
        limited = stats.get("rate_limited") if isinstance(stats, dict) else None
        count = sum(int(v) for v in limited.values()) if isinstance(limited, dict) else 0
        before, self._seen_429 = self._seen_429, count
        if before is None or count <= before:
            return None
        return (
            f"Discord answered the bot with 429 (rate limited) {count - before} time(s) just "
            "now: its answers come once it may send again"
        )

    async def baseline(self, http: aiohttp.ClientSession, base: str) -> None:
        await self._stats(http, base)

    async def held_back(self) -> str | None:
        """Why the bot waits before it may send here (a line), if its limiter says it does."""
        if self.redis_url is None:
            return None
        from redis.exceptions import RedisError

        from ipc.client import create_redis
        from ipc.ratelimit import route_of

        if self._redis is None:
            self._redis = create_redis(self.redis_url)
        route, major = route_of("POST", f"/channels/{self.channel_id}/messages")
        try:
            seconds, micros = await self._redis.time()
            now_ms = int(seconds) * 1000 + int(micros) // 1000
            paused = await self._redis.get(rest_key(self.prefix, "global", "pause"))
            if paused and int(paused) > now_ms:
                wait = (int(paused) - now_ms) / 1000
                return (
                    "the bot is rate limited everywhere (a global 429 from Discord): its "
                    f"answers wait about {wait:.1f} s"
                )
            bucket = await self._redis.hget(rest_key(self.prefix, "routes"), route)
            if bucket is None:
                return None
            key = rest_key(self.prefix, "bucket", "") + bucket.decode() + ":" + major
            remaining, reset = await self._redis.hmget(key, "remaining", "reset")
        except (RedisError, OSError, ValueError):
            return None
        if remaining is None or reset is None or int(remaining) > 0 or int(reset) <= now_ms:
            return None
        wait = (int(reset) - now_ms) / 1000
        return (
            "the bot is rate limited in this channel (Discord allows only a few messages per "
            f"channel every few seconds): its next answer waits about {wait:.1f} s"
        )

    async def close(self) -> None:
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()


def rest_key(prefix: str, *parts: str) -> str:
    """The Redis keys of the bot's REST limiter, as ipc/ratelimit.GlobalLimiter names them
    (a test checks that they agree)."""
    from ipc.client import Keys

    return Keys(prefix)("rest", *parts)


# -- the console ----------------------------------------------------------------------------------


class Console:
    """One member in one channel: what you type goes to the sandbox's control API, what the
    bot sends there comes back through its outbox (long-polled) and is printed."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        base: str,
        *,
        out: TextIO,
        info: TextIO,
        style: Style,
        interactive: bool,
        limits: RateLimitWatch | None = None,
    ) -> None:
        self.http = http
        self.base = base
        self.out = out
        self.info = info
        self.style = style
        self.interactive = interactive
        self.limits = limits
        self.names = Directory()
        self.screen = Screen(self.names, style)
        self.channel_id = 0
        self.user_id = 0
        self.guild: dict[str, Any] = {}
        self.world: dict[str, Any] = {}
        self.commands: list[dict[str, Any]] | None = None
        self.after = 0
        self.answers = 0  # things the bot has sent since the console started
        self.last_output = time.monotonic()  # when the bot last said something, or you did
        # When each line that asked the bot something was sent, oldest first; each thing the
        # bot posts answers the oldest (edits answer nothing: they follow an answer).
        self.asks: deque[float] = deque()
        self.changed = asyncio.Event()
        self.mine: set[str] = set()  # interaction ids of this console's commands and clicks
        self.form: dict[str, Any] | None = None  # the form the bot opened for this user
        self._api_room: dict[str, tuple[int, float]] = {}  # REST bucket -> (remaining, until)

    # -- output --

    def say(self, *lines: str) -> None:
        for line in lines:
            print(line, file=self.out, flush=True)

    def tell(self, text: str) -> None:
        self.say(self.style.notice("· " + text))

    # -- setting up --

    async def setup(
        self, channel: int | None, user: int | None, standing: str, history: int
    ) -> None:
        self.world = await self._get("/_sandbox/world")
        guilds = [g for g in self.world.get("guilds") or [] if isinstance(g, dict)]
        if not guilds:
            raise ChatError("the sandbox has no servers")
        self.guild, self.channel_id = self._place(guilds, channel)
        note = ""
        if user is None:
            user, note = pick_member(self.guild, standing)
        members = {int(m) for m in self.guild.get("member_ids") or []}
        if members and user not in members:
            raise ChatError(f"user {user} is not a member of {self.guild.get('name')}")
        self.user_id = user
        bot = self.world.get("bot") or {}
        self.screen.bot_name = display_name(bot) if bot else "the bot"
        self.names.users[int(bot.get("id", 0))] = self.screen.bot_name
        self.names.roles.update(
            {int(r["id"]): str(r["name"]).lstrip("@") for r in self.guild.get("roles") or []}
        )
        self.names.roles[int(self.guild["id"])] = "everyone"
        self.names.channels.update(
            {int(c["id"]): str(c["name"]) for c in self.guild.get("channels") or []}
        )
        for m in self.guild.get("members") or []:
            name = m.get("nick") or m.get("global_name") or m.get("username") or m.get("name")
            if name:
                self.names.users[int(m["id"])] = str(name)
        await self._learn_names({user})
        self.banner(standing_of(self.guild, user), note)
        entries = await self._outbox(0, 0.0)
        if history > 0:
            shown = [e for e in entries if self._visible(e)][-history:]
            await self._learn_names(_users_in(shown))
            self.say(self.style.dim(f"· the last {len(shown)} of what the bot said here:"))
            for e in shown:
                self.say(*self.screen.entry(e, mine=False))
            self.say(self.style.dim("· from now on:"))
        # From now on: what was said before this console started is history.
        self.after = int(entries[-1]["seq"]) if entries else 0
        if self.limits is not None:
            await self.limits.baseline(self.http, self.base)

    def _place(
        self, guilds: list[dict[str, Any]], channel: int | None
    ) -> tuple[dict[str, Any], int]:
        def texts(g: dict[str, Any]) -> list[dict[str, Any]]:
            return [c for c in g.get("channels") or [] if int(c.get("type", 0)) == 0]

        if channel is not None:
            for g in guilds:
                if any(int(c["id"]) == channel for c in texts(g)):
                    return g, channel
            raise ChatError(f"no text channel {channel} in the sandbox")
        for g in guilds:
            chans = texts(g)
            if chans:
                general = next((c for c in chans if c.get("name") == "general"), chans[0])
                return g, int(general["id"])
        raise ChatError("the sandbox has no text channel; pass --channel")

    def banner(self, standing: str, note: str) -> None:
        s = self.style
        name = self.names.user(self.user_id)
        rights = {
            "member": "a member (no moderator or admin rights)",
            "moderator": "a moderator",
            "admin": "an admin",
            "owner": "the server's owner",
        }[standing]
        where = f"#{self.names.channel(self.channel_id)} of {self.guild.get('name')}"
        lines = [
            f"You are {s.you(name)} ({self.user_id}), {rights}"
            + (f" ({note})" if note else "")
            + f", in {where}.",
            "Type to talk; !help lists the bot's commands, :help the console's; "
            + ("Ctrl-D to leave." if self.interactive else "answers follow each line."),
        ]
        for line in lines:
            print(line, file=self.info, flush=True)

    # -- the sandbox --

    async def _get(self, path: str, **params: str) -> Any:
        try:
            async with self.http.get(self.base + path, params=params or None) as resp:
                data = await resp.json()
                if resp.status >= 400:
                    raise ChatError(f"the sandbox refused {path}: {_error(data)}")
                return data
        except aiohttp.ClientError as exc:
            raise ChatError(f"cannot reach the sandbox at {self.base} ({exc})") from None

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """POST to the control API; a refusal is printed (it names what was wrong)."""
        try:
            async with self.http.post(self.base + path, json=body) as resp:
                data = await resp.json()
        except aiohttp.ClientError as exc:
            raise ChatError(f"cannot reach the sandbox at {self.base} ({exc})") from None
        except ValueError:
            data = None
        if resp.status >= 400:
            self.say(self.style.error(f"· the sandbox refused that: {_error(data)}"))
            return None
        return data if isinstance(data, dict) else {}

    async def _outbox(self, after: int, wait: float) -> list[dict[str, Any]]:
        data = await self._get(
            "/_sandbox/outbox", channel_id=str(self.channel_id), after=str(after), wait=f"{wait:g}"
        )
        return [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []

    async def _api(self, path: str) -> Any:
        """A REST call as the bot, for what a member's client knows and the control API doesn't
        say (names, the slash commands). It holds back while a bucket is down to its last
        request: the bot's own calls must not meet an empty bucket (and a 429) on the console's
        account, so a name may stay unknown (`@user 123...`) for a few seconds instead."""
        api, token = self.world.get("api_url"), self.world.get("token")
        if not api or not token:
            return None
        # Discord's bucket: the route with its ids, but for the guild (the major parameter).
        bucket = re.sub(r"(?<!guilds)/\d+", "/{id}", path)
        room = self._api_room.get(bucket)
        if room is not None and room[0] <= 1 and time.monotonic() < room[1]:
            return None
        try:
            async with self.http.get(
                f"{api}{path}", headers={"Authorization": f"Bot {token}"}
            ) as resp:
                left = resp.headers.get("X-RateLimit-Remaining")
                after = resp.headers.get("X-RateLimit-Reset-After")
                if left is not None and after is not None:
                    self._api_room[bucket] = (int(left), time.monotonic() + float(after))
                if resp.status != 200:
                    return None
                return await resp.json()
        except (aiohttp.ClientError, ValueError):
            return None

    async def _learn_names(self, user_ids: Iterable[int]) -> None:
        for uid in sorted(set(user_ids) - set(self.names.users)):
            member = await self._api(f"/guilds/{self.guild['id']}/members/{uid}")
            if isinstance(member, dict) and isinstance(member.get("user"), dict):
                self.names.users[uid] = display_name(member["user"], member.get("nick"))

    async def load_commands(self) -> list[dict[str, Any]]:
        if self.commands is None:
            app = self.world.get("application_id")
            found: list[dict[str, Any]] = []
            for path in (
                f"/applications/{app}/guilds/{self.guild['id']}/commands",
                f"/applications/{app}/commands",
            ):
                got = await self._api(path)
                if isinstance(got, list):
                    found += [c for c in got if isinstance(c, dict)]
            if not found:
                raise InputError(
                    "the bot has registered no slash commands here (`guildhouse run` registers "
                    "them in its sandbox; elsewhere run `guildhouse commands sync`)"
                )
            self.commands = found
        return self.commands

    def _visible(self, entry: dict[str, Any]) -> bool:
        if entry.get("kind") == "modal":
            return str(entry.get("user_id")) == str(self.user_id)
        if entry.get("ephemeral"):
            return str(entry.get("interaction_id")) in self.mine
        return True

    # -- following the channel --

    async def follow(self) -> None:
        while True:
            entries = await self._outbox(self.after, 25.0)
            if not entries:
                continue
            self.after = int(entries[-1]["seq"])
            shown = [e for e in entries if self._visible(e)]
            await self._learn_names(_users_in(shown))
            for entry in shown:
                self.say(*self.screen.entry(entry))
                if entry.get("kind") == "modal":
                    self.form = entry
            self.answers += len(shown)
            for entry in shown:
                if self.asks and entry.get("kind") in ANSWERS:
                    self.asks.popleft()
            if shown:
                self.last_output = time.monotonic()
                self.changed.set()

    async def watch_limits(self) -> None:
        """While an answer is late, say whether a rate limit is why (once per wait)."""
        told_for: float | None = None
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            while self.asks and now - self.asks[0] > 4 * ANSWER_WAIT:
                self.asks.popleft()  # never answered (an ignored command): no longer waited for
            since = self.asks[0] if self.asks else None
            if self.limits is None or since is None or since == told_for or now - since < SLOW:
                continue
            why = await self.limits.check(self.http, self.base)
            if why is not None and self.asks and self.asks[0] == since:
                self.tell(why)
                told_for = since

    # -- what you type --

    async def handle(self, line: str, lines: asyncio.Queue[str | None]) -> bool:
        """Act on one line; True if it asks the bot for an answer."""
        text = line.rstrip("\r\n")
        if not text.strip():
            return False
        if text.startswith(("::", "//")):
            return await self.send(text[1:])
        if text.startswith(":"):
            return await self.command(text, lines)
        if text.startswith("/"):
            return await self.slash(text)
        return await self.send(text)

    def echo(self, text: str) -> None:
        # What you say restarts the wait for silence at the end of piped input: the bot may
        # still answer it (a level-up for a chat line).
        self.last_output = time.monotonic()
        if self.interactive and self.out.isatty():
            # Replace the line as typed with the same line, said by you.
            print("\x1b[1A\x1b[2K", end="", file=self.out)
        self.say(f"{self.style.you(self.names.user(self.user_id))} › {text}")

    async def send(self, text: str) -> bool:
        self.echo(text)
        body = {"channel_id": str(self.channel_id), "author_id": str(self.user_id), "content": text}
        if await self._post("/_sandbox/messages", body) is None:
            return False
        return asks_the_bot(text, int((self.world.get("bot") or {}).get("id", 0)))

    async def slash(self, text: str) -> bool:
        self.echo(text)
        try:
            name, options = parse_slash(text, await self.load_commands(), self.names)
        except InputError as exc:
            self.say(self.style.error(f"· {exc}"))
            return False
        body = {
            "channel_id": str(self.channel_id),
            "user_id": str(self.user_id),
            "name": name,
            "options": options,
        }
        return await self._interact(body)

    async def _interact(self, body: dict[str, Any]) -> bool:
        answer = await self._post("/_sandbox/interactions", body)
        if answer is None:
            return False
        self.mine.add(str(answer.get("id")))
        return True

    async def command(self, text: str, lines: asyncio.Queue[str | None]) -> bool:
        word, _, rest = text[1:].partition(" ")
        word = word.lower()
        if word in ("help", "h", "?"):
            self.say(*HELP.split("\n"))
        elif word in ("quit", "q", "exit"):
            raise EOFError
        elif word == "who":
            self.banner(standing_of(self.guild, self.user_id), "")
        elif word == "commands":
            try:
                self.say(*describe_commands(await self.load_commands()))
            except InputError as exc:
                self.say(self.style.error(f"· {exc}"))
        elif word == "click":
            return await self.click(rest.strip())
        elif word == "pick":
            return await self.pick(rest.strip())
        elif word == "submit":
            return await self.submit(lines)
        else:
            self.say(self.style.error(f"· no console command :{word}; :help lists them"))
        return False

    def _control(self, which: str, kind: str) -> Control | None:
        controls = [
            c for c in self.screen.controls.values() if (c.kind == "button") == (kind == "button")
        ]
        if not controls:
            self.say(self.style.error(f"· no {kind} on screen yet"))
            return None
        if not which:
            return max(controls, key=lambda c: c.number)
        if not which.isdigit() or int(which) not in self.screen.controls:
            self.say(self.style.error(f"· no {kind} {which}; the numbers are in [brackets]"))
            return None
        return self.screen.controls[int(which)]

    async def click(self, which: str) -> bool:
        control = self._control(which, "button")
        if control is None:
            return False
        self.echo(f":click {control.number} ({control.label})")
        return await self._interact(
            {
                "channel_id": str(self.channel_id),
                "user_id": str(self.user_id),
                "message_id": control.message_id,
                "custom_id": control.custom_id,
            }
        )

    async def pick(self, rest: str) -> bool:
        which, _, values = rest.partition(" ")
        control = self._control(which, "menu")
        if control is None:
            return False
        picked: list[str] = []
        for raw in values.split():
            option = next(
                (
                    o
                    for o in control.options
                    if raw.lower() in (str(o.get("value")).lower(), str(o.get("label")).lower())
                ),
                None,
            )
            if option is not None:
                picked.append(str(option.get("value")))
                continue
            decl = {
                "user menu": USER,
                "role menu": ROLE,
                "user or role menu": MENTIONABLE,
                "channel menu": CHANNEL,
            }.get(control.kind, STRING)
            try:
                picked.append(str(_value(":pick", "value", raw, {"type": decl}, self.names)))
            except InputError as exc:
                self.say(self.style.error(f"· {exc}"))
                return False
        self.echo(f":pick {control.number} {' '.join(picked)}")
        return await self._interact(
            {
                "channel_id": str(self.channel_id),
                "user_id": str(self.user_id),
                "message_id": control.message_id,
                "custom_id": control.custom_id,
                "values": picked,
            }
        )

    async def submit(self, lines: asyncio.Queue[str | None]) -> bool:
        form = self.form
        if form is None:
            self.say(self.style.error("· the bot has opened no form for you"))
            return False
        fields: dict[str, Any] = {}
        for field_ in form.get("inputs") or []:
            label = field_.get("label") or field_.get("custom_id")
            if self.interactive:
                print(f"{label}: ", end="", file=self.out, flush=True)
            answer = await lines.get()
            if answer is None:
                raise EOFError
            value = answer.rstrip("\r\n")
            # A text input takes the line as typed; every menu in a form (string, user, role,
            # channel, mentionable) takes a list of values, one per word.
            fields[str(field_["custom_id"])] = (
                value if field_.get("type", TEXT_INPUT) == TEXT_INPUT else value.split()
            )
            if not self.interactive:
                self.say(f"  {label}: {value}")
        self.form = None
        return await self._interact(
            {
                "channel_id": str(self.channel_id),
                "user_id": str(self.user_id),
                "fields": fields,
                "custom_id": form.get("custom_id"),
            }
        )

    # -- pacing piped input --

    async def until_answered(self, seen: int) -> None:
        """Wait for the bot's first answer after `seen` things, then for what comes with it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ANSWER_WAIT
        while self.answers <= seen:
            left = deadline - loop.time()
            if left <= 0:
                self.tell(f"no answer within {ANSWER_WAIT:.0f} s; going on")
                if self.asks:
                    self.asks.popleft()  # this line's: the next one is waited for afresh
                return
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 1.0))
            # Held back by a rate limit: the answer is late, not lost.
            limited = self.limits is not None and self.answers <= seen
            if limited and self.limits is not None and await self.limits.held_back():
                deadline = max(deadline, loop.time() + ANSWER_WAIT)
        await self.until_quiet(SETTLE, SETTLE * 8)

    async def until_quiet(self, quiet: float, most: float) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + most
        while (left := quiet - (time.monotonic() - self.last_output)) > 0 and loop.time() < end:
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, end - loop.time()))


def _users_in(entries: Iterable[dict[str, Any]]) -> set[int]:
    found: set[int] = set()
    for e in entries:
        found |= mentioned_users(str(e.get("content") or ""))
        for embed in e.get("embeds") or []:
            found |= mentioned_users(orjson.dumps(embed).decode())
    return found


def _error(data: Any) -> str:
    if isinstance(data, dict):
        where = data.get("field") or data.get("errors")
        message = str(data.get("message") or data.get("error") or data)
        return f"{where}: {message}" if isinstance(where, str) else message
    return str(data)


_COMMAND_LIKE = re.compile(r"[!?.$%&+=~;,^][^\s!?.]")


def asks_the_bot(text: str, bot_id: int) -> bool:
    """Whether a line reads as a command, so piped input waits for its answer: a prefix
    character and a word (`!roll`, `?help`, `.top`), or a mention of the bot."""
    stripped = text.lstrip()
    if bot_id and re.match(rf"<@!?{bot_id}>", stripped):
        return True
    return bool(_COMMAND_LIKE.match(stripped))


def _read_lines(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
    """Stdin, line by line, into the loop's queue (None at the end). A daemon thread: a read
    that never returns (a terminal nobody types in) must not keep the process alive."""

    def run() -> None:
        try:
            for line in sys.stdin:
                loop.call_soon_threadsafe(queue.put_nowait, line)
        except (OSError, ValueError):
            pass
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
                loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=run, name="stdin", daemon=True).start()


async def chat(
    base: str,
    channel: int | None,
    user: int | None,
    *,
    standing: str = "member",
    history: int = 0,
    redis_url: str | None = None,
    redis_prefix: str = "gh:",
) -> int:
    interactive = sys.stdin.isatty()
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    info = sys.stdout if sys.stdout.isatty() else sys.stderr
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=40)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        console = Console(
            http,
            base,
            out=sys.stdout,
            info=info,
            style=Style(colour),
            interactive=interactive,
        )
        await console.setup(channel, user, standing, history)
        console.limits = RateLimitWatch(redis_url, redis_prefix, console.channel_id)
        await console.limits.baseline(http, base)
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        _read_lines(asyncio.get_running_loop(), lines)
        follower = asyncio.create_task(console.follow(), name="chat-follow")
        watcher = asyncio.create_task(console.watch_limits(), name="chat-limits")
        try:
            while True:
                getter = asyncio.ensure_future(lines.get())
                done, _ = await asyncio.wait(
                    {getter, follower}, return_when=asyncio.FIRST_COMPLETED
                )
                if follower in done:
                    getter.cancel()
                    follower.result()  # the sandbox went away: its ChatError
                line = getter.result()
                if line is None:
                    break
                seen = console.answers
                try:
                    asks = await console.handle(line, lines)
                except EOFError:
                    break
                if asks and console.answers <= seen:
                    console.asks.append(time.monotonic())  # watch_limits looks into a delay
                if asks and not interactive:
                    await console.until_answered(seen)
            if not interactive:
                await console.until_quiet(QUIET, TAIL)
        finally:
            for task in (follower, watcher):
                task.cancel()
            await asyncio.gather(follower, watcher, return_exceptions=True)
            await console.limits.close()
    return 0
