"""Polls: reading the command, and the vote rule and the close against a real PostgreSQL."""

from __future__ import annotations

import asyncpg
import pytest

from bot.cogs.polls import store
from bot.cogs.polls.rules import PollError, bar, parse, parse_duration, parse_poll_id


def test_parse_reads_the_question_options_and_flags() -> None:
    spec = parse('"Next campaign?" "Shadowrun" "Call of  Cthulhu" --duration 2d --multiple')
    assert spec.question == "Next campaign?"
    assert spec.options == ["Shadowrun", "Call of Cthulhu"]
    assert (spec.duration, spec.multiple, spec.anonymous) == (2 * 86400, True, False)
    assert parse('"Q?" A B --anonymous').anonymous
    assert parse_duration("2h30m") == 9000


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('"Q?" "A"', "2 to 10 options"),
        ('"Q?" ' + " ".join(f'"o{i}"' for i in range(11)), "2 to 10 options"),
        ('"Q?" "A" "a"', "the same"),
        ('"Q?" "A" "B" --duration', "needs a value"),
        ('"Q?" "A" "B" --duration 40d', "1 minute to 30 days"),
        ('"Q?" "A" "B" --duration soon', "not a duration"),
        ('"Q?" "A" "B" --secret', "not an option"),
        ('"Q? "A" "B"', "put the question and each option in quotes"),
        ("", "Ask something"),
    ],
)
def test_parse_names_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(PollError, match=says):
        parse(text)


def test_bars() -> None:
    assert bar(1, 4, width=8) == "██░░░░░░"
    assert bar(0, 0, width=3) == "░░░"


async def _poll(pool: asyncpg.Pool, *, multiple: bool) -> store.Poll:
    async with pool.acquire() as conn:
        return await store.create(
            conn,
            guild_id=1,
            channel_id=2,
            author_id=3,
            question="Q?",
            options=["A", "B", "C"],
            multiple=multiple,
            anonymous=False,
            seconds=3600,
        )


@pytest.mark.integration
async def test_one_vote_per_member_per_option(pool: asyncpg.Pool) -> None:
    single = await _poll(pool, multiple=False)
    assert (await store.vote(pool, single.id, 0, 7))[0] == "added"
    assert (await store.vote(pool, single.id, 1, 7))[0] == "added"  # moves the vote
    assert (await store.vote(pool, single.id, 2, 8))[0] == "added"
    assert await store.counts(pool, single) == [0, 1, 1]
    assert (await store.vote(pool, single.id, 1, 7))[0] == "removed"  # pressed again
    assert await store.counts(pool, single) == [0, 0, 1]
    several = await _poll(pool, multiple=True)
    for option in (0, 1, 1, 2):
        await store.vote(pool, several.id, option, 7)
    assert await store.counts(pool, several) == [1, 0, 1]


@pytest.mark.integration
async def test_a_poll_closes_once_and_takes_no_votes_after(pool: asyncpg.Pool) -> None:
    poll = await _poll(pool, multiple=False)
    await store.vote(pool, poll.id, 0, 7)
    async with pool.acquire() as conn:
        assert await store.close(conn, poll.id) is not None
        assert await store.close(conn, poll.id) is None
    assert (await store.vote(pool, poll.id, 1, 8))[0] == "closed"
    other = await _poll(pool, multiple=False)
    await pool.execute("UPDATE polls SET closes_at = now() WHERE id = $1", other.id)
    assert (await store.vote(pool, other.id, 1, 8))[0] == "closed"  # due, not yet closed
    assert await store.counts(pool, poll) == [1, 0, 0]
    assert await store.voters(pool, poll.id) == {0: [7]}


def test_a_polls_number_is_read_as_its_footer_shows_it() -> None:
    assert parse_poll_id("12") == parse_poll_id(" #12 ") == 12
    for bad in ("twelve", "#", "-3", "0", "9" * 30):
        with pytest.raises(PollError, match="not a poll's number"):
            parse_poll_id(bad)


@pytest.mark.integration
async def test_ending_a_poll_now_stops_its_votes_once(pool: asyncpg.Pool) -> None:
    poll = await _poll(pool, multiple=False)
    assert (await store.vote(pool, poll.id, 0, 7))[0] == "added"
    async with pool.acquire() as conn, conn.transaction():
        ended = await store.end_now(conn, poll.id)
        assert ended is not None and ended.closes_at < poll.closes_at
        assert await store.end_now(conn, poll.id) is None  # past its end: once
        now = await conn.fetchval("SELECT now()")
    assert ended.closes_at == now and ended.closed_at is None  # the close job closes it
    assert (await store.vote(pool, poll.id, 1, 8))[0] == "closed"
    assert await store.counts(pool, poll) == [1, 0, 0]
    closed = await _poll(pool, multiple=False)
    async with pool.acquire() as conn:
        await store.close(conn, closed.id)
        assert await store.end_now(conn, closed.id) is None
