"""The console's two errors: ChatError ends `guildhouse chat` with its message; InputError is a
line the console can't act on (printed, not sent)."""

from __future__ import annotations


class ChatError(RuntimeError):
    pass


class InputError(ValueError):
    """A line the console can't act on; the message says why (and it is printed, not sent)."""
