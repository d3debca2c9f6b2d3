"""Aliases, pure: what a name and an expansion may be, and what an alias runs.

An alias is a short name for a built-in command with arguments: `alias add sr roll 6! tn4`
makes `!sr # dodge` run `!roll 6! tn4 # dodge`. Its expansion must start with a built-in
command's name, and its own name may not be one, so an alias can never name another alias:
there are no chains and no loops to detect. A member's own alias is looked for before the
server's, so a member may keep a shortcut of their own under a name the server uses.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field

from bot.user_error import UserError

MAX_SERVER = 50  # aliases a server's admins may make
MAX_MEMBER = 15  # aliases one member may make in a server
MAX_EXPANSION = 300  # characters
SERVER = 0  # the owner id of a server's aliases

_NAME = re.compile(r"[a-z0-9_-]{1,24}")


class AliasError(UserError):
    """An alias that can't be made, said in words."""


@dataclass(frozen=True)
class GuildAliases:
    """One server's aliases: its own and its members'."""

    server: dict[str, str] = field(default_factory=dict)
    members: dict[int, dict[str, str]] = field(default_factory=dict)

    def find(self, user_id: int, name: str) -> str | None:
        """The expansion `name` stands for when `user_id` uses it (theirs first), or None."""
        name = name.lower()
        mine = self.members.get(user_id)
        if mine is not None and name in mine:
            return mine[name]
        return self.server.get(name)

    @classmethod
    def of_rows(cls, rows: Collection[tuple[int, str, str]]) -> GuildAliases:
        """From (owner id, name, expansion) rows."""
        out = cls()
        for owner, name, expansion in rows:
            if owner == SERVER:
                out.server[name] = expansion
            else:
                out.members.setdefault(owner, {})[name] = expansion
        return out


def check_name(name: str, builtins: Collection[str]) -> str:
    """The alias name, lowercased, if it may be one; else AliasError naming why."""
    name = name.strip().lower()
    if not _NAME.fullmatch(name):
        raise AliasError(
            f"`{name[:30]}` can't be an alias name: use 1 to 24 letters, digits, - or _."
        )
    if name in builtins:
        raise AliasError(f"`{name}` is a built-in command; an alias can't replace it.")
    return name


def check_expansion(expansion: str, builtins: Collection[str]) -> str:
    """The expansion, tidied, if it starts with a built-in command; else AliasError."""
    expansion = " ".join(expansion.split())
    if not expansion:
        raise AliasError("Say what the alias runs, e.g. `alias add sr roll 6! tn4`.")
    if len(expansion) > MAX_EXPANSION:
        raise AliasError(f"An alias may run at most {MAX_EXPANSION} characters.")
    first = expansion.split(" ", 1)[0].lower()
    for prefix in ("!", "/", "?", "."):
        if first.startswith(prefix) and first[1:] in builtins:
            # `alias add sr !roll 6` is meant as `roll 6`.
            expansion = expansion[1:]
            first = first[1:]
            break
    if first not in builtins:
        raise AliasError(
            f"An alias runs a built-in command, and `{first[:30]}` is not one"
            " (an alias can't run another alias)."
        )
    return expansion


def expand(expansion: str, rest: str) -> str:
    """What the member's message runs: the expansion with what they typed after the name."""
    rest = rest.strip()
    return f"{expansion} {rest}" if rest else expansion
