"""Persistent buttons, menus and forms, end to end: two worker processes (one shard each)
against the sandbox, which keeps Discord's 3 s deadline. Components sent before a rolling
restart work after it, on both workers, and on a worker that never saw them; expired ones
say so; a double click or a retry acts once; a form refuses "abc" and takes 50; a member menu
resolves the member; work past 3 s is deferred in time, also under load."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import asyncpg
import pytest
from e2e_harness import (
    Driver,
    SandboxProc,
    cluster_of,
    new_prefix,
    plain_members,
    start_cluster,
    text_channels,
    text_of,
    world_of,
)

from bot.components import ids
from bot.config import WorkerConfig
from cluster.workers import Supervisor

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SHARDS, CLUSTERS = 2, 2


@dataclass
class Place:
    guild_id: int
    channel_id: int
    owner_id: int  # the guild's owner
    member_id: int  # a plain member
    other_id: int  # another plain member
    cluster: int


@dataclass
class Env:
    sandbox: SandboxProc
    supervisor: Supervisor
    dsn: str
    redis_url: str
    prefix: str
    places: list[Place]

    def on(self, cluster: int, skip: int = 0) -> Place:
        return [p for p in self.places if p.cluster == cluster][skip]


def with_forms(config: WorkerConfig) -> WorkerConfig:
    return replace(config, extensions=(*config.extensions, "forms_cog"))


async def start(env_or: Any, clusters: int) -> Supervisor:
    sandbox, dsn, redis_url, prefix = env_or
    return await start_cluster(
        sandbox,
        dsn,
        redis_url,
        shards=SHARDS,
        clusters=clusters,
        owner_id=123456789012345678,
        prefix=prefix,
        adjust=with_forms,
    )


@pytest.fixture(scope="module")
async def env(sandbox: SandboxProc, bot_db: str, redis_url: str) -> AsyncIterator[Env]:
    places = []
    for g in (await world_of(sandbox))["guilds"]:
        texts, plain = text_channels(g), plain_members(g)
        if texts and len(plain) >= 2:
            cluster = cluster_of(int(g["id"]), SHARDS, CLUSTERS)
            places.append(
                Place(int(g["id"]), texts[0], int(g["owner_id"]), plain[0], plain[1], cluster)
            )
    assert {p.cluster for p in places} == {0, 1}, "the world needs a guild on each worker"
    prefix = new_prefix()
    sup = await start((sandbox, bot_db, redis_url, prefix), CLUSTERS)
    env = Env(sandbox, sup, bot_db, redis_url, prefix, places)
    try:
        yield env
    finally:
        await env.supervisor.stop()


def controls(entry: dict[str, Any]) -> dict[str, str]:
    """label (or placeholder) -> custom_id of a message's buttons and menus."""
    rows = entry.get("components") or []
    return {
        str(c.get("label") or c.get("placeholder")): c["custom_id"]
        for row in rows
        for c in row.get("components", [])
        if "custom_id" in c
    }


async def interact(driver: Driver, body: dict[str, Any]) -> str:
    async with driver.http.post(f"{driver.base}/_sandbox/interactions", json=body) as resp:
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["id"])


async def click(driver: Driver, p: Place, user: int, entry: dict[str, Any], label: str) -> str:
    body = {
        "channel_id": str(p.channel_id),
        "user_id": str(user),
        "message_id": entry["message_id"],
        "custom_id": controls(entry)[label],
    }
    return await interact(driver, body)


async def answered(driver: Driver, interaction_id: str) -> dict[str, Any]:
    async with driver.http.get(f"{driver.base}/_sandbox/interactions/{interaction_id}") as resp:
        state: dict[str, Any] = await resp.json()
    return state


async def ask(driver: Driver, p: Place, user: int, text: str) -> dict[str, Any]:
    await driver.drain(p.channel_id)
    await driver.say(p.channel_id, user, text)
    (entry,) = await driver.replies(p.channel_id)
    return entry


