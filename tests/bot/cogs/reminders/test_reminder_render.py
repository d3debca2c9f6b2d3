"""What a delivered reminder says: who is pinged, lateness, lead times, the nonce footer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bot.cogs.reminders.render import render

EVENT = datetime(2026, 12, 5, 18, 30, tzinfo=UTC)


def make(**kw: Any):
    args: dict[str, Any] = {
        "reminder_id": 12,
        "nonce": "abc123",
        "message": "Session at Ann's",
        "target": "me",
        "via": "channel",
        "author_id": 1,
        "channel_id": 10,
        "guild_id": 20,
        "event_at": EVENT,
        "lead": 0,
        "late_seconds": 0.4,
        "recipients": (1,),
        "repeats": False,
    }
    args.update(kw)
    return render(**args)


def test_on_time_reminder_pings_the_author_only() -> None:
    r = make()
    assert r.content == "⏰ <@1>"
    assert r.description == "Session at Ann's" and r.title == "Reminder"
    assert r.footer == "Reminder #12 · abc123"
    assert r.mentions == (1,)


def test_late_reminder_says_by_how_much() -> None:
    assert make(late_seconds=7500).content == "⏰ <@1> (late by 2h 5m)"
    assert "late" not in make(late_seconds=59).content


def test_lead_time_reminder_names_the_wait_and_the_time() -> None:
    r = make(lead=1800)
    assert r.title == "In 30m"
    stamp = int(EVENT.timestamp())
    assert r.description == f"Session at Ann's\n\n<t:{stamp}:F> (<t:{stamp}:R>)"


def test_players_are_each_mentioned() -> None:
    r = make(target="players", recipients=(3, 4, 5))
    assert r.content == "⏰ <@3> <@4> <@5>" and r.mentions == (3, 4, 5)


def test_channel_target_and_dm() -> None:
    assert make(target="channel").content == "⏰ Reminder for this channel from <@1>"
    assert make(via="dm").content == "⏰ Reminder (set in <#10>)"
    assert make(via="dm", guild_id=None).content == "⏰ Reminder"
