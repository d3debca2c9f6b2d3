"""A persistent component's custom_id: which handler answers it, and where its state is.

    gh:<handler>:<action>:<ref>

- handler: the name a `Handler` subclass registered (`reroll`, `pages`, ...);
- action: what this one component of the handler does (a paginator's `n3`: "next, to page
  3"); empty when a handler has one component;
- ref: the state, either inline, `<expires>.<owner>.<json>` (expiry in unix seconds and the
  owner's id, both base 36; the owner empty for nobody), or stored, `~<id>`: the key of a
  `component_state` row in PostgreSQL, for state that does not fit in Discord's 100 characters.

Inline state costs nothing to create or to read (no round trip on the command that sends the
component, none on the click); Discord only sends a custom_id that is on the message, so it
can be trusted as the bot wrote it.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

import orjson

PREFIX = "gh"
MAX_LENGTH = 100  # Discord's limit for a custom_id
NAME = re.compile(r"[a-z][a-z0-9_]{0,15}")
ACTION = re.compile(r"[A-Za-z0-9_-]{0,16}")
# What discord.py matches a component's custom_id against (a DynamicItem's template).
TEMPLATE = re.compile(
    rf"{PREFIX}:(?P<name>{NAME.pattern}):(?P<action>{ACTION.pattern}):(?P<ref>.+)", re.DOTALL
)
STORED = "~"


@dataclass(frozen=True)
class CustomId:
    name: str
    action: str
    ref: str

    def __str__(self) -> str:
        return f"{PREFIX}:{self.name}:{self.action}:{self.ref}"

    @classmethod
    def parse(cls, text: str) -> CustomId | None:
        match = TEMPLATE.fullmatch(text)
        if match is None:
            return None
        return cls(match["name"], match["action"], match["ref"])

    @property
    def stored_id(self) -> str | None:
        """The `component_state` key, if the state is stored rather than inline."""
        return self.ref[1:] if self.ref.startswith(STORED) else None

    def same_state(self, other: CustomId) -> bool:
        """Both are components of one handler's one state (a paginator's four buttons)."""
        return self.name == other.name and self.ref == other.ref


@dataclass(frozen=True)
class Inline:
    expires_at: int  # unix seconds
    owner_id: int | None
    data: Any


def new_stored_id() -> str:
    """A fresh `component_state` key: 16 URL-safe characters, 96 random bits."""
    return secrets.token_urlsafe(12)


def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def encode_inline(expires_at: float, owner_id: int | None, data: Any) -> str:
    owner = _b36(owner_id) if owner_id is not None else ""
    return f"{_b36(int(expires_at))}.{owner}.{orjson.dumps(data).decode()}"


def decode_inline(ref: str) -> Inline | None:
    """The inline state of a ref, or None if it is not one (or damaged)."""
    parts = ref.split(".", 2)
    if len(parts) != 3 or ref.startswith(STORED):
        return None
    expires, owner, data = parts
    try:
        return Inline(
            int(expires, 36),
            int(owner, 36) if owner else None,
            orjson.loads(data),
        )
    except (ValueError, orjson.JSONDecodeError):
        return None


def room(name: str, action_room: int) -> int:
    """How long a ref may be for a handler whose actions are at most `action_room` long."""
    return MAX_LENGTH - len(f"{PREFIX}:{name}::") - action_room
