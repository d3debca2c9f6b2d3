"""Community tools end to end (issue 30): the real bot on two clusters against the sandbox.
An alias runs its command with what the member typed after it, and can't replace `roll` (or
its short name) or run another alias; feedback goes to the staff channel and comes back to its
author when staff reply and set its status, three a member per ten minutes; `analytics 7d`
answers an admin with an embed and an 800x400 PNG whose figures include the commands just
used, and refuses a member."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from e2e_harness import (
    Driver,
    SandboxProc,
    new_prefix,
    plain_members,
    png_size,
    running_cluster,
    text_channels,
    text_of,
    world_of,
)
from waits import until

from bot.config import AnalyticsConfig
from ipc.client import Keys

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

EXTENSIONS = (
    "bot.cogs.general",
    "bot.cogs.admin",
    "bot.cogs.tabletop",
    "bot.cogs.aliases",
    "bot.cogs.analytics",
    "bot.cogs.feedback",
    "bot.cogs.polls",
)


@dataclass
class Server:
    guild_id: int
    channel_id: int
    owner_id: int
    members: list[int]
    staff_channel: int


@dataclass
class Env:
    dsn: str
    control: str
    servers: list[Server]
    redis_url: str
    keys: Keys


@pytest.fixture(scope="module")
async def env(sandbox: SandboxProc, bot_db: str, redis_url: str) -> AsyncIterator[Env]:
    servers = []
    for g in (await world_of(sandbox))["guilds"]:
        texts, plain = text_channels(g), plain_members(g)
        if len(texts) >= 2 and len(plain) >= 2:
            servers.append(Server(int(g["id"]), texts[0], int(g["owner_id"]), plain[:2], texts[1]))
    assert len(servers) >= 2
    prefix = new_prefix()
    fast = AnalyticsConfig(flush=0.2)  # ANALYTICS_FLUSH
    async with running_cluster(
        sandbox,
        bot_db,
        redis_url,
        shards=2,
        clusters=2,
        owner_id=123456789012345678,
        prefix=prefix,
        adjust=lambda c: replace(c, extensions=EXTENSIONS, analytics=fast),
    ):
        yield Env(bot_db, sandbox.control, servers, redis_url, Keys(prefix))


async def ask(driver: Driver, s: Server, user: int, text: str) -> str:
    await driver.say(s.channel_id, user, text)
    return await driver.reply_text(s.channel_id)


async def test_an_alias_runs_its_command_with_what_follows(env: Env, driver: Driver) -> None:
    s = env.servers[0]
    ann, bob = s.members
    await driver.drain(s.channel_id)
    added = await ask(driver, s, ann, "!alias add quick roll 6! tn4")
    assert "Alias added: `!quick` runs `!roll 6! tn4`" in added
    text = await ask(driver, s, ann, "!quick # vs the goblin")
    head, line = text.split("\n", 1)
    assert head.endswith("rolled") and line.endswith("— vs the goblin")
    assert re.search(r"success(es)? \(TN 4\)", line)
    # Ann's alias is hers: Bob's `!quick` is no command, and the bot says nothing.
    await driver.say(s.channel_id, bob, "!quick")
    assert await driver.replies(s.channel_id, wait=1.5) == []
    # The server's alias (an admin's) is everyone's; Ann's own still wins for her.
    assert "Alias added" in await ask(driver, s, s.owner_id, "!alias server add quick roll 2d6")
    assert "(TN 4)" in await ask(driver, s, ann, "!quick")
    assert "(TN 4)" not in await ask(driver, s, bob, "!quick")
    listed = await ask(driver, s, ann, "!alias list")
    assert "`!quick` → `!roll 6! tn4`" in listed and "`!quick` → `!roll 2d6`" in listed
    # A member may not make the server's aliases.
    assert "This command is for admins." in await ask(
        driver, s, bob, "!alias server add x roll 1d6"
    )
    assert "Alias `quick` removed." in await ask(driver, s, ann, "!alias remove quick")
    assert "(TN 4)" not in await ask(driver, s, ann, "!quick")


async def test_an_alias_cant_replace_roll_or_run_an_alias(env: Env, driver: Driver) -> None:
    s = env.servers[1]
    ann = s.members[0]
    await driver.drain(s.channel_id)
    assert "`roll` is a built-in command" in await ask(driver, s, ann, "!alias add roll roll 1d6")
    assert "`r` is a built-in command" in await ask(driver, s, ann, "!alias add R roll 1d6")
    assert "Alias added" in await ask(driver, s, ann, "!alias add two roll 2d6")
    assert "can't run another alias" in await ask(driver, s, ann, "!alias add loop two")
    assert "can't run another alias" in await ask(driver, s, ann, "!alias add loop2 loop2")
    # `roll` is still the dice.
    assert "rolled" in await ask(driver, s, ann, "!roll 1d6")


async def test_analytics_7d_answers_with_figures_and_a_chart(env: Env, driver: Driver) -> None:
    s = env.servers[0]
    ann = s.members[0]
    await driver.drain(s.channel_id)
    for _ in range(3):
        assert "rolled" in await ask(driver, s, ann, "!roll 1d6")
    assert "is for admins" in await ask(driver, s, ann, "!analytics 7d")  # refused, counted too
    conn = await asyncpg.connect(env.dsn)
    try:

        async def counted() -> bool:
            n = await conn.fetchval(
                "SELECT coalesce(sum(uses), 0) FROM analytics_days"
                " WHERE guild_id = $1 AND command = 'roll' AND outcome = 'ok'",
                s.guild_id,
            )
            return bool(n >= 3)

        await until("the rolls counted", counted, within=20)
        refused = await conn.fetchval(
            "SELECT sum(uses) FROM analytics_days WHERE guild_id = $1 AND command = 'analytics'"
            " AND outcome = 'refused'",
            s.guild_id,
        )
        assert refused >= 1
    finally:
        await conn.close()
    await driver.say(s.channel_id, s.owner_id, "!analytics 7d")
    [sent] = await driver.replies(s.channel_id, wait=15)
    text = text_of(sent)
    assert "the last 7 days" in text and "Active users" in text and "Error rate" in text
    assert re.search(r"`roll` \d+ uses", text)
    assert await png_size(env.control, sent) == (800, 400)
    assert "`1y` is not a span" in await ask(driver, s, s.owner_id, "!analytics 1y")


async def test_feedback_round_trip(env: Env, driver: Driver) -> None:
    s = env.servers[1]
    ann, bob = s.members
    staff = s.owner_id
    await driver.drain(s.channel_id)
    await driver.drain(s.staff_channel)
    assert f"<#{s.staff_channel}>" in await ask(
        driver, s, staff, f"!feedback channel <#{s.staff_channel}>"
    )
    thanks = await ask(driver, s, bob, "!feedback more dice systems, please")
    m = re.search(r"Thanks! Your feedback is #(\d+)\. You'll hear back here", thanks)
    assert m, thanks
    ticket = int(m.group(1))
    posted = await driver.replies(s.staff_channel, wait=10)
    assert f"Feedback #{ticket}" in text_of(posted[0])
    assert "more dice systems" in text_of(posted[0])

    await driver.say(s.channel_id, staff, f"!feedback reply {ticket} Good idea: Shadowrun next!")
    said = [text_of(e) for e in await driver.replies(s.channel_id, wait=10, count=2)]
    told = next(t for t in said if t.startswith(f"<@{bob}>"))
    assert f"replied to your feedback #{ticket}" in told and "Shadowrun next!" in told
    assert any(f"Replied to feedback #{ticket}; its author was told in" in t for t in said)

    await driver.say(s.channel_id, staff, f"!feedback status {ticket} planned")
    said = [text_of(e) for e in await driver.replies(s.channel_id, wait=10, count=2)]
    assert any(t.startswith(f"<@{bob}>") and "is now **planned**" in t for t in said)

    assert "is for moderators" in await ask(driver, s, bob, f"!feedback status {ticket} done")
    assert "`maybe` is not a status" in await ask(
        driver, s, staff, f"!feedback status {ticket} maybe"
    )
    assert f"no feedback #{ticket + 1000}" in await ask(
        driver, s, staff, f"!feedback reply {ticket + 1000} hello"
    )
    assert f"#{ticket}** [planned]" in await ask(driver, s, staff, "!feedback list planned")
    assert f"#{ticket}**" not in await ask(driver, s, staff, "!feedback list open")

    # Three a member every ten minutes.
    for i in range(2):
        assert "Thanks!" in await ask(driver, s, ann, f"!feedback idea {i}")
    await driver.drain(s.staff_channel)
    assert "Thanks!" in await ask(driver, s, ann, "!feedback idea 2")
    assert "Slow down" in await ask(driver, s, ann, "!feedback idea 3")


def _buttons(entry: dict[str, Any]) -> dict[str, str]:
    rows = entry.get("components") or (entry.get("data") or {}).get("components") or []
    return {b["label"]: b["custom_id"] for row in rows for b in row["components"]}


async def _posted_poll(conn: asyncpg.Connection, guild_id: int) -> int:
    """The server's newest poll, once the bot has Discord's answer to its send (the message id
    kept): from then on one click is one vote."""
    poll_id = int(await conn.fetchval("SELECT max(id) FROM polls WHERE guild_id = $1", guild_id))

    async def posted() -> bool:
        q = "SELECT message_id IS NOT NULL FROM polls WHERE id = $1"
        return bool(await conn.fetchval(q, poll_id))

    await until("the poll's message id kept", posted, within=10)
    return poll_id


async def test_a_poll_counts_votes_and_closes_on_time_once(env: Env, driver: Driver) -> None:
    s = env.servers[0]
    ann, bob = s.members
    await driver.drain(s.channel_id)
    await driver.say(
        s.channel_id, s.owner_id, '!poll "Next campaign?" "Shadowrun" "Cthulhu" --duration 1h'
    )
    [sent] = await driver.replies(s.channel_id, wait=10)
    assert "Poll: Next campaign?" in text_of(sent)
    message_id = str(sent.get("message_id") or sent["id"])
    ids = _buttons(sent)
    assert set(ids) == {"Shadowrun", "Cthulhu"}
    conn = await asyncpg.connect(env.dsn)
    try:
        poll_id = await _posted_poll(conn, s.guild_id)
        seen: list[dict[str, Any]] = []
        for user, choice in ((ann, "Shadowrun"), (bob, "Shadowrun"), (bob, "Cthulhu")):
            # A press is answered twice (the poll's counts edited, then "You voted for"); the
            # next press waits for both, as a person would, so bob's two presses reach the
            # bot one after the other.
            await driver.click(s.channel_id, user, message_id, ids[choice])
            said = f"You voted for **{choice}**"
            answer: list[dict[str, Any]] = []
            while not any(said in text_of(e) for e in answer):
                more = await driver.replies(s.channel_id, wait=10)
                assert more, f"no {said!r} within 10s"
                answer += more
            seen += answer

        async def votes() -> list[tuple[int, int]]:
            rows = await conn.fetch(
                "SELECT option, user_id FROM poll_votes WHERE poll_id = $1 ORDER BY option",
                poll_id,
            )
            return [(r["option"], r["user_id"]) for r in rows]

        await until("both votes in", lambda: _is(votes, [(0, ann), (1, bob)]), within=15)
        seen += await driver.replies(s.channel_id, wait=2, count=100)
        assert any("2 votes" in text_of(e) for e in seen)
        # The hour passes: the close job (and the poll) are due now; both clusters are woken.
        await conn.execute("UPDATE polls SET closes_at = now() WHERE id = $1; ", poll_id)
        await conn.execute(
            "UPDATE jobs SET due_at = now() WHERE kind = 'polls.close' AND key = $1",
            f"poll-close:{poll_id}",
        )
        await _wake(env)
        got = await driver.replies(s.channel_id, wait=15, count=1)
        got += await driver.replies(s.channel_id, wait=3, count=100)  # anything more
        results = [e for e in got if "Results: Next campaign?" in text_of(e)]
        assert len(results) == 1
        text = text_of(results[0])
        assert "Shadowrun" in text and "Cthulhu" in text and f"<@{bob}>" in text
        assert await png_size(env.control, results[0]) == (800, 50 + 36 * 2)
        job = await conn.fetchrow(
            "SELECT state, attempts FROM jobs WHERE kind = 'polls.close' AND key = $1",
            f"poll-close:{poll_id}",
        )
        assert (job["state"], job["attempts"]) == ("done", 1)
        assert await conn.fetchval("SELECT closed_at IS NOT NULL FROM polls WHERE id = $1", poll_id)
        # The poll's message shows the final counts, without its buttons.
        [final] = [e for e in got if "Poll closed: Next campaign?" in text_of(e)]
        assert not _buttons(final) and "2 votes" in text_of(final)
        # A worker killed after posting the results, before the job completed: the next
        # claim (attempt 2) finds them by the job's nonce, posts nothing, and closes the poll.
        await conn.execute(
            "UPDATE jobs SET state = 'pending', finished_at = NULL WHERE kind = 'polls.close'"
            " AND key = $1",
            f"poll-close:{poll_id}",
        )
        await conn.execute("UPDATE polls SET closed_at = NULL WHERE id = $1", poll_id)
        await _wake(env)

        async def closed_again() -> bool:
            return bool(
                await conn.fetchval(
                    "SELECT closed_at IS NOT NULL FROM polls WHERE id = $1", poll_id
                )
            )

        await until("the second attempt closed the poll", closed_again, within=15)
        again = await conn.fetchrow(
            "SELECT state, attempts FROM jobs WHERE kind = 'polls.close' AND key = $1",
            f"poll-close:{poll_id}",
        )
        assert (again["state"], again["attempts"]) == ("done", 2)
        later = await driver.replies(s.channel_id, wait=3, count=100)
        assert not [e for e in later if "Results: Next campaign?" in text_of(e)]
    finally:
        await conn.close()
    assert "2 to 10 options" in await ask(driver, s, ann, '!poll "Only one?" "Yes"')
    assert "not a duration" in await ask(driver, s, ann, '!poll "Q?" "A" "B" --duration soon')


async def test_poll_end_closes_a_poll_now_for_its_creator_once(env: Env, driver: Driver) -> None:
    s = env.servers[1]
    ann, bob = s.members
    await driver.drain(s.channel_id)
    await driver.say(s.channel_id, ann, '!poll "Pizza tonight?" "Yes" "No" --duration 1d')
    [sent] = await driver.replies(s.channel_id, wait=10)
    conn = await asyncpg.connect(env.dsn)
    try:
        poll_id = await conn.fetchval("SELECT max(id) FROM polls WHERE guild_id = $1", s.guild_id)
        assert f"#{poll_id}" in text_of(sent)
        # Another member may not; a number that isn't one, or another server's poll, is named.
        said = await ask(driver, s, bob, f"!poll end {poll_id}")
        assert f"Only its creator or a moderator may end poll #{poll_id}" in said
        assert "not a poll's number" in await ask(driver, s, bob, "!poll end soon")
        other = env.servers[0]
        await driver.drain(other.channel_id)
        said = await ask(driver, other, other.members[0], f"!poll end #{poll_id}")
        assert f"There is no poll #{poll_id} in this server" in said
        # Its creator ends it: the close job runs now, on its first attempt, and posts once.
        await driver.say(s.channel_id, ann, f"!poll end #{poll_id}")
        got = await driver.replies(s.channel_id, wait=15, count=3)  # the answer, edit, results
        got += await driver.replies(s.channel_id, wait=3, count=100)  # anything more
        assert any(f"Poll #{poll_id} has ended" in text_of(e) for e in got)
        assert len([e for e in got if "Results: Pizza tonight?" in text_of(e)]) == 1
        job = await conn.fetchrow(
            "SELECT state, attempts FROM jobs WHERE kind = 'polls.close' AND key = $1",
            f"poll-close:{poll_id}",
        )
        assert (job["state"], job["attempts"]) == ("done", 1)
        assert await conn.fetchval("SELECT closed_at IS NOT NULL FROM polls WHERE id = $1", poll_id)
        assert "has closed already" in await ask(driver, s, ann, f"!poll end {poll_id}")
    finally:
        await conn.close()


async def test_an_anonymous_polls_results_name_no_voter(env: Env, driver: Driver) -> None:
    s = env.servers[1]
    ann, bob = s.members
    await driver.drain(s.channel_id)
    await driver.say(s.channel_id, ann, '!poll "Secret ballot?" "Aye" "Nay" --anonymous')
    [sent] = await driver.replies(s.channel_id, wait=10)
    assert "anonymous" in text_of(sent)
    message_id = str(sent.get("message_id") or sent["id"])
    ids = _buttons(sent)
    conn = await asyncpg.connect(env.dsn)
    try:
        poll_id = await _posted_poll(conn, s.guild_id)
        for user, choice in ((ann, "Aye"), (bob, "Nay")):
            await driver.click(s.channel_id, user, message_id, ids[choice])
            assert await driver.replies(s.channel_id, wait=10)

        async def voted() -> bool:
            q = "SELECT count(*) FROM poll_votes WHERE poll_id = $1"
            return bool(await conn.fetchval(q, poll_id) == 2)

        await until("both votes in", voted, within=15)
        await driver.drain(s.channel_id)
        await driver.say(s.channel_id, ann, f"!poll end {poll_id}")
        got = await driver.replies(s.channel_id, wait=15, count=3)  # the answer, edit, results
        got += await driver.replies(s.channel_id, wait=3, count=100)
        (results,) = [text_of(e) for e in got if "Results: Secret ballot?" in text_of(e)]
        assert "2 votes" in results and "Aye" in results and "Nay" in results
        assert f"<@{ann}>" not in results and f"<@{bob}>" not in results
    finally:
        await conn.close()


async def _is(get: Any, want: Any) -> bool:
    return bool(await get() == want)


async def test_slash_feedback_without_text_opens_a_form(env: Env, driver: Driver) -> None:
    s = env.servers[0]
    bob = s.members[1]
    await driver.drain(s.channel_id)
    await driver.slash(s.channel_id, bob, "feedback", [{"type": 1, "name": "send", "options": []}])
    (form,) = await driver.replies(s.channel_id)
    assert form["kind"] == "modal" and form["title"] == "Feedback for the staff"
    (field,) = form["inputs"]
    body = {
        "channel_id": str(s.channel_id),
        "user_id": str(bob),
        "fields": {field["custom_id"]: "A dice roller for Fate, please"},
    }
    async with driver.http.post(f"{driver.base}/_sandbox/interactions", json=body) as resp:
        assert resp.status == 200, await resp.text()
    (thanks,) = await driver.replies(s.channel_id)
    m = re.search(r"Thanks! Your feedback is #(\d+)\.", text_of(thanks))
    assert m, text_of(thanks)
    conn = await asyncpg.connect(env.dsn)
    try:
        row = await conn.fetchrow("SELECT author_id, text FROM feedback WHERE id = $1", int(m[1]))
    finally:
        await conn.close()
    assert (row["author_id"], row["text"]) == (bob, "A dice roller for Fate, please")


async def _wake(env: Env) -> None:
    """Wake every cluster's job runner, as a job scheduled elsewhere would."""
    redis = aioredis.Redis.from_url(env.redis_url)
    try:
        await redis.publish(env.keys("jobs", "wake"), b"new")
    finally:
        await redis.aclose()
