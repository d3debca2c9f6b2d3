"""Reading what drives the sandbox: the control API's bodies and query strings, and the
options of a slash command a user runs.

The control API (`/_sandbox/...`, and the Python API behind it) is how tests and people play
the users of the world, so anything they send may be wrong. Every value is checked here, field
by field, and anything wrong is a `BadInput`: a 400 whose message names the field. Nothing a
caller sends should reach aiohttp as an exception (a 500 and a traceback in the log).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sandbox.errors import BadInput

if TYPE_CHECKING:
    from sandbox.world import Channel, Guild, World

SNOWFLAKE_MAX = (1 << 64) - 1
_DIGITS = re.compile(r"[0-9]{1,20}")
# Discord's integer and number options lie within -2^53..2^53 (what a double holds exactly).
OPTION_NUMBER_LIMIT = 1 << 53

# Application command option types (https://discord.com/developers/docs/interactions/
# application-commands#application-command-object-application-command-option-type)
SUB_COMMAND, SUB_COMMAND_GROUP, STRING, INTEGER, BOOLEAN = 1, 2, 3, 4, 5
USER, CHANNEL, ROLE, MENTIONABLE, NUMBER, ATTACHMENT = 6, 7, 8, 9, 10, 11


def describe(value: Any) -> str:
    """A short account of a wrong value, for an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_body(raw: bytes) -> dict[str, Any]:
    """A request body that must be one JSON object."""
    try:
        # The standard library's parser, not orjson: it keeps every integer exact (orjson
        # turns one past 64 bits into a float), so a wrong id is reported as what was sent.
        # NaN and Infinity are not JSON; nesting past the recursion limit is refused too.
        data = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise BadInput("body", f"invalid JSON ({str(exc)[:80]})", code=50109) from None
    return Fields(data, "body").data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def snowflake(value: Any, path: str) -> int:
    """An id as Discord writes it (a string of digits), or as an integer."""
    number = 0
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    if not 0 < number <= SNOWFLAKE_MAX:
        raise BadInput(
            path, f"must be a snowflake (an id: a string of digits), not {describe(value)}"
        )
    return number


class Fields:
    """One JSON object of the control API, read field by field. A field that is null counts
    as left out."""

    def __init__(self, data: Any, path: str = "") -> None:
        if not isinstance(data, dict):
            raise BadInput(path or "body", f"must be a JSON object, not {describe(data)}")
        self.data: dict[str, Any] = data
        self.prefix = f"{path}." if path and path != "body" else ""

    def path(self, name: str) -> str:
        return self.prefix + name

    def has(self, name: str) -> bool:
        return self.data.get(name) is not None

    def _required(self, name: str) -> Any:
        value = self.data.get(name)
        if value is None:
            raise BadInput(self.path(name), "is required")
        return value

    def snowflake(self, name: str) -> int:
        return snowflake(self._required(name), self.path(name))

    def optional_snowflake(self, name: str) -> int | None:
        return self.snowflake(name) if self.has(name) else None

    def string(
        self,
        name: str,
        *,
        default: str | None = None,
        max_length: int | None = None,
        choices: tuple[str, ...] | None = None,
    ) -> str:
        value = self.data.get(name)
        if value is None:
            if default is None:
                raise BadInput(self.path(name), "is required")
            return default
        if not isinstance(value, str):
            raise BadInput(self.path(name), f"must be a string, not {describe(value)}")
        if max_length is not None and len(value) > max_length:
            raise BadInput(self.path(name), f"must be at most {max_length} characters")
        if choices is not None and value not in choices:
            raise BadInput(self.path(name), f"must be one of {', '.join(choices)}")
        return value

    def integer(self, name: str, *, default: int, low: int, high: int) -> int:
        value = self.data.get(name)
        if value is None:
            return default
        if not isinstance(value, int) or isinstance(value, bool):
            raise BadInput(self.path(name), f"must be an integer, not {describe(value)}")
        if not low <= value <= high:
            raise BadInput(self.path(name), f"must be between {low} and {high}")
        return value

    def number(self, name: str, *, default: float, low: float, high: float) -> float:
        value = self.data.get(name)
        if value is None:
            return default
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise BadInput(self.path(name), f"must be a number, not {describe(value)}")
        if not low <= value <= high:  # NaN fails this too
            raise BadInput(self.path(name), f"must be between {low:g} and {high:g}")
        return float(value)

    def boolean(self, name: str, *, default: bool) -> bool:
        value = self.data.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise BadInput(self.path(name), f"must be true or false, not {describe(value)}")
        return value


