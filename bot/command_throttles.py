"""Which throttle windows a command call counts in.

Three windows per call, all shared by every shard and cluster through Redis (ipc/throttle.py):

- `user`: this user across every command (anti-spam), wherever the user is;
- `command`: this user on this command;
- `guild`: this guild on this command.

Defaults come from the settings (THROTTLE_USER, THROTTLE_COMMAND, THROTTLE_GUILD:
`Defaults.of`); a command may declare its own with `@throttle(...)`; a guild's admins may
override a command's rules (`settings throttle`) or turn them off for it. Owners are never
throttled; moderators and admins are exempt unless the guild (or THROTTLE_EXEMPT_MODS) says
otherwise.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar

from discord.ext import commands

from bot.config import WorkerConfig
from bot.guild_settings import GuildSettings
from ipc.throttle import DEFAULT_COMMAND, DEFAULT_GUILD, DEFAULT_USER, Rule, RuleError

T = TypeVar("T")
SCOPES = ("command", "guild")
OFF = "off"


@dataclass(frozen=True)
class Defaults:
    user: Rule | None = DEFAULT_USER
    command: Rule | None = DEFAULT_COMMAND
    guild: Rule | None = DEFAULT_GUILD
    exempt_mods: bool = True

    @classmethod
    def of(cls, config: WorkerConfig) -> Defaults:
        return cls(
            user=config.throttle_user,
            command=config.throttle_command,
            guild=config.throttle_guild,
            exempt_mods=config.throttle_exempt_mods,
        )


def throttle(*, command: str | None = None, guild: str | None = None) -> Callable[[T], T]:
    """Declare a command's own rules, e.g. `@throttle(command="2/30s")`; checked at import."""
    rules = {k: Rule.parse(v) for k, v in (("command", command), ("guild", guild)) if v}

    def decorator(func: T) -> T:
        if isinstance(func, commands.Command):
            func.extras["throttle"] = rules
        else:
            extras = getattr(func, "__guildhouse_extras__", {})
            extras["throttle"] = rules
            func.__guildhouse_extras__ = extras  # type: ignore[attr-defined]
        return func

    return decorator


def _declared(cmd: commands.Command[Any, ..., Any]) -> dict[str, Rule]:
    marks = getattr(cmd.callback, "__guildhouse_extras__", {})
    found = cmd.extras.get("throttle") or marks.get("throttle") or {}
    return dict(found)


def parse_override(text: str) -> str:
    """Validate a guild override ('5/10s' or 'off'); returns it normalised."""
    text = text.strip().lower()
    if text == OFF:
        return OFF
    return str(Rule.parse(text))


@functools.lru_cache(maxsize=1024)
def _declared_rules(
    cmd: commands.Command[Any, ..., Any], defaults: Defaults
) -> Mapping[str, Rule | None]:
    """The command's rules per scope before any guild's overrides: the defaults, then what
    its group and it declare. Fixed once the command is made, so worked out once (every call
    of every command asks) and read-only."""
    root = cmd.root_parent or cmd
    rules: dict[str, Rule | None] = {"command": defaults.command, "guild": defaults.guild}
    rules.update(_declared(root))
    rules.update(_declared(cmd))
    return MappingProxyType(rules)


def rules_for(
    cmd: commands.Command[Any, ..., Any], defaults: Defaults, settings: GuildSettings | None
) -> Mapping[str, Rule | None]:
    """The command's effective rules per scope (None: not throttled in that scope)."""
    declared = _declared_rules(cmd, defaults)
    overrides = settings.throttles.get((cmd.root_parent or cmd).name) if settings else None
    if not overrides:
        return declared
    rules = dict(declared)
    for scope, text in overrides.items():
        if scope not in SCOPES:
            continue
        try:
            rules[scope] = None if text == OFF else Rule.parse(text)
        except RuleError:
            continue  # validated on the way in; a hand-edited bad value is ignored
    return rules


def windows(
    cmd: commands.Command[Any, ..., Any],
    user_id: int,
    guild_id: int | None,
    defaults: Defaults,
    settings: GuildSettings | None,
) -> list[tuple[str, Rule]]:
    """(window name, rule) pairs for one call; names are Redis key suffixes."""
    name = (cmd.root_parent or cmd).name
    rules = rules_for(cmd, defaults, settings)
    out: list[tuple[str, Rule]] = []
    if defaults.user is not None:
        out.append((f"user:{user_id}", defaults.user))
    if (rule := rules.get("command")) is not None:
        out.append((f"cmd:{name}:user:{user_id}", rule))
    if guild_id is not None and (rule := rules.get("guild")) is not None:
        out.append((f"cmd:{name}:guild:{guild_id}", rule))
    return out


def exempt_mods(defaults: Defaults, settings: GuildSettings | None) -> bool:
    if settings is not None and settings.throttle_exempt_mods is not None:
        return settings.throttle_exempt_mods
    return defaults.exempt_mods
