"""Tabletop commands end to end: the real bot (one worker process, two shards) against the
sandbox. Rolls are random, so the tests check what a player would: that the dice shown add up to
the total shown and the successes shown are the dice that reach the target number."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from e2e_harness import (
    Driver,
    SandboxProc,
    plain_members,
    running_cluster,
    text_channels,
    text_of,
    world_of,
)

from cluster.workers import Supervisor

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@dataclass
class Table:
    guild_id: int
    channel_id: int
    owner_id: int  # admin
    players: list[int]  # members with no special rights


@dataclass
class Env:
    supervisor: Supervisor
    dsn: str
    tables: list[Table]


@pytest.fixture(scope="module")
async def env(sandbox: SandboxProc, bot_db: str, redis_url: str) -> AsyncIterator[Env]:
    tables = []
    for g in (await world_of(sandbox))["guilds"]:
        texts, plain = text_channels(g), plain_members(g)
        if len(texts) >= 2 and len(plain) >= 3:
            tables.append(Table(int(g["id"]), texts[1], int(g["owner_id"]), plain[:3]))
    assert len(tables) >= 2, "the test world needs two guilds with a few plain members"
    async with running_cluster(
        sandbox, bot_db, redis_url, shards=2, clusters=1, owner_id=123456789012345678
    ) as sup:
        yield Env(sup, bot_db, tables)


_DICE = re.compile(r"\[([^\]]*)\]")


def shown_dice(line: str) -> list[tuple[int, bool]]:
    """(value, highlighted as a success) of each die in a rendered line."""
    out = []
    (inside,) = _DICE.findall(line)
    for atom in inside.split(", "):
        if atom.startswith("~~") and atom.endswith("~~") and "→" not in atom:
            continue  # dropped
        face = atom.split("→")[-1]
        success = face.startswith("__")
        digits = face.strip("_*~")
        out.append((sum(int(x) for x in digits.split("+")), success))
    return out


async def ask(driver: Driver, t: Table, user: int, text: str) -> str:
    await driver.say(t.channel_id, user, text)
    return await driver.reply_text(t.channel_id)


def _components(entry: dict[str, Any]) -> dict[str, str]:
    rows = entry.get("components") or (entry.get("data") or {}).get("components") or []
    return {b["label"]: b["custom_id"] for row in rows for b in row["components"]}


async def test_shadowrun_roll_counts_successes_from_the_dice_shown(
    env: Env, driver: Driver
) -> None:
    t = env.tables[0]
    await driver.drain(t.channel_id)
    for _ in range(3):
        text = await ask(driver, t, t.players[0], "!roll 8! tn5 # dodge")
        head, line = text.split("\n", 1)
        assert head.endswith("rolled")
        successes = int(re.search(r"\*\*(\d+)\*\* success(?:es)? \(TN 5\)", line).group(1))  # type: ignore[union-attr]
        dice = shown_dice(line)
        assert len(dice) == 8 and line.endswith("— dodge")
        assert successes == sum(v >= 5 for v, _ in dice) == sum(s for _, s in dice)


async def test_slash_roll_total_is_the_sum_of_the_dice(env: Env, driver: Driver) -> None:
    t = env.tables[1]
    await driver.drain(t.channel_id)
    await driver.slash(
        t.channel_id, t.players[0], "roll", [{"name": "dice", "type": 3, "value": "4d6+3"}]
    )
    (entry,) = await driver.replies(t.channel_id)
    assert entry["kind"] == "interaction_response"
    line = text_of(entry).split("\n", 1)[1]
    total = int(re.search(r"\*\*(-?\d+)\*\*", line).group(1))  # type: ignore[union-attr]
    dice = shown_dice(line)
    assert len(dice) == 4 and total == sum(v for v, _ in dice) + 3


async def test_bad_expression_names_the_token_and_position(env: Env, driver: Driver) -> None:
    t = env.tables[0]
    await driver.drain(t.channel_id)
    text = await ask(driver, t, t.players[1], "!roll 4d6x")
    assert "unexpected 'x' at position 3" in text and "help roll" in text
    text = await ask(driver, t, t.players[1], "!roll 500d6")
    assert "too many dice (max 100)" in text


async def test_reroll_button_belongs_to_the_roller(env: Env, driver: Driver) -> None:
    t = env.tables[0]
    await driver.drain(t.channel_id)
    await driver.say(t.channel_id, t.players[0], "!roll cpr +5")
    (entry,) = await driver.replies(t.channel_id)
    button = _components(entry)["Reroll"]
    (refusal,) = await driver.first_click(t.channel_id, t.players[1], entry["message_id"], button)
    assert refusal["ephemeral"] and "Only whoever rolled" in text_of(refusal)
    await driver.click(t.channel_id, t.players[0], entry["message_id"], button)
    used, again = await driver.replies(t.channel_id, count=2)
    # The button is used up: it leaves its message, and the new roll brings the next one.
    assert used["kind"] == "edit" and used["message_id"] == entry["message_id"]
    assert "Reroll" not in _components(used)
    assert again["kind"] == "followup" and not again.get("ephemeral")
    assert text_of(again).split("\n")[0].endswith("rerolled") and "(+5)" in text_of(again)
    assert "Reroll" in _components(again), "a reroll can be rerolled too"


async def test_history_lists_the_last_rolls_newest_first(env: Env, driver: Driver) -> None:
    t = env.tables[1]
    await driver.drain(t.channel_id)
    for expr in ("d20", "2d6t5", "cp2020"):
        await ask(driver, t, t.players[2], f"!roll {expr}")
    text = await ask(driver, t, t.players[2], "!history")
    assert text.index("`cp2020`") < text.index("`2d6t5`") < text.index("`d20`")
    other = await ask(driver, t, t.players[1], f"!history <@{t.players[2]}>")
    assert "`cp2020`" in other
    nothing = await ask(driver, t, t.owner_id, "!history")
    assert "No rolls by" in nothing


async def test_macros_save_roll_list_remove(env: Env, driver: Driver) -> None:
    t = env.tables[0]
    ann, bob = t.players[0], t.players[1]
    await driver.drain(t.channel_id)
    assert "Saved macro **dodge**" in await ask(driver, t, ann, "!macro save Dodge 6! tn4 # dodge")
    text = await ask(driver, t, ann, "!roll dodge vs the troll")
    assert re.search(r"success(es)? \(TN 4\)", text) and "dodge vs the troll" in text
    assert re.search(r"success(es)? \(TN 4\)", await ask(driver, t, ann, "!macro roll dodge"))
    # Macros are one's own: Bob has none of that name.
    assert "`dodge` is neither dice nor a macro of yours" in await ask(
        driver, t, bob, "!roll dodge"
    )
    assert "wouldn't roll" in await ask(driver, t, ann, "!macro save bad 2d6x")
    assert "not a macro name" in await ask(driver, t, ann, "!macro save -no 2d6")
    # Server macros are for moderators to save and for everyone to roll.
    assert "for moderators" in await ask(driver, t, bob, "!macro server-save hit 2d6+1")
    assert "Saved server macro" in await ask(driver, t, t.owner_id, "!macro server-save hit 2d6+1")
    line = (await ask(driver, t, bob, "!roll hit")).split("\n", 1)[1]
    total = int(re.search(r"\*\*(-?\d+)\*\*", line).group(1))  # type: ignore[union-attr]
    assert line.startswith("`2d6+1`") and total == sum(v for v, _ in shown_dice(line)) + 1
    listed = await ask(driver, t, ann, "!macro")
    assert "yours · **dodge**" in listed and "server · **hit**" in listed
    assert "Removed macro **dodge**" in await ask(driver, t, ann, "!macro remove dodge")
    assert "no macro called `dodge`" in await ask(driver, t, ann, "!macro remove dodge")
    conn = await asyncpg.connect(env.dsn)
    try:
        names = await conn.fetch(
            "SELECT scope, name FROM dice_macros WHERE scope_id = ANY($1)",
            [t.channel_id, t.guild_id],
        )
    finally:
        await conn.close()
    assert [(r["scope"], r["name"]) for r in names] == [("guild", "hit")]


async def test_initiative_session(env: Env, driver: Driver) -> None:
    t = env.tables[1]
    gm, player = t.players[0], t.players[1]
    await driver.drain(t.channel_id)
    assert "no GM yet" in await ask(driver, t, gm, "!init roll")
    assert "is now the GM" in await ask(driver, t, gm, "!init gm")
    assert "only they or a moderator" in await ask(driver, t, player, "!init gm")
    assert "follows Shadowrun 2e" in await ask(driver, t, gm, "!init system sr2")
    assert "Added character **Rook**" in await ask(driver, t, player, "!init add Rook 2 9")
    assert "Added NPC **Troll**" in await ask(driver, t, gm, "!init npc Troll 1 4")
    assert "Only the GM" in await ask(driver, t, player, "!init npc Ganger 1 2")
    assert "belongs to someone else" in await ask(driver, t, t.players[2], "!init add Rook 3 3")
    assert "dice must be 1-10" in await ask(driver, t, player, "!init add Rook 11 3")
    rolled = await ask(driver, t, gm, "!init roll")
    assert "Initiative · Shadowrun 2e" in rolled
    order = re.findall(r"^\d+\. \*\*(-?\d+)\*\* (\w+)", rolled, re.M)
    assert {name for _, name in order} == {"Rook", "Troll"}
    scores = [int(s) for s, _ in order]
    assert scores == sorted(scores, reverse=True)
    # Whoever scored above 10 acts again in pass 2.
    assert ("Pass 2: " in rolled) == any(s > 10 for s in scores)
    flipped = await ask(driver, t, player, "!init flip")
    names = re.findall(r"^\d+\. \*\*-?\d+\*\* (\w+)", flipped, re.M)
    assert names == [n for _, n in reversed(order)]
    assert "Removed **Troll**" in await ask(driver, t, gm, "!init remove troll")
    shown = await ask(driver, t, player, "!init")
    assert "Rook" in shown and "Troll (NPC)" not in shown.split("**Last roll**")[0]
    conn = await asyncpg.connect(env.dsn)
    try:
        row = await conn.fetchrow(
            "SELECT gm_id, system, last_order FROM tabletop_tables WHERE channel_id = $1",
            t.channel_id,
        )
    finally:
        await conn.close()
    assert row is not None and row["gm_id"] == gm and row["system"] == "sr2"
    assert "Removed 1 combatant" in await ask(driver, t, gm, "!init clear")


async def test_help_shows_the_dice_syntax(env: Env, driver: Driver) -> None:
    t = env.tables[0]
    await driver.drain(t.channel_id)
    text = await ask(driver, t, t.players[2], "!help roll")
    assert "Rule of 6" in text and "cp2020" in text and "roll 6! tn4" in text
