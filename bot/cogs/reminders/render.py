"""What a delivered reminder says (pure, so tests read it without Discord).

The footer carries the delivery's nonce: after a lease expired (the claiming worker died, or
could not tell whether its send went through) the next claimer looks for it in the channel's
recent messages before sending again; see `sender.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.cogs.reminders.parsing import format_duration
from bot.cogs.reminders.plan import LATE_AFTER


@dataclass(frozen=True)
class Rendered:
    content: str
    title: str
    description: str
    footer: str
    mentions: tuple[int, ...]  # the users this message may ping


def footer(reminder_id: int, nonce: str) -> str:
    return f"Reminder #{reminder_id} · {nonce}"


def render(
    *,
    reminder_id: int,
    nonce: str,
    message: str,
    target: str,
    via: str,
    author_id: int,
    channel_id: int,
    guild_id: int | None,
    event_at: datetime,
    lead: int,
    late_seconds: float,
    recipients: tuple[int, ...],
    repeats: bool,
) -> Rendered:
    late = f" (late by {format_duration(late_seconds)})" if late_seconds >= LATE_AFTER else ""
    if target == "players":
        who = " ".join(f"<@{u}>" for u in recipients) or f"<@{author_id}>"
        content = f"⏰ {who}{late}"
    elif target == "channel":
        content = f"⏰ Reminder for this channel from <@{author_id}>{late}"
    elif via == "dm":
        where = f" (set in <#{channel_id}>)" if guild_id is not None else ""
        content = f"⏰ Reminder{where}{late}"
    else:
        content = f"⏰ <@{author_id}>{late}"
    stamp = int(event_at.timestamp())
    if lead > 0:
        title = f"In {format_duration(lead)}"
        description = f"{message}\n\n<t:{stamp}:F> (<t:{stamp}:R>)"
    else:
        title = "Reminder"
        description = f"{message}\n\n<t:{stamp}:F>" if repeats else message
    mentions = recipients if target == "players" else (author_id,)
    return Rendered(content, title, description, footer(reminder_id, nonce), mentions)