# -- query strings ----------------------------------------------------------------------------


def query_count(query: Mapping[str, str], name: str, *, default: int) -> int:
    """A whole number >= 0 from the query string."""
    text = query.get(name)
    if text is None or text == "":
        return default
    if not re.fullmatch(r"[0-9]{1,18}", text):
        raise BadInput(name, f"must be a whole number, 0 or more, not {describe(text)}")
    return int(text)


def query_seconds(query: Mapping[str, str], name: str, *, default: float, high: float) -> float:
    text = query.get(name)
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= high:  # NaN (and inf, and anything unparsable) fails this
        raise BadInput(
            name, f"must be a number of seconds from 0 to {high:g}, not {describe(text)}"
        )
    return value


def query_snowflake(query: Mapping[str, str], name: str) -> int | None:
    text = query.get(name)
    if text is None or text == "":
        return None
    return snowflake(text, name)


# -- slash command options ----------------------------------------------------------------------


def _bound(decl: dict[str, Any], key: str, sign: int) -> float:
    """The bot's min_value / max_value for a number option, within Discord's own range."""
    value = decl.get(key)
    limit = sign * OPTION_NUMBER_LIMIT
    if isinstance(value, bool) or not isinstance(value, int | float):
        return limit
    return max(value, limit) if sign < 0 else min(value, limit)


@dataclass
class _Given:
    """One option as the caller gave it, in either form."""

    name: str
    path: str
    value: Any
    nested: Any  # a subcommand's own options
    type: Any = None


