"""The base of every error a user caused, for pure cores to raise.

A pure core (dice, reminder parsing, leveling rules, ...) imports no discord, so it can't raise
discord.py's `CommandError`; it raises a subclass of `UserError` whose message is written for
the user instead (say what was wrong and, where it helps, what would be right). The one command
handler (bot/errors.py) shows any `UserError` as it is, for prefix and slash commands alike,
however discord.py wrapped it; cogs need not translate them.
"""

from __future__ import annotations


class UserError(Exception):
    """An error the user caused; `str(error)` is the message to show them (already safe to
    show: no traceback, token or SQL)."""