async def pages_and_reroll(driver: Driver, p: Place) -> tuple[dict[str, Any], dict[str, Any]]:
    help_ = await ask(driver, p, p.owner_id, "!help")
    assert "Page 1 of" in text_of(help_) and "›" in controls(help_), "help comes in pages"
    roll = await ask(driver, p, p.member_id, "!roll 3d6+1")
    assert "Reroll" in controls(roll)
    return help_, roll


async def still_work(driver: Driver, p: Place, help_: dict[str, Any], roll: dict[str, Any]) -> None:
    await driver.drain(p.channel_id)
    await click(driver, p, p.owner_id, help_, "›")
    (turned,) = await driver.replies(p.channel_id)
    assert turned["kind"] == "edit" and "Page 2 of" in text_of(turned)
    await click(driver, p, p.member_id, roll, "Reroll")
    used, again = await driver.replies(p.channel_id, count=2)
    assert used["kind"] == "edit" and "Reroll" not in controls(used)
    assert again["kind"] == "followup" and text_of(again).split("\n")[0].endswith("rerolled")


async def test_components_sent_before_a_rolling_restart_work_after_it(
    env: Env, driver: Driver
) -> None:
    first, second = env.on(0), env.on(1)
    sent = {p.cluster: await pages_and_reroll(driver, p) for p in (first, second)}
    for cluster in range(CLUSTERS):  # one at a time, as `guildhouse restart --rolling` does
        assert await env.supervisor.restart_one(cluster)
    for p in (first, second):
        await still_work(driver, p, *sent[p.cluster])
    # A worker that never saw them: the second worker's components, with both shards now in
    # one process (a new layout of the cluster).
    later = await pages_and_reroll(driver, second)
    await env.supervisor.stop()
    env.supervisor = await start((env.sandbox, env.dsn, env.redis_url, env.prefix), 1)
    await still_work(driver, second, *later)


async def test_expired_components_say_so_and_leave(env: Env, driver: Driver) -> None:
    p = env.on(0)
    help_ = await ask(driver, p, p.owner_id, "!help")
    sid = controls(help_)["›"].rsplit("~", 1)[1]
    conn = await asyncpg.connect(env.dsn)
    try:  # an hour later, as far as the paginator's state is concerned
        await conn.execute(
            "UPDATE component_state SET expires_at = now() - interval '1 second' WHERE id = $1",
            sid,
        )
    finally:
        await conn.close()
    await click(driver, p, p.owner_id, help_, "›")
    gone, told = await driver.replies(p.channel_id, count=2)
    assert gone["kind"] == "edit" and gone["message_id"] == help_["message_id"]
    assert controls(gone) == {}, "the expired buttons are taken off the message"
    assert told["ephemeral"] and text_of(told) == "This has expired."
    # State in the custom_id expires as well.
    brief = await ask(driver, p, p.member_id, "!brief")
    # The button lasts a second, on the worker's wall clock: let its expiry (whole seconds, in
    # the custom_id) pass.
    custom_id = ids.CustomId.parse(controls(brief)["Now"])
    inline = ids.decode_inline(custom_id.ref) if custom_id else None
    assert inline is not None, controls(brief)
    await asyncio.sleep(max(0.0, inline.expires_at - time.time()) + 0.1)
    await click(driver, p, p.member_id, brief, "Now")
    gone, told = await driver.replies(p.channel_id, count=2)
    assert controls(gone) == {} and told["ephemeral"] and text_of(told) == "This has expired."