@dataclass
class OptionResolver:
    """Turns the options a caller gives for a slash command into Discord's interaction data:
    checked against what the bot declared (names, required options, one subcommand, types,
    choices, ranges, ids that exist) as Discord's client checks them before it sends anything,
    with the `resolved` users, members, roles and channels Discord adds for id options.

    Options come as Discord writes them (`[{"name": "word", "value": "hi"}]`, a subcommand
    with its own `options` list) or as an object (`{"word": "hi"}`, a subcommand's value being
    its options: `{"create": {"when": "in 2s"}}`)."""

    world: World
    guild: Guild | None
    channel: Channel
    user_id: int
    resolved: dict[str, dict[str, Any]] = field(default_factory=dict)

    def resolve(self, given: Any, declared: Any, path: str = "options") -> list[dict[str, Any]]:
        spec = [o for o in declared if isinstance(o, dict)] if isinstance(declared, list) else []
        by_name = {o.get("name"): o for o in spec}
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for item in self._given(given, path):
            if item.name in seen:
                raise BadInput(item.path, "is given twice")
            seen.add(item.name)
            decl = by_name.get(item.name)
            if decl is None:
                names = ", ".join(str(n) for n in by_name) or "none"
                raise BadInput(item.path, f"the command has no such option (it has: {names})")
            kind = decl.get("type", STRING)
            if item.type is not None and item.type != kind:
                raise BadInput(f"{item.path}.type", f"the option is of type {kind}")
            if kind in (SUB_COMMAND, SUB_COMMAND_GROUP):
                nested = self.resolve(item.nested, decl.get("options"), item.path)
                out.append({"name": item.name, "type": kind, "options": nested})
            else:
                value = self._value(item.value, decl, item.path)
                out.append({"name": item.name, "type": kind, "value": value})
        subcommands = [
            str(o.get("name")) for o in spec if o.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP)
        ]
        if subcommands:
            if len(out) != 1:
                raise BadInput(path, f"choose one subcommand of: {', '.join(subcommands)}")
        else:
            for o in spec:
                if o.get("required") and o.get("name") not in seen:
                    raise BadInput(f"{path}.{o.get('name')}", "is required")
        return out

    @staticmethod
    def _given(given: Any, path: str) -> list[_Given]:
        if given is None:
            return []
        if isinstance(given, dict):
            return [_Given(str(k), f"{path}.{k}", v, v) for k, v in given.items()]
        if not isinstance(given, list):
            raise BadInput(
                path,
                "must be a list of {name, value} (Discord's form) or an object of name: value, "
                f"not {describe(given)}",
            )
        items = []
        for i, raw in enumerate(given):
            item = Fields(raw, f"{path}[{i}]")
            name = item.string("name")
            items.append(
                _Given(
                    name,
                    f"{path}.{name}",
                    raw.get("value"),
                    raw.get("options"),
                    item.integer("type", default=0, low=1, high=99) or None,
                )
            )
        return items

    def _value(self, value: Any, decl: dict[str, Any], path: str) -> Any:
        kind = decl.get("type", STRING)
        if value is None:
            raise BadInput(path, "needs a value")
        if kind == STRING:
            if not isinstance(value, str):
                raise BadInput(path, f"must be a string, not {describe(value)}")
            low, high = decl.get("min_length"), decl.get("max_length")
            low = low if isinstance(low, int) else 0
            high = high if isinstance(high, int) else 6000
            if not low <= len(value) <= high:
                raise BadInput(path, f"must be {low} to {high} characters long")
        elif kind in (INTEGER, NUMBER):
            whole = kind == INTEGER
            if isinstance(value, bool) or not isinstance(value, int if whole else int | float):
                raise BadInput(path, f"must be {'an integer' if whole else 'a number'}")
            low, high = _bound(decl, "min_value", -1), _bound(decl, "max_value", 1)
            if not low <= value <= high:  # NaN fails this too
                raise BadInput(path, f"must be between {low} and {high}")
        elif kind == BOOLEAN:
            if not isinstance(value, bool):
                raise BadInput(path, f"must be true or false, not {describe(value)}")
        elif kind in (USER, CHANNEL, ROLE, MENTIONABLE):
            return str(self._resolve_id(kind, snowflake(value, path), decl, path))
        elif kind == ATTACHMENT:
            raise BadInput(path, "attachment options are not emulated")
        choices = decl.get("choices")
        if isinstance(choices, list) and choices:
            allowed = [c.get("value") for c in choices if isinstance(c, dict)]
            if value not in allowed:
                raise BadInput(path, f"must be one of the choices {allowed}")
        return value

    def _resolve_id(self, kind: int, object_id: int, decl: dict[str, Any], path: str) -> int:
        """An id option names something that exists (Discord's client offers nothing else),
        and comes with it in `resolved`."""
        guild = self.guild
        if kind in (USER, MENTIONABLE) and object_id in self.world.users:
            self.resolved.setdefault("users", {})[str(object_id)] = self.world.users[
                object_id
            ].to_dict()
            member = guild.members.get(object_id) if guild is not None else None
            if guild is not None and member is not None:
                self.resolved.setdefault("members", {})[str(object_id)] = {
                    **member.to_dict(self.world, with_user=False),
                    "permissions": str(guild.permissions(object_id, self.channel)),
                }
            return object_id
        if kind in (ROLE, MENTIONABLE) and guild is not None and object_id in guild.roles:
            self.resolved.setdefault("roles", {})[str(object_id)] = guild.roles[object_id].to_dict()
            return object_id
        if kind == CHANNEL:
            found = self.world.channel(object_id)
            if found is not None and found[0] is guild:
                ch = found[1]
                types = decl.get("channel_types")
                if isinstance(types, list) and types and ch.type not in types:
                    raise BadInput(path, f"must be a channel of type {types}")
                perms = guild.permissions(self.user_id, ch) if guild is not None else 0
                self.resolved.setdefault("channels", {})[str(object_id)] = {
                    "id": str(ch.id),
                    "name": ch.name,
                    "type": ch.type,
                    "permissions": str(perms),
                    "parent_id": str(ch.parent_id) if ch.parent_id else None,
                }
                return object_id
        what = {USER: "user", CHANNEL: "channel of this guild", ROLE: "role of this guild"}
        raise BadInput(path, f"no {what.get(kind, 'user or role')} {object_id}")
