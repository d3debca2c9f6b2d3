"""Slash commands typed as `/name opt:value ...`: read against the bot's registered commands
(options by name, values by type, members, roles and channels by name or id), and listed."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from cluster.console.errors import InputError
from cluster.console.markup import Directory

# Application command option types.
SUB_COMMAND, SUB_COMMAND_GROUP, STRING, INTEGER, BOOLEAN = 1, 2, 3, 4, 5
USER, CHANNEL, ROLE, MENTIONABLE, NUMBER = 6, 7, 8, 9, 10


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
