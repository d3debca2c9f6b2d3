"""Migration 0007 on a database that has reminders in flight: the deliveries still to send
become jobs (keeping their attempts and first claim, so a send completed before the upgrade is
found by its nonce, not repeated), and the reminders' job runner delivers them."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.cogs.reminders import outbox
from bot.db import migrations
from bot.db.pool import connect

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def test_deliveries_in_flight_become_jobs(fresh_dsn: str, tmp_path: Path) -> None:
    for m in migrations.discover():
        if m.version < 7:
            shutil.copy(m.path, tmp_path / m.filename)
    conn = await connect(fresh_dsn)
    try:
        await migrations.apply(conn, tmp_path)
        now = datetime.now(UTC)
        rid = await conn.fetchval(
            "INSERT INTO reminders (author_id, guild_id, channel_id, target, via, message, zone, "
            "first_at, local_at) VALUES (1, $1, 10, 'me', 'channel', 'x', 'UTC', $2, $3) "
            "RETURNING id",
            5 << 22,
            now,
            now.replace(tzinfo=None),
        )
        claimed = now - timedelta(minutes=1)
        rows = [  # (lead, status, attempts, first_claimed_at)
            (0, "pending", 0, None),
            (60, "firing", 1, claimed),
            (120, "sent", 1, claimed),
            (180, "cancelled", 0, None),
        ]
        for lead, status, attempts, first in rows:
            await conn.execute(
                "INSERT INTO reminder_deliveries (reminder_id, occurrence, lead, event_at, "
                "fire_at, nonce, shard_guild, status, attempts, first_claimed_at, claimed_by, "
                "lease_until) VALUES ($1, 0, $2, $3, $4, 'n' || $2::int, $5, $6, $7, $8, $9, $10)",
                rid,
                lead,
                now,
                now - timedelta(seconds=lead),
                5 << 22,
                status,
                attempts,
                first,
                "c0:old" if status == "firing" else None,
                now + timedelta(minutes=5) if status == "firing" else None,
            )
        await migrations.apply(conn)  # 0007 onwards
        found = await conn.fetch(
            "SELECT d.lead, d.status, j.kind, j.state, j.guild_id, j.due_at, j.attempts, "
            "j.first_claimed_at, j.payload FROM reminder_deliveries d "
            "LEFT JOIN jobs j ON j.key = 'delivery:' || d.id ORDER BY d.lead"
        )
    finally:
        await conn.close()
    by_lead = {r["lead"]: r for r in found}
    assert [by_lead[lead]["kind"] for lead in (0, 60, 120, 180)] == [outbox.KIND] * 2 + [None] * 2
    pending, firing = by_lead[0], by_lead[60]
    assert (pending["status"], pending["state"], pending["attempts"]) == ("pending", "pending", 0)
    assert pending["due_at"] == now and pending["guild_id"] == 5 << 22
    # The one being sent at the upgrade: pending again, its attempt and first claim kept, so its
    # next claim is attempt 2 and looks for the earlier send first.
    assert (firing["status"], firing["state"], firing["attempts"]) == ("pending", "pending", 1)
    assert firing["first_claimed_at"] == claimed
    assert firing["payload"] == {"delivery": await _id(fresh_dsn, rid, 60)}


async def _id(dsn: str, reminder_id: int, lead: int) -> int:
    conn = await connect(dsn)
    try:
        return int(
            await conn.fetchval(
                "SELECT id FROM reminder_deliveries WHERE reminder_id = $1 AND lead = $2",
                reminder_id,
                lead,
            )
        )
    finally:
        await conn.close()
