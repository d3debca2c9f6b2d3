"""bot/dpy/guild_memory.py: guilds in less memory, read as discord.py's own would be."""

from __future__ import annotations

from typing import Any

import discord
import orjson
import pytest

from bot.dpy import guild_memory
from bot.dpy.chat_state import ChatState
from bot.guildhouse import intents
from sandbox.world import World


def _payloads(world: World) -> list[Any]:
    """GUILD_CREATE payloads as the gateway's JSON gives them: every string a new object."""
    return [
        orjson.loads(orjson.dumps(g.gateway_dict(world, with_presences=False)))
        for g in world.guilds.values()
    ]


def _state(world: World) -> ChatState:
    client = discord.AutoShardedClient(intents=intents(), shard_count=1)
    st = ChatState(
        dispatch=lambda *_, **__: None,
        handlers=client._handlers,
        hooks=client._hooks,
        http=client.http,
        intents=intents(),
        shard_count=1,
        member_cache_flags=discord.MemberCacheFlags.none(),
        chunk_guilds_at_startup=False,
        max_messages=None,
    )
    st.user = discord.ClientUser(state=st, data=world.bot.to_dict())  # type: ignore[arg-type]
    return st


@pytest.fixture
def world() -> World:
    return World(guilds=6, members=5, seed=3)


def _view(guild: discord.Guild) -> dict[str, Any]:
    """What Guildhouse (and a cog) can read of a guild."""
    me = guild.me
    return {
        "name": guild.name,
        "afk_timeout": guild.afk_timeout,
        "system_channel": guild.system_channel and guild.system_channel.id,
        "features": list(guild.features),
        "roles": [
            (r.id, r.name, r.permissions.value, r.colour.value, r.position, r.managed)
            for r in guild.roles
        ],
        "bot_role": guild.self_role and guild.self_role.id,
        "channels": [
            (
                c.id,
                c.name,
                c.category_id,
                c.position,
                getattr(c, "bitrate", None),
                getattr(c, "default_auto_archive_duration", None),
                sorted((t.id, o.pair()) for t, o in c.overwrites.items()),
                c.permissions_for(me).value,
                c.permissions_for(guild.default_role).value,
            )
            for c in guild.channels
        ],
        "me": (me.id, me.name, me.display_name, me.bot, [r.id for r in me.roles]),
        "threads": list(guild.threads),
        "stage_instances": list(guild.stage_instances),
        "scheduled_events": list(guild.scheduled_events),
        "soundboard_sounds": list(guild.soundboard_sounds),
        "voice_states": {c.id: c.voice_states for c in guild.voice_channels},
    }


def test_guilds_read_as_discord_py_s_own(world: World) -> None:
    st = _state(world)
    plain = _state(world)
    for data in _payloads(world):
        ours = st._get_create_guild(data)
        theirs = discord.Guild(data=data, state=plain)
        assert isinstance(ours, guild_memory.LeanGuild)
        assert _view(ours) == _view(theirs)
    assert len(st.guilds) == len(world.guilds)


def test_the_caches_are_made_on_first_use(world: World) -> None:
    st = _state(world)
    guild = st._get_create_guild(_payloads(world)[0])
    for name in guild_memory._LAZY:
        assert vars(discord.Guild)[name].__get__(guild) is None, name
    assert guild.get_thread(1) is None
    parent = guild.text_channels[0]
    thread = guild._store_thread(
        {  # type: ignore[typeddict-item]
            "id": "77",
            "guild_id": str(guild.id),
            "parent_id": str(parent.id),
            "owner_id": str(world.bot.id),
            "name": "a thread",
            "type": 11,
            "message_count": 0,
            "member_count": 1,
            "rate_limit_per_user": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": 1440,
                "archive_timestamp": "2024-01-01T00:00:00+00:00",
                "locked": False,
            },
        }
    )
    assert guild.get_thread(77) is thread
    assert guild.get_channel_or_thread(77) is thread
    assert parent.threads == [thread]
    guild._remove_thread(thread)
    assert list(guild.threads) == []


def test_the_bot_s_own_user_is_shared_and_updated_everywhere(world: World) -> None:
    st = _state(world)
    guilds = [st._get_create_guild(data) for data in _payloads(world)]
    users = {id(g.me._user) for g in guilds}
    assert len(users) == 1
    # A member update of the bot in one guild: its user is the same everywhere, as with
    # discord.py's user cache.
    renamed: Any = {**world.bot.to_dict(), "global_name": "Guild House"}
    st.parse_guild_member_update(
        {  # type: ignore[typeddict-item]
            "guild_id": str(guilds[0].id),
            "user": renamed,
            "roles": [str(r.id) for r in guilds[0].me.roles if not r.is_default()],
            "joined_at": guilds[0].me.joined_at.isoformat(),  # type: ignore[union-attr]
            "nick": "GH",
            "flags": 0,
        }
    )
    assert guilds[0].me.display_name == "GH"
    assert [g.me.global_name for g in guilds] == ["Guild House"] * len(guilds)
    assert [g.me.nick for g in guilds[1:]] == [None] * (len(guilds) - 1)


def test_a_guild_whose_copy_of_the_bot_differs_keeps_its_own(world: World) -> None:
    st = _state(world)
    first, second, *_ = _payloads(world)
    for member in second["members"]:
        if member["user"]["id"] == str(world.bot.id):
            member["user"]["username"] = "renamed"
    a = st._get_create_guild(first)
    b = st._get_create_guild(second)
    assert (a.me.name, b.me.name) == ("Guildhouse", "renamed")
    assert a.me._user is not b.me._user


def test_equal_values_are_one_object(world: World) -> None:
    st = _state(world)
    guilds = [st._get_create_guild(data) for data in _payloads(world)]
    everyone = {id(g.default_role.name) for g in guilds}
    assert len(everyone) == 1
    generals = {id(c.name) for g in guilds for c in g.text_channels if c.name == "general"}
    assert len(generals) == 1
    for g in guilds:
        for c in g.channels:
            if c.category_id is not None:
                assert c.category_id is g._channels[c.category_id].id
            for o in c._overwrites:
                if o.id in g._roles:
                    assert o.id is g._roles[o.id].id
            if not c.overwrites:
                assert c._overwrites == ()  # type: ignore[comparison-overlap]


def test_the_table_of_shared_values_is_bounded() -> None:
    shared = guild_memory.SharedValues(limit=3)
    values = [str(i) * 3 for i in range(10)]
    for v in values:
        assert shared(v) is v
    assert len(shared) == 3
    again = "".join(["0", "00"])
    assert shared(again) is values[0]
    late = "".join(["9", "99"])
    assert shared(late) is late
    assert shared(True) is True
    assert shared(None) is None


def test_a_channel_update_fills_its_overwrites_again(world: World) -> None:
    st = _state(world)
    guild = st._get_create_guild(_payloads(world)[0])
    channel = guild.text_channels[0]
    assert channel._overwrites == ()  # type: ignore[comparison-overlap]
    data = orjson.loads(orjson.dumps(world.guilds[guild.id].channels[channel.id].to_dict(world)))
    data["permission_overwrites"] = [{"id": str(guild.id), "type": 0, "allow": "0", "deny": "1024"}]
    st.parse_channel_update(data)
    assert channel.overwrites_for(guild.default_role).view_channel is False
    assert not channel.permissions_for(guild.default_role).view_channel
