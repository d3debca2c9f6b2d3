"""A plain discord.py AutoShardedBot (not ours) against the sandbox, changed only in its two
base URLs: the sandbox is a Discord that an unmodified client library works with."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import discord
import discord.gateway
import discord.http
import pytest
import yarl
from discord.ext import commands
from waits import until

from sandbox import Sandbox, SandboxConfig
from sandbox.world import SEND_MESSAGES

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def restore_urls() -> Iterator[None]:
    base, gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    yield
    discord.http.Route.BASE = base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = gateway


@pytest.fixture
async def sb(restore_urls: None) -> AsyncIterator[Sandbox]:
    async with Sandbox(SandboxConfig(guilds=8, members=6, identify_interval=0.1)) as s:
        discord.http.Route.BASE = s.api_url
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(s.gateway_url)
        yield s


class PlainBot(commands.AutoShardedBot):
    def __init__(self, shard_ids: list[int], shard_count: int, *, privileged: bool = False) -> None:
        intents = discord.Intents.all() if privileged else discord.Intents.default()
        intents.message_content = True
        super().__init__(
            command_prefix="!", intents=intents, shard_ids=shard_ids, shard_count=shard_count
        )
        self.ready = asyncio.Event()
        self.seen: list[str] = []

        @self.command()
        async def echo(ctx: commands.Context[PlainBot], *, text: str) -> None:
            await ctx.send(text)

        @self.tree.command()
        async def add(interaction: discord.Interaction, a: int, b: int) -> None:
            await interaction.response.send_message(str(a + b))

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        # A later shard waits out the sandbox's identify interval (0.1 s), as discord.py's
        # default hook waits out Discord's 5 s.
        await asyncio.sleep(0 if initial else 0.15)

    async def on_ready(self) -> None:
        self.ready.set()

    async def on_message(self, message: discord.Message) -> None:
        self.seen.append(message.content)
        await self.process_commands(message)


async def running(
    sb: Sandbox, shard_ids: list[int], shard_count: int
) -> tuple[PlainBot, asyncio.Task[None]]:
    bot = PlainBot(shard_ids, shard_count)
    task = asyncio.create_task(bot.start(sb.token))
    await asyncio.wait_for(bot.ready.wait(), 30)
    return bot, task


async def stop(bot: PlainBot, task: asyncio.Task[None]) -> None:
    await bot.close()
    await task


def place(sb: Sandbox, bot: PlainBot) -> tuple[int, int, int]:
    guild = next(g for g in sb.world.guilds.values() if bot.get_guild(g.id))
    channel = next(c.id for c in guild.channels.values() if c.type == 0)
    user = next(m for m in guild.members if m != sb.world.bot.id)
    return guild.id, channel, user


async def test_gets_only_its_shards_guilds_and_answers_prefix_and_slash(sb: Sandbox) -> None:
    bot, task = await running(sb, [1, 3], 4)
    try:
        expected = {g.id for g in sb.world.guilds.values() if (g.id >> 22) % 4 in (1, 3)}
        assert {g.id for g in bot.guilds} == expected
        assert all(g.shard_id in (1, 3) for g in bot.guilds)
        await bot.tree.sync()
        _, channel, user = place(sb, bot)
        await sb.send_message(channel, user, "!echo hello there")
        (reply,) = await sb.outbox(channel, wait=5)
        assert reply["content"] == "hello there"
        await sb.send_interaction(
            channel, user, "add", [{"name": "a", "value": 2}, {"name": "b", "value": 40}]
        )
        replies = await sb.outbox(channel, after=reply["seq"], wait=5)
        assert replies[0]["kind"] == "interaction_response" and replies[0]["content"] == "42"
    finally:
        await stop(bot, task)


async def test_resumes_after_a_dropped_connection_without_losing_events(sb: Sandbox) -> None:
    bot, task = await running(sb, [0], 1)
    try:
        _, channel, user = place(sb, bot)
        await sb.fault("drop", shard=0)
        for i in range(5):  # sent while the shard is away
            await sb.send_message(channel, user, f"during {i}")
        await until(
            "the five messages sent while the shard was away",
            lambda: sum(s.startswith("during") for s in bot.seen) >= 5,
            within=10,
        )
        assert [s for s in bot.seen if s.startswith("during")] == [f"during {i}" for i in range(5)]
        assert sb.stats()["identifies_per_bucket"] == {"0": 1}  # resumed, not re-identified
    finally:
        await stop(bot, task)


async def test_honours_a_global_429(sb: Sandbox) -> None:
    bot, task = await running(sb, [0], 1)
    try:
        _, channel, _ = place(sb, bot)
        await sb.fault(
            "ratelimit",
            route="POST /channels/{channel_id}/messages",
            count=1,
            is_global=True,
            retry_after=0.5,
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        message = await bot.get_channel(channel).send("after the wait")  # type: ignore[union-attr]
        assert message.content == "after the wait"
        assert loop.time() - started >= 0.45  # it waited out retry_after, then retried
        assert sb.stats()["rate_limited"]["forced_global"] == 1
    finally:
        await stop(bot, task)


async def test_missing_permission_is_50013(sb: Sandbox) -> None:
    bot, task = await running(sb, [0], 1)
    try:
        guild_id, channel, _ = place(sb, bot)
        guild = sb.world.guilds[guild_id]
        guild.channels[channel].overwrites.append(
            {"id": guild_id, "type": 0, "allow": 0, "deny": SEND_MESSAGES}
        )
        for role in guild.roles.values():
            role.permissions &= ~SEND_MESSAGES
        with pytest.raises(discord.Forbidden) as info:
            await bot.get_channel(channel).send("no")  # type: ignore[union-attr]
        assert info.value.code == 50013
    finally:
        await stop(bot, task)


async def test_traffic_generator_measures_command_round_trips(sb: Sandbox) -> None:
    from sandbox.traffic import generate

    bot, task = await running(sb, [0], 1)
    try:
        report = await generate(
            sb, rate=40, duration=1.0, commands=("!echo hi",), command_share=0.5, seed=3
        )
        assert report.sent == 40
        assert 0 < report.commands < 40
        assert report.answered == report.commands == len(report.round_trips)
        p50, p99 = report.percentile(0.5), report.percentile(0.99)
        assert p50 is not None and p99 is not None and 0 < p50 <= p99
        from sandbox.traffic import CHAT

        chat = [s for s in bot.seen if s in CHAT]
        assert len(chat) == report.sent - report.commands
    finally:
        await stop(bot, task)


class EventBot(PlainBot):
    def __init__(self) -> None:
        super().__init__([0], 1, privileged=True)
        self.events: list[tuple[str, int]] = []

        @self.command()
        async def menu(ctx: commands.Context[EventBot]) -> None:
            view = discord.ui.View()
            button: discord.ui.Button[discord.ui.View] = discord.ui.Button(
                label="Go", custom_id="go"
            )

            async def clicked(interaction: discord.Interaction) -> None:
                await interaction.response.send_message(f"clicked by {interaction.user.id}")

            button.callback = clicked  # type: ignore[method-assign]
            view.add_item(button)
            await ctx.send("pick", view=view)

    async def on_member_join(self, member: discord.Member) -> None:
        self.events.append(("join", member.id))

    async def on_raw_member_remove(self, payload: discord.RawMemberRemoveEvent) -> None:
        self.events.append(("leave", payload.user.id))

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        self.events.append(("reaction", payload.user_id))

    async def on_guild_remove(self, guild: discord.Guild) -> None:
        self.events.append(("guild_remove", guild.id))


async def test_member_reaction_guild_events_and_buttons(sb: Sandbox) -> None:
    bot = EventBot()
    task = asyncio.create_task(bot.start(sb.token))
    await asyncio.wait_for(bot.ready.wait(), 30)
    try:
        guild_id, channel, user = place(sb, bot)
        newcomer = next(
            u for u in sb.world.users if all(u not in g.members for g in sb.world.guilds.values())
        )
        await sb.event("member_add", {"guild_id": guild_id, "user_id": newcomer})
        await sb.event("member_remove", {"guild_id": guild_id, "user_id": newcomer})
        await sb.send_message(channel, user, "!menu")
        (menu,) = await sb.outbox(channel, wait=5)
        assert menu["components"][0]["components"][0]["custom_id"] == "go"
        await sb.event(
            "reaction",
            {
                "guild_id": guild_id,
                "channel_id": channel,
                "message_id": menu["message_id"],
                "user_id": user,
            },
        )
        await sb.click(channel, user, int(menu["message_id"]), "go")
        (answer,) = await sb.outbox(channel, after=menu["seq"], wait=5)
        assert answer["content"] == f"clicked by {user}"
        await sb.event("guild_delete", {"guild_id": guild_id})
        await until("the four events dispatched", lambda: len(bot.events) >= 4, within=5)
        assert bot.events == [
            ("join", newcomer),
            ("leave", newcomer),
            ("reaction", user),
            ("guild_remove", guild_id),
        ]
        assert bot.get_guild(guild_id) is None
    finally:
        await bot.close()
        await task


class WhoisBot(PlainBot):
    """No members intent (discord.py's default), and a command that takes a member by name."""

    def __init__(self) -> None:
        super().__init__([0], 1)

        @self.command()
        async def whois(ctx: commands.Context[WhoisBot], member: discord.Member) -> None:
            await ctx.send(f"found {member.id}")


async def test_members_by_name_without_the_members_intent(sb: Sandbox) -> None:
    # discord.py's member converter asks the gateway (op 8, a query with limit 100): Discord
    # answers that without GUILD_MEMBERS, and so must the sandbox, not close the shard.
    bot = WhoisBot()
    task = asyncio.create_task(bot.start(sb.token))
    await asyncio.wait_for(bot.ready.wait(), 30)
    try:
        assert not bot.intents.members
        guild_id, channel, user = place(sb, bot)
        members = sb.world.guilds[guild_id].members
        other = next(m for m in members if m not in (user, sb.world.bot.id))
        name = sb.world.users[other].username
        guild = bot.get_guild(guild_id)
        assert guild is not None and guild.get_member(other) is None  # not cached: no intent
        found = await guild.query_members(name[:-1].upper(), limit=100)
        assert other in {m.id for m in found}
        await sb.send_message(channel, user, f"!whois {name}")
        (reply,) = await sb.outbox(channel, wait=5)
        assert reply["content"] == f"found {other}"
        assert "4014" not in sb.stats()["close_codes"]
        assert not bot.shards[0].is_closed()
    finally:
        await stop(bot, task)
