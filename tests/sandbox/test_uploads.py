"""Files a bot uploads (multipart/form-data, `payload_json` and `files[n]`, as discord.py sends
them): kept by the sandbox, described in the message's attachments, served at their URL and
fetched through the control API; in a channel message, an interaction response and an edit."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Iterator

import aiohttp
import discord
import discord.gateway
import discord.http
import pytest
import yarl
from discord.ext import commands
from moderation_kit import conforms, load_openapi

from sandbox import Sandbox, SandboxConfig

pytestmark = pytest.mark.timeout(90)
CSV = b"user,xp\n1,10\n2,20\n" + bytes(range(256))  # not only text: every byte must survive
OPENAPI = load_openapi()


@pytest.fixture
def restore_urls() -> Iterator[None]:
    base, gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    yield
    discord.http.Route.BASE = base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = gateway


class Uploader(commands.Bot):
    def __init__(self) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        super().__init__(command_prefix="!", intents=intents)
        self.ready = asyncio.Event()

        @self.command()
        async def export(ctx: commands.Context[Uploader]) -> None:
            sent = await ctx.send("stats", file=discord.File(io.BytesIO(CSV), "stats.csv"))
            await sent.edit(content="stats (edited)")  # the attachment stays

        @self.tree.command()
        async def report(interaction: discord.Interaction) -> None:
            files = [
                discord.File(io.BytesIO(CSV), "a.csv", description="first"),
                discord.File(io.BytesIO(b"second"), "b.txt"),
            ]
            await interaction.response.send_message("report", files=files)

    async def on_ready(self) -> None:
        self.ready.set()


@pytest.fixture
async def bot(restore_urls: None) -> AsyncIterator[tuple[Sandbox, Uploader]]:
    async with Sandbox(SandboxConfig(guilds=1, members=4, identify_interval=0.1)) as sb:
        discord.http.Route.BASE = sb.api_url
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(sb.gateway_url)
        client = Uploader()
        task = asyncio.create_task(client.start(sb.token))
        await asyncio.wait_for(client.ready.wait(), 30)
        try:
            yield sb, client
        finally:
            await client.close()
            await task


async def fetch(url: str) -> tuple[int, bytes, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.read(), resp.headers.get("Content-Type", "")


async def test_a_file_sent_with_a_message_is_kept_and_served(
    bot: tuple[Sandbox, Uploader],
) -> None:
    sb, _ = bot
    guild = next(iter(sb.world.guilds.values()))
    channel = next(c.id for c in guild.channels.values() if c.name == "general")
    user = next(u for u in guild.members if u != sb.world.bot.id)
    await sb.send_message(channel, user, "!export")
    sent, edited = await sb.outbox(channel, wait=5), []
    while not edited:
        edited = [e for e in await sb.outbox(channel, after=sent[0]["seq"], wait=5)]
    [attachment] = sent[0]["attachments"]
    assert attachment["filename"] == "stats.csv" and attachment["size"] == len(CSV)
    assert edited[0]["content"] == "stats (edited)" and edited[0]["attachments"] == [attachment]
    status, data, _ = await fetch(attachment["url"])
    assert status == 200 and data == CSV
    status, data, _ = await fetch(f"{sb.control_url}/_sandbox/attachments/{attachment['id']}")
    assert status == 200 and data == CSV
    message = sb.rest.messages[channel][int(sent[0]["message_id"])]
    assert conforms(OPENAPI, "MessageResponse", message) == []
    assert (await fetch(f"{sb.control_url}/_sandbox/attachments/1"))[0] == 404
    assert (await fetch(f"{sb.control_url}/_sandbox/attachments/abc"))[0] == 400
    wrong_name = attachment["url"].rsplit("/", 1)[0] + "/other.csv"
    assert (await fetch(wrong_name))[0] == 404


async def test_files_in_an_interaction_response(bot: tuple[Sandbox, Uploader]) -> None:
    sb, client = bot
    await client.tree.sync()
    guild = next(iter(sb.world.guilds.values()))
    channel = next(c.id for c in guild.channels.values() if c.name == "general")
    user = next(u for u in guild.members if u != sb.world.bot.id)
    await sb.send_interaction(channel, user, "report")
    [entry] = await sb.outbox(channel, wait=5)
    assert entry["kind"] == "interaction_response" and entry["content"] == "report"
    first, second = entry["attachments"]
    assert (first["filename"], first["description"]) == ("a.csv", "first")
    assert (await fetch(first["url"]))[1] == CSV
    assert (await fetch(second["url"]))[1] == b"second"


async def test_too_many_or_too_large_files() -> None:
    async with Sandbox(SandboxConfig(guilds=1, members=3)) as sb:
        guild = next(iter(sb.world.guilds.values()))
        channel = next(c.id for c in guild.channels.values() if c.name == "general")
        url = f"{sb.api_url}/channels/{channel}/messages"
        headers = {"Authorization": f"Bot {sb.token}"}

        def form(*sizes: int) -> aiohttp.FormData:
            data = aiohttp.FormData()
            data.add_field("payload_json", '{"content": "x"}', content_type="application/json")
            for i, size in enumerate(sizes):
                data.add_field(f"files[{i}]", b"a" * size, filename=f"{i}.bin")
            return data

        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.post(url, data=form(*[1] * 11)) as resp:
                assert resp.status == 400 and (await resp.json())["code"] == 30015
            async with http.post(url, data=form(10 * 1024 * 1024 + 1)) as resp:
                assert resp.status == 413 and (await resp.json())["code"] == 40005
            async with http.post(url, data=form(*[1] * 10)) as resp:
                assert resp.status == 200 and len((await resp.json())["attachments"]) == 10