async def test_a_double_click_or_a_retry_acts_once(env: Env, driver: Driver) -> None:
    p = env.on(1)
    roll = await ask(driver, p, p.member_id, "!roll 2d10")
    ids = await asyncio.gather(*(click(driver, p, p.member_id, roll, "Reroll") for _ in range(2)))
    found = await driver.replies(p.channel_id, count=10, wait=4)
    rerolls = [e for e in found if e["kind"] == "followup"]
    assert len(rerolls) == 1, found
    for iid in ids:  # both clicks were answered (the second without a change)
        state = await answered(driver, iid)
        assert state["response_type"] in (6, 7) and not state["late"], state
    # Discord delivers the winning click again: nothing more happens.
    async with driver.http.post(
        f"{driver.base}/_sandbox/redeliveries", json={"id": ids[0]}
    ) as resp:
        assert resp.status == 200
    assert await driver.replies(p.channel_id, wait=2) == []
    # Someone else's click on a roll is refused, privately, and leaves the button alone.
    fresh = await ask(driver, p, p.member_id, "!roll d6")
    await click(driver, p, p.other_id, fresh, "Reroll")
    (refusal,) = await driver.replies(p.channel_id)
    assert refusal["ephemeral"] and "Only whoever rolled" in text_of(refusal)


async def test_a_form_refuses_abc_and_takes_50(env: Env, driver: Driver) -> None:
    p = env.on(0)
    offer = await ask(driver, p, p.member_id, "!bet")
    await click(driver, p, p.member_id, offer, "Bet")
    (form,) = await driver.replies(p.channel_id)
    assert form["kind"] == "modal" and form["title"] == "Place a bet"
    assert form["user_id"] == str(p.member_id)
    (amount,) = form["inputs"]
    body = {"channel_id": str(p.channel_id), "user_id": str(p.member_id)}
    await interact(driver, {**body, "fields": {amount["custom_id"]: "abc"}})
    (refused,) = await driver.replies(p.channel_id)
    assert refused["ephemeral"] and "**Amount** must be a whole number, not `abc`" in text_of(
        refused
    )
    # Its button opens the form again, with what was typed.
    await click(driver, p, p.member_id, refused, "Fix it")
    (again,) = await driver.replies(p.channel_id)
    assert again["kind"] == "modal" and again["inputs"][0]["value"] == "abc"
    await interact(driver, {**body, "fields": {amount["custom_id"]: "50"}})
    (placed,) = await driver.replies(p.channel_id)
    assert not placed["ephemeral"] and text_of(placed).endswith(" bets 50.")


async def test_a_member_menu_resolves_the_member(env: Env, driver: Driver) -> None:
    p = env.on(1)
    menu = await ask(driver, p, p.member_id, "!pick")
    body = {
        "channel_id": str(p.channel_id),
        "user_id": str(p.member_id),
        "message_id": menu["message_id"],
        "custom_id": controls(menu)["Who?"],
        "values": [str(p.other_id)],
    }
    await interact(driver, body)
    (picked,) = await driver.replies(p.channel_id)
    assert picked["ephemeral"]
    text = text_of(picked)
    assert text.startswith("Picked member ") and f"({p.other_id}), joined " in text


async def test_slow_work_is_deferred_in_time_also_under_load(env: Env, driver: Driver) -> None:
    p = env.on(0)
    slow = await ask(driver, p, p.member_id, "!slow")
    iid = await click(driver, p, p.member_id, slow, "Think")
    (done,) = await driver.replies(p.channel_id, wait=10)
    assert done["kind"] == "edit" and text_of(done) == "Done after a long think."
    state = await answered(driver, iid)
    assert state["response_type"] == 6 and not state["late"]
    # Forty presses at once, with commands arriving meanwhile: every one answered in time.
    tap = await ask(driver, p, p.member_id, "!tap")
    presses = [click(driver, p, user, tap, "Tap") for user in (p.member_id, p.other_id) * 20]
    chatter = [driver.say(p.channel_id, p.owner_id, f"!roll {n}d6") for n in range(1, 11)]
    ids = (await asyncio.gather(*presses, *chatter))[: len(presses)]
    found = await driver.replies(p.channel_id, count=50, wait=15)
    assert sum(text_of(e) == "Tapped it." for e in found) == len(presses)
    for iid in ids:
        state = await answered(driver, iid)
        assert state["response_type"] == 4 and not state["late"], state
