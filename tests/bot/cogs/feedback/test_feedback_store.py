"""Feedback's SQL and rules against a real PostgreSQL: tickets, notes and statuses, the
channels a ticket goes to (the server's, then the owners'), the DM preference."""

from __future__ import annotations

import asyncpg
import pytest

from bot.cogs.feedback import store
from bot.cogs.feedback.tickets import OWNERS, FeedbackError, check_status, check_text

pytestmark = pytest.mark.integration

G = 5151


async def test_a_ticket_its_notes_and_listing(pool: asyncpg.Pool) -> None:
    t = await store.create(pool, G, 10, 7, "more dice")
    u = await store.create(pool, G + 1, 11, 8, "elsewhere")
    assert (t.status, t.by_dm) == ("open", False)
    replied = await store.note(pool, t.id, 99, "reply", "thanks")
    assert replied is not None and replied.status == "open"
    planned = await store.note(pool, t.id, 99, "status", "planned")
    assert planned is not None and planned.status == "planned"
    assert await store.note(pool, 10**9, 99, "reply", "x") is None
    notes = await pool.fetch(
        "SELECT kind, text FROM feedback_notes WHERE feedback_id = $1 ORDER BY id", t.id
    )
    assert [(n["kind"], n["text"]) for n in notes] == [("reply", "thanks"), ("status", "planned")]
    assert [x.id for x in await store.listed(pool, G, None)] == [t.id]
    assert await store.listed(pool, G, "open") == []
    assert {x.id for x in await store.listed(pool, None, None)} >= {t.id, u.id}


async def test_channels_server_first_then_owners(pool: asyncpg.Pool) -> None:
    assert await store.channels(pool, G) == []
    await store.set_channel(pool, OWNERS, 500, 1)
    assert await store.channels(pool, G) == [500]
    await store.set_channel(pool, G, 400, 2)
    assert await store.channels(pool, G) == [400, 500]
    await store.set_channel(pool, G, None, 2)
    assert await store.channels(pool, G) == [500]


async def test_the_dm_preference_covers_new_and_open_tickets(pool: asyncpg.Pool) -> None:
    before = await store.create(pool, G, 10, 7, "one")
    await store.set_dm(pool, 7, True)
    after = await store.create(pool, G, 10, 7, "two")
    assert after.by_dm
    again = await store.get(pool, before.id)
    assert again is not None and again.by_dm
    await store.set_dm(pool, 7, False)
    assert not (await store.create(pool, G, 10, 7, "three")).by_dm


def test_rules_and_words() -> None:
    assert check_text("  hi ") == "hi"
    with pytest.raises(FeedbackError, match="at most 2000"):
        check_text("x" * 2001)
    with pytest.raises(FeedbackError, match="Say what"):
        check_text(" ")
    assert check_status("Done") == "done"
    with pytest.raises(FeedbackError, match="planned, done, declined"):
        check_status("open")
    assert check_status("open", listing=True) == "open"
