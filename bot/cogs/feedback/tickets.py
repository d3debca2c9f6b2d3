"""Feedback, pure: what a ticket may say, its statuses, and what its author is told."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.user_error import UserError

MAX_TEXT = 2000
STATUSES = ("planned", "done", "declined")  # what staff may set; a new ticket is 'open'
LISTABLE = ("open", *STATUSES)
OWNERS = 0  # the guild id under which the bot owners' channel is kept


class FeedbackError(UserError):
    pass


@dataclass(frozen=True)
class Ticket:
    id: int
    guild_id: int
    channel_id: int
    author_id: int
    text: str
    status: str
    by_dm: bool
    created_at: datetime


def check_text(text: str) -> str:
    text = text.strip()
    if not text:
        raise FeedbackError("Say what you'd like to tell the staff, e.g. `feedback more dice`.")
    if len(text) > MAX_TEXT:
        raise FeedbackError(f"Feedback may be at most {MAX_TEXT} characters ({len(text)} given).")
    return text


def check_status(status: str, *, listing: bool = False) -> str:
    status = status.strip().lower()
    allowed = LISTABLE if listing else STATUSES
    if status not in allowed:
        raise FeedbackError(f"`{status[:20]}` is not a status: use {', '.join(allowed)}.")
    return status


def told(ticket: Ticket, kind: str, text: str, staff: str) -> str:
    """What the ticket's author reads when staff reply or set a status."""
    quote = ticket.text if len(ticket.text) <= 80 else ticket.text[:79] + "…"
    if kind == "status":
        return f"Your feedback #{ticket.id} (“{quote}”) is now **{text}** ({staff})."
    return f"{staff} replied to your feedback #{ticket.id} (“{quote}”):\n> {text}"
