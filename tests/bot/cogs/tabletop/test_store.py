"""The tabletop feature's SQL against real PostgreSQL: limits under concurrency, macro lookup
order, history pruning, the player list."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from bot.cogs.tabletop import store
from bot.cogs.tabletop.initiative import Combatant as InitCombatant
from bot.cogs.tabletop.initiative import roll_initiative
from bot.cogs.tabletop.initiative_orders import order_from_json, order_to_json, render_order

CHANNEL, GUILD, ANN, BOB = 10, 20, 1, 2


async def test_macro_limit_holds_under_concurrent_saves(pool: asyncpg.Pool) -> None:
    limits = store.Limits(macros_per_user_channel=5)

    async def save(n: int) -> bool | str:
        try:
            return await store.save_macro(
                pool,
                scope="channel",
                scope_id=CHANNEL,
                owner_id=ANN,
                name=f"m{n}",
                expression="2d6",
                limits=limits,
            )
        except store.StoreError as exc:
            return str(exc)

    results = await asyncio.gather(*(save(n) for n in range(12)))
    assert sum(r is True for r in results) == 5
    refused = [r for r in results if isinstance(r, str)]
    assert len(refused) == 7 and all("5 macros in this channel" in r for r in refused)
    # Replacing an existing macro is not a new one: allowed at the limit.
    saved = next(f"m{n}" for n, r in enumerate(results) if r is True)
    again = await store.save_macro(
        pool,
        scope="channel",
        scope_id=CHANNEL,
        owner_id=ANN,
        name=saved,
        expression="3d6",
        limits=limits,
    )
    assert again is False


async def test_own_macro_shadows_the_servers_and_others_are_private(pool: asyncpg.Pool) -> None:
    await store.save_macro(
        pool, scope="guild", scope_id=GUILD, owner_id=0, name="hit", expression="2d6"
    )
    await store.save_macro(
        pool, scope="channel", scope_id=CHANNEL, owner_id=ANN, name="hit", expression="6! tn4"
    )
    ann = await store.find_macro(pool, channel_id=CHANNEL, guild_id=GUILD, user_id=ANN, name="hit")
    bob = await store.find_macro(pool, channel_id=CHANNEL, guild_id=GUILD, user_id=BOB, name="hit")
    assert ann is not None and ann.expression == "6! tn4" and ann.scope == "channel"
    assert bob is not None and bob.expression == "2d6" and bob.scope == "guild"
    # In a DM (no guild) only one's own macros exist.
    assert (
        await store.find_macro(pool, channel_id=99, guild_id=None, user_id=BOB, name="hit") is None
    )
    listed = await store.list_macros(pool, channel_id=CHANNEL, guild_id=GUILD, user_id=ANN)
    assert [(m.scope, m.name) for m in listed] == [("channel", "hit"), ("guild", "hit")]
    assert (
        await store.remove_macro(pool, scope="channel", scope_id=CHANNEL, owner_id=BOB, name="hit")
        is False
    )


@pytest.mark.parametrize("bad", ["", "-x", "has space", "x" * 33, "ünï", "a/b"])
def test_macro_names_are_validated(bad: str) -> None:
    with pytest.raises(store.StoreError, match="not a macro name"):
        store.validate_macro_name(bad)


def test_macro_names_are_folded_to_lower_case() -> None:
    assert store.validate_macro_name(" Dodge-2 ") == "dodge-2"


async def test_history_keeps_the_newest_per_user_and_channel(pool: asyncpg.Pool) -> None:
    limits = store.Limits(history_kept=5)
    for n in range(12):
        await store.add_roll(
            pool,
            channel_id=CHANNEL,
            user_id=ANN,
            guild_id=GUILD,
            expression=f"{n}d6",
            summary=f"{n}d6 → {n}",
            limits=limits,
        )
    await store.add_roll(
        pool, channel_id=CHANNEL, user_id=BOB, guild_id=GUILD, expression="d20", summary="x"
    )
    rows = await store.history(pool, channel_id=CHANNEL, user_id=ANN, limit=50)
    assert [r["expression"] for r in rows] == [f"{n}d6" for n in range(11, 6, -1)]
    assert len(await store.history(pool, channel_id=CHANNEL, user_id=BOB)) == 1


async def test_combatants_limit_names_and_players(pool: asyncpg.Pool) -> None:
    limits = store.Limits(combatants_per_table=3)
    add = store.add_combatant
    assert await add(pool, CHANNEL, GUILD, store.Combatant("Ann", ANN, False, 2, 5), replace=False)
    assert await add(
        pool, CHANNEL, GUILD, store.Combatant("Troll", None, True, 1, 4), replace=False
    )
    with pytest.raises(store.StoreError, match="already a"):
        await add(pool, CHANNEL, GUILD, store.Combatant("Ann", BOB, False, 1, 0), replace=False)
    # Updating is not adding: allowed at the limit.
    assert not await add(
        pool, CHANNEL, GUILD, store.Combatant("Ann", ANN, False, 3, 6), replace=True, limits=limits
    )
    assert await add(
        pool, CHANNEL, GUILD, store.Combatant("Bob", BOB, False, 1, 3), replace=True, limits=limits
    )
    with pytest.raises(store.StoreError, match="full"):
        await add(
            pool,
            CHANNEL,
            GUILD,
            store.Combatant("Cid", 3, False, 1, 3),
            replace=True,
            limits=limits,
        )
    assert await store.players(pool, CHANNEL) == [ANN, BOB]
    found = await store.find_combatant(pool, CHANNEL, "ann")
    assert found is not None and (found.dice, found.modifier) == (3, 6)
    assert await store.clear_combatants(pool, CHANNEL, npcs_only=True) == 1
    assert [c.name for c in await store.combatants(pool, CHANNEL)] == ["Ann", "Bob"]


async def test_order_round_trips_through_the_table(pool: asyncpg.Pool) -> None:
    import random

    await store.set_gm(pool, CHANNEL, GUILD, ANN)
    order = roll_initiative(
        [InitCombatant("Ann", False, 3, 9), InitCombatant("Troll", True, 1, 4)],
        "sr3",
        random.Random(3),
    )
    await store.save_order(pool, CHANNEL, order_to_json(order))
    table = await store.get_table(pool, CHANNEL)
    assert table is not None and table.gm_id == ANN and table.system == "sr3"
    assert table.last_order is not None
    back = order_from_json(table.last_order)
    assert [(e.combatant.name, e.score, e.passes) for e in back] == [
        (e.combatant.name, e.score, e.passes) for e in order
    ]
    assert render_order(back, "sr3") == render_order(order, "sr3")
    # Changing the system forgets the order rolled under the old one.
    await store.set_system(pool, CHANNEL, GUILD, "cpr")
    table = await store.get_table(pool, CHANNEL)
    assert table is not None and table.system == "cpr" and table.last_order is None
