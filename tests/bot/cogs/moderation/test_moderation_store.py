"""Moderation's SQL against a real PostgreSQL: case numbers, a case and its audit row in one
transaction, warnings and their expiry, reasons edited with an audit row, notes, settings,
a tempban's end as a job, the known bans."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from bot.cogs.moderation import store
from bot.cogs.moderation.rules import Threshold
from bot.cogs.moderation.store import ModSettings, NewCase

pytestmark = pytest.mark.integration

G = 1000
NOW = datetime(2026, 12, 4, 12, tzinfo=UTC)


def warn(target: int, moderator: int = 7, reason: str | None = "spam") -> NewCase:
    return NewCase(
        guild_id=G, action="warn", target_id=target, moderator_id=moderator, reason=reason
    )


async def test_case_numbers_count_per_server_without_gaps_under_concurrency(
    pool: asyncpg.Pool,
) -> None:
    made = await asyncio.gather(*(store.record(pool, warn(50 + i)) for i in range(20)))
    assert sorted(c.number for c in made) == list(range(1, 21))
    other = await store.record(
        pool, NewCase(guild_id=G + 1, action="kick", target_id=5, moderator_id=7)
    )
    assert other.number == 1


async def test_a_case_has_its_audit_row_and_neither_exists_without_the_other(
    pool: asyncpg.Pool,
) -> None:
    case = await store.record(pool, warn(5, reason="links"))
    row = await pool.fetchrow("SELECT * FROM audit_log WHERE id = $1", case.audit_id)
    assert row["action"] == "moderation.warn" and row["target_id"] == 5
    assert row["actor_id"] == 7 and row["after"]["case"] == case.number
    assert row["after"]["reason"] == "links"

    async def boom(conn: asyncpg.Connection, c: store.Case) -> None:
        raise RuntimeError("the extra step failed")

    with pytest.raises(RuntimeError):
        await store.record(pool, warn(6), boom)
    assert await pool.fetchval("SELECT count(*) FROM mod_cases WHERE target_id = 6") == 0
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE target_id = 6") == 0
    # The number it would have had is not used up either.
    assert (await store.record(pool, warn(6))).number == case.number + 1


async def test_active_warnings_expire(pool: asyncpg.Pool) -> None:
    for _ in range(3):
        await store.record(pool, warn(9))
    await store.record(pool, NewCase(guild_id=G, action="kick", target_id=9, moderator_id=7))
    await pool.execute(
        "UPDATE mod_cases SET created_at = $1 WHERE number = 1 AND guild_id = $2",
        NOW - timedelta(days=40),
        G,
    )
    await pool.execute(
        "UPDATE mod_cases SET created_at = $1 WHERE number IN (2, 3) AND guild_id = $2",
        NOW - timedelta(days=1),
        G,
    )
    assert await store.active_warnings(pool, G, 9, expiry=None, now=NOW) == [1, 2, 3]
    assert await store.active_warnings(pool, G, 9, expiry=timedelta(days=30), now=NOW) == [2, 3]
    assert await store.active_warnings(pool, G, 10, expiry=None, now=NOW) == []


async def test_reason_edit_is_audited_and_cases_list(pool: asyncpg.Pool) -> None:
    first = await store.record(pool, warn(11, reason="old"))
    await store.record(pool, warn(12))
    edited = await store.edit_reason(pool, G, first.number, "new", actor_id=8, channel_id=3)
    assert edited is not None and edited.reason == "new" and edited.updated_at is not None
    row = await pool.fetchrow(
        "SELECT * FROM audit_log WHERE action = 'moderation.reason' AND guild_id = $1", G
    )
    assert row["before"] == {"case": first.number, "reason": "old"}
    assert row["after"] == {"case": first.number, "reason": "new"} and row["actor_id"] == 8
    assert await store.edit_reason(pool, G, 999, "x", actor_id=8, channel_id=3) is None
    assert [c.target_id for c in await store.cases_for(pool, G, None)] == [12, 11]
    assert [c.number for c in await store.cases_for(pool, G, 11)] == [first.number]
    got = await store.get_case(pool, G, first.number)
    assert got is not None and got.reason == "new"


async def test_notes(pool: asyncpg.Pool) -> None:
    await store.add_note(pool, guild_id=G, target_id=4, author_id=7, body="alt?", channel_id=3)
    await store.add_note(pool, guild_id=G, target_id=4, author_id=8, body="yes", channel_id=3)
    assert [n.body for n in await store.notes_for(pool, G, 4)] == ["yes", "alt?"]
    assert await store.notes_for(pool, G + 1, 4) == []
    audited = await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'moderation.note'")
    assert audited == 2


async def test_settings_round_trip(pool: asyncpg.Pool) -> None:
    assert await store.get_settings(pool, G) == ModSettings(G)
    new = ModSettings(
        G,
        dm_members=False,
        warn_expiry=timedelta(days=30),
        thresholds=(Threshold(3, "timeout", timedelta(hours=1)), Threshold(5, "kick")),
    )
    async with pool.acquire() as conn:
        await store.save_settings(conn, new)
    assert await store.get_settings(pool, G) == new


async def test_a_tempban_case_and_its_end_commit_together(pool: asyncpg.Pool) -> None:
    due = NOW + timedelta(minutes=1)

    async def end(conn: asyncpg.Connection, c: store.Case) -> None:
        await store.schedule_unban(conn, G, 21, due, c.number)

    case = await store.record(
        pool,
        NewCase(
            guild_id=G,
            action="tempban",
            target_id=21,
            moderator_id=7,
            duration=timedelta(minutes=1),
            expires_at=due,
        ),
        end,
    )
    job = await pool.fetchrow("SELECT * FROM jobs WHERE kind = $1", store.UNBAN_JOB)
    assert job["key"] == store.unban_key(G, 21, case.number) and job["guild_id"] == G
    assert job["due_at"] == due and job["payload"]["case"] == case.number
    latest = await store.latest_ban_case(pool, G, 21)
    assert latest is not None and latest.number == case.number
    await store.record(pool, NewCase(guild_id=G, action="unban", target_id=21, moderator_id=7))
    latest = await store.latest_ban_case(pool, G, 21)
    assert latest is not None and latest.action == "unban"


async def test_known_bans(pool: asyncpg.Pool) -> None:
    assert await store.known_bans(pool, G) is None  # never synced
    await store.replace_bans(pool, G, [1, 2, 3])
    assert await store.known_bans(pool, G) == {1, 2, 3}
    assert await store.note_ban(pool, G, 4, True) is True
    assert await store.note_ban(pool, G, 4, True) is False
    assert await store.note_ban(pool, G, 1, False) is True
    assert await store.known_bans(pool, G) == {2, 3, 4}
    assert G in await store.moderated_guilds(pool)
