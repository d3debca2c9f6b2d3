"""discord.py's own moderation calls against the sandbox: purge (history pages, a bulk delete,
single deletes for messages past 14 days), timeouts, role edits, kicks, bans with a purge, the
paginated ban list and the audit log: an unmodified library gets what Discord would give it."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator, Iterator

import discord
import discord.gateway
import discord.http
import pytest
import yarl

from sandbox import Sandbox, SandboxConfig
from sandbox.ratelimit import Limits

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def restore_urls() -> Iterator[None]:
    base, gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    yield
    discord.http.Route.BASE = base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = gateway


class Client(discord.Client):
    def __init__(self) -> None:
        super().__init__(intents=discord.Intents.all())
        self.ready = asyncio.Event()
        self.bans: asyncio.Queue[int] = asyncio.Queue()
        self.entries: asyncio.Queue[discord.AuditLogEntry] = asyncio.Queue()

    async def on_ready(self) -> None:
        self.ready.set()

    async def on_member_ban(self, guild: discord.Guild, user: discord.User) -> None:
        await self.bans.put(user.id)

    async def on_audit_log_entry_create(self, entry: discord.AuditLogEntry) -> None:
        await self.entries.put(entry)


@pytest.fixture
async def client(restore_urls: None) -> AsyncIterator[tuple[Sandbox, Client]]:
    config = SandboxConfig(guilds=1, members=12, limits=Limits(route_limit=1000))
    async with Sandbox(config) as sb:
        discord.http.Route.BASE = sb.api_url
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(sb.gateway_url)
        bot = Client()
        task = asyncio.create_task(bot.start(sb.token))
        await asyncio.wait_for(bot.ready.wait(), 30)
        try:
            yield sb, bot
        finally:
            await bot.close()
            await task


async def test_purge_timeout_roles_kick_ban_and_the_audit_log(
    client: tuple[Sandbox, Client],
) -> None:
    sb, bot = client
    world_guild = next(iter(sb.world.guilds.values()))
    guild = bot.get_guild(world_guild.id)
    assert guild is not None
    channel = discord.utils.get(guild.text_channels, name="general")
    assert channel is not None
    plain = [
        u
        for u, m in world_guild.members.items()
        if not m.roles and u not in (world_guild.owner_id, sb.world.bot.id)
    ]
    # Purge: 30 recent messages go in one bulk delete, 2 from 20 days ago one by one.
    for _ in range(2):
        await sb.send_message(channel.id, plain[0], "ancient", age=20 * 86400)
    for i in range(30):
        await sb.send_message(channel.id, plain[i % 3], f"spam {i}")
    deleted = await channel.purge(limit=100, reason="clean up")
    assert len(deleted) == 32 and sb.rest.messages[channel.id] == {}
    # Timeout, nick and a role.
    member = await guild.fetch_member(plain[0])
    until = discord.utils.utcnow() + datetime.timedelta(hours=1)
    await member.timeout(until, reason="calm down")
    assert world_guild.members[plain[0]].communication_disabled_until is not None
    moderators = discord.utils.get(guild.roles, name="Moderators")
    assert moderators is not None
    await member.add_roles(moderators, reason="promoted")
    await member.edit(nick="Calm")
    assert world_guild.members[plain[0]].nick == "Calm"
    with pytest.raises(discord.HTTPException) as too_long:
        await member.timeout(datetime.timedelta(days=29))
    assert too_long.value.status == 400 and too_long.value.code == 50035
    owner = await guild.fetch_member(world_guild.owner_id)
    with pytest.raises(discord.Forbidden) as forbidden:
        await owner.kick()
    assert forbidden.value.code == 50013
    # Kick one, ban three (a purge of the last hour with the first), page through the bans.
    await guild.kick(discord.Object(plain[1]), reason="bye")
    await sb.send_message(channel.id, plain[2], "last words")
    await guild.ban(discord.Object(plain[2]), reason="spam", delete_message_seconds=3600)
    assert sb.rest.messages[channel.id] == {}
    for user in plain[3:5]:
        await guild.ban(discord.Object(user))
    assert {await bot.bans.get() for _ in range(3)} == {plain[2], *plain[3:5]}
    banned = [entry.user.id async for entry in guild.bans(limit=None)]
    assert banned == sorted([plain[2], *plain[3:5]])
    assert [e.user.id async for e in guild.bans(limit=2)] == banned[:2]
    ban = await guild.fetch_ban(discord.Object(plain[2]))
    assert ban.reason == "spam"
    await guild.unban(discord.Object(plain[2]))
    with pytest.raises(discord.NotFound) as gone:
        await guild.fetch_ban(discord.Object(plain[2]))
    assert gone.value.code == 10026
    # The audit log, as discord.py reads it.
    entries = [e async for e in guild.audit_logs(limit=None)]
    kinds = [e.action for e in entries]
    assert kinds.count(discord.AuditLogAction.ban) == 3 and kinds[0] == discord.AuditLogAction.unban
    kick = next(e for e in entries if e.action == discord.AuditLogAction.kick)
    assert kick.reason == "bye" and kick.target is not None and kick.target.id == plain[1]
    bulk = [e async for e in guild.audit_logs(action=discord.AuditLogAction.message_bulk_delete)]
    assert len(bulk) == 1 and bulk[0].reason == "clean up"
    # And as they happened, through the gateway (on_audit_log_entry_create), in order.
    live = [bot.entries.get_nowait() for _ in range(bot.entries.qsize())]
    assert [e.id for e in live] == [e.id for e in reversed(entries)]
    assert any(e.action == discord.AuditLogAction.kick and e.reason == "bye" for e in live)
