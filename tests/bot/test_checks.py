"""Permission levels (bot/checks.py): `level_of` computes a member's guild permissions from
their role ids in one pass; it must agree with discord.py's own `Member.guild_permissions` for
every mix of roles, ownership, configured roles and timeouts."""

from __future__ import annotations

import datetime
import itertools
from types import SimpleNamespace
from typing import Any

import discord
import pytest

from bot.checks import _MOD_PERMISSIONS, Level, level_of
from bot.guild_settings import GuildSettings
from bot.guildhouse import intents

GUILD, OWNER, USER, BOT_OWNER = 111, 1 << 40, 2 << 40, 3 << 40
P = discord.Permissions
# role id -> permissions: @everyone (the guild's id), then one role per kind of power.
ROLES = {
    GUILD: P(send_messages=True, read_messages=True),
    10: P(manage_messages=True),
    11: P(kick_members=True),
    12: P(manage_guild=True),
    13: P(administrator=True),
    14: P(moderate_members=True, ban_members=True),
    15: P(embed_links=True),  # no power at all
    16: P(),  # the guild's configured moderator role
    17: P(),  # the guild's configured admin role
}


def reference(member: discord.Member, settings: GuildSettings) -> Level:
    """What `level_of` computed before, from discord.py's own permission calculation."""
    perms = member.guild_permissions
    role_ids = {r.id for r in member.roles}
    if (
        perms.administrator
        or perms.manage_guild
        or member.guild.owner_id == member.id
        or role_ids & settings.admin_roles
    ):
        return Level.ADMIN
    if any(getattr(perms, p) for p in _MOD_PERMISSIONS) or role_ids & settings.mod_roles:
        return Level.MODERATOR
    return Level.EVERYONE


@pytest.fixture
def guild() -> discord.Guild:
    client = discord.Client(intents=intents())
    state = client._connection
    data: dict[str, Any] = {
        "id": str(GUILD),
        "name": "Table",
        "owner_id": str(OWNER),
        "roles": [
            {"id": str(rid), "name": f"r{rid}", "permissions": str(p.value), "position": i}
            for i, (rid, p) in enumerate(ROLES.items())
        ],
        "channels": [],
    }
    return discord.Guild(state=state, data=data)  # type: ignore[arg-type]


def member(guild: discord.Guild, user_id: int, roles: tuple[int, ...], timed_out: bool) -> Any:
    until = discord.utils.utcnow() + datetime.timedelta(hours=1) if timed_out else None
    data = {
        "user": {"id": str(user_id), "username": "ann", "discriminator": "0", "avatar": None},
        "roles": [str(r) for r in roles],
        "joined_at": "2026-01-01T00:00:00+00:00",
        "flags": 0,
        "communication_disabled_until": until.isoformat() if until else None,
    }
    return discord.Member(data=data, guild=guild, state=guild._state)  # type: ignore[arg-type]


def bot_with(settings: GuildSettings) -> Any:
    async def get(_: int) -> GuildSettings:
        return settings

    return SimpleNamespace(
        config=SimpleNamespace(owner_ids=(BOT_OWNER,)),
        guild_settings=SimpleNamespace(get=get),
    )


async def test_level_of_agrees_with_discordpy_permissions(guild: discord.Guild) -> None:
    settings = GuildSettings(GUILD, mod_roles=frozenset({16}), admin_roles=frozenset({17}))
    bot = bot_with(settings)
    kinds = [r for r in ROLES if r != GUILD]
    seen = set()
    for n in range(3):
        for roles in itertools.combinations(kinds, n):
            for user_id, timed_out in itertools.product((USER, OWNER), (False, True)):
                m = member(guild, user_id, roles, timed_out)
                got = await level_of(bot, m, guild)
                assert got == reference(m, settings), (roles, user_id, timed_out)
                seen.add(got)
    assert seen == {Level.EVERYONE, Level.MODERATOR, Level.ADMIN}
    # A timed-out moderator is no moderator (discord.py masks the permissions); the role
    # configured in the guild's settings still counts, as it did.
    assert await level_of(bot, member(guild, USER, (10,), True), guild) == Level.EVERYONE
    assert await level_of(bot, member(guild, USER, (16,), True), guild) == Level.MODERATOR
    assert await level_of(bot, member(guild, USER, (13,), True), guild) == Level.ADMIN


async def test_bot_owners_and_strangers(guild: discord.Guild) -> None:
    bot = bot_with(GuildSettings(GUILD))
    assert await level_of(bot, member(guild, BOT_OWNER, (), False), guild) == Level.OWNER
    assert await level_of(bot, member(guild, USER, (13,), False), None) == Level.EVERYONE
