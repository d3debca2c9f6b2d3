"""The sandbox's gateway, spoken to over a raw websocket: the protocol as documented."""

from __future__ import annotations

import asyncio
import time
import types
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson
import pytest
import zstandard

from sandbox import Sandbox, SandboxConfig, gateway
from sandbox.world import Member, User

pytestmark = pytest.mark.timeout(60)


class Client:
    """A minimal gateway client that decodes the three transport modes."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, compress: str | None) -> None:
        self.ws = ws
        self.compress = compress
        self._zlib = zlib.decompressobj()
        self._buf = bytearray()
        self._zstd = zstandard.ZstdDecompressor().decompressobj()

    async def recv(self, timeout: float = 5) -> dict[str, Any]:
        while True:
            msg = await asyncio.wait_for(self.ws.receive(), timeout)
            if msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.CLOSING,
            ):
                raise ConnectionError(self.ws.close_code)
            if msg.type == aiohttp.WSMsgType.TEXT:
                assert self.compress is None
                return dict(orjson.loads(msg.data))
            data: bytes = msg.data
            if self.compress == "zlib-stream":
                self._buf.extend(data)
                if data[-4:] != b"\x00\x00\xff\xff":
                    continue
                text = self._zlib.decompress(bytes(self._buf))
                self._buf.clear()
                return dict(orjson.loads(text))
            return dict(orjson.loads(self._zstd.decompress(data)))

    async def send(self, op: int, d: Any) -> None:
        await self.ws.send_str(orjson.dumps({"op": op, "d": d}).decode())

    async def until(self, event: str, timeout: float = 5) -> dict[str, Any]:
        while True:
            payload = await self.recv(timeout)
            if payload.get("t") == event:
                return payload

    async def closed_with(self, timeout: float = 5) -> int | None:
        try:
            while True:
                await self.recv(timeout)
        except ConnectionError:
            return self.ws.close_code


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    config = SandboxConfig(
        guilds=8, members=6, identify_interval=0.3, max_concurrency=2, heartbeat_ms=1000
    )
    async with Sandbox(config) as s:
        yield s


@pytest.fixture
def identify_interval_passes(sb: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Move the gateway's clock past the identify interval (rather than wait that long): after
    it, the same bucket may IDENTIFY again."""
    ahead = [0.0]
    clock = types.SimpleNamespace(monotonic=lambda: time.monotonic() + ahead[0], time=time.time)
    monkeypatch.setattr(gateway, "time", clock)

    def passes() -> None:
        ahead[0] += sb.config.identify_interval

    return passes


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def connect(http: aiohttp.ClientSession, sb: Sandbox, compress: str | None = None) -> Client:
    url = f"{sb.gateway_url}?v=10&encoding=json" + (f"&compress={compress}" if compress else "")
    client = Client(await http.ws_connect(url), compress)
    hello = await client.recv()
    assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] == 1000
    return client


def identify(sb: Sandbox, shard: int = 0, count: int = 1, intents: int = 513) -> dict[str, Any]:
    return {
        "token": sb.token,
        "intents": intents,
        "shard": [shard, count],
        "properties": {"os": "linux", "browser": "test", "device": "test"},
    }


@pytest.mark.parametrize("compress", [None, "zlib-stream", "zstd-stream"])
async def test_ready_then_guild_create_per_guild_of_the_shard(
    sb: Sandbox, http: aiohttp.ClientSession, compress: str | None
) -> None:
    client = await connect(http, sb, compress)
    await client.send(2, identify(sb, shard=1, count=2))
    ready = await client.until("READY")
    d = ready["d"]
    assert d["shard"] == [1, 2] and d["session_id"] and d["resume_gateway_url"] == sb.gateway_url
    assert d["user"]["id"] == str(sb.world.bot.id) and d["application"]["id"]
    expected = {str(g.id) for g in sb.world.guilds.values() if (g.id >> 22) % 2 == 1}
    assert {g["id"] for g in d["guilds"]} == expected
    assert all(g["unavailable"] for g in d["guilds"])
    got = set()
    for _ in expected:
        create = await client.until("GUILD_CREATE")
        got.add(create["d"]["id"])
        assert create["d"]["channels"] and create["d"]["roles"]
        # Without GUILD_MEMBERS only the bot's own member comes along.
        assert [m["user"]["id"] for m in create["d"]["members"]] == [str(sb.world.bot.id)]
    assert got == expected
    await client.send(1, d and ready["s"])
    assert (await client.recv())["op"] == 11


@pytest.mark.parametrize(
    ("first", "code"),
    [
        ((2, {"token": "bad.token.x", "intents": 0, "shard": [0, 1]}), 4004),
        ((3, {"status": "online"}), 4003),
        ((2, {"token": None}), 4004),
    ],
)
async def test_close_codes(
    sb: Sandbox, http: aiohttp.ClientSession, first: tuple[int, Any], code: int
) -> None:
    client = await connect(http, sb)
    await client.send(*first)
    assert await client.closed_with() == code
    assert sb.stats()["close_codes"][str(code)] >= 1


async def test_decode_error_4002(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    client = await connect(http, sb)
    await client.ws.send_str("{not json")
    assert await client.closed_with() == 4002


async def test_invalid_shard_intents_and_double_identify(
    sb: Sandbox, http: aiohttp.ClientSession, identify_interval_passes: Callable[[], None]
) -> None:
    client = await connect(http, sb)
    await client.send(2, identify(sb, shard=2, count=2))
    assert await client.closed_with() == 4010
    client = await connect(http, sb)
    await client.send(2, identify(sb, intents=1 << 40))
    assert await client.closed_with() == 4013
    client = await connect(http, sb)
    await client.send(2, identify(sb))
    await client.until("READY")
    await client.send(2, identify(sb))
    assert await client.closed_with() == 4005
    identify_interval_passes()
    client = await connect(http, sb)
    await client.send(2, identify(sb))
    await client.until("READY")
    await client.send(99, None)
    assert await client.closed_with() == 4001


async def test_too_many_sends_4008(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    client = await connect(http, sb)
    for _ in range(121):
        await client.send(1, None)
    assert await client.closed_with() == 4008


async def test_sends_are_counted_in_fixed_windows_as_discordpy_paces_them(
    http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """discord.py sends up to 110 frames per 60 s window that starts at its first send: 110 at
    the end of one window and 110 at the start of the next are fine (a sliding window would
    close it), also when the next burst arrives a little before 60 s (jitter); the 121st of one
    window is still 4008."""
    clock = [1000.0]
    fake = types.SimpleNamespace(monotonic=lambda: clock[0], time=time.time)
    monkeypatch.setattr(gateway, "time", fake)
    config = SandboxConfig(guilds=1, members=2, identify_interval=0, heartbeat_ms=600_000)
    async with Sandbox(config) as sb:
        client = Client(await http.ws_connect(f"{sb.gateway_url}?v=10&encoding=json"), None)
        assert (await client.recv())["op"] == 10

        async def heartbeats(count: int) -> None:
            """Send them, then read every ACK: the sandbox has counted them at this time."""
            for _ in range(count):
                await client.send(1, None)
            for _ in range(count):
                assert (await client.recv())["op"] == 11

        await heartbeats(1)  # the window starts here
        clock[0] += 59.0
        await heartbeats(109)  # 110 in the first window
        clock[0] += 1.0  # 60 s after the first: a new window
        await heartbeats(110)
        # The client's next window starts 60 s after its first send; its first frame may arrive
        # a little early (jitter), which starts the sandbox's next window too.
        clock[0] += 59.9
        await heartbeats(120)
        await client.send(1, None)  # the 121st of this window
        assert await client.closed_with() == 4008


async def test_missed_heartbeats_close_the_connection(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    client = await connect(http, sb)
    await client.send(2, identify(sb))
    await client.until("READY")
    # Send nothing: after 1.5 heartbeat intervals (+1 s) the sandbox gives up on us.
    assert await client.closed_with(timeout=6) == 4009


async def test_identify_concurrency_gets_op9(
    sb: Sandbox, http: aiohttp.ClientSession, identify_interval_passes: Callable[[], None]
) -> None:
    # max_concurrency 2: shards 0 and 1 are different buckets; 0 and 2 share one.
    a, b, c = [await connect(http, sb) for _ in range(3)]
    await a.send(2, identify(sb, shard=0, count=3))
    await b.send(2, identify(sb, shard=1, count=3))
    await c.send(2, identify(sb, shard=2, count=3))
    assert (await a.until("READY"))["d"]["shard"] == [0, 3]
    assert (await b.until("READY"))["d"]["shard"] == [1, 3]
    invalid = await c.recv()
    assert invalid["op"] == 9 and invalid["d"] is False
    stats = sb.stats()
    assert stats["op9"] == 1 and stats["identifies_per_bucket"] == {"0": 1, "1": 1}
    identify_interval_passes()  # after the interval the same bucket may identify again
    await c.send(2, identify(sb, shard=2, count=3))
    assert (await c.until("READY"))["d"]["shard"] == [2, 3]


async def test_resume_replays_missed_events(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    client = await connect(http, sb, "zlib-stream")
    await client.send(2, identify(sb, intents=513 | (1 << 15)))
    ready = await client.until("READY")
    session, seq = ready["d"]["session_id"], ready["s"]
    guild = next(iter(sb.world.guilds.values()))
    channel = next(c for c in guild.channels.values() if c.type == 0)
    author = next(m for m in guild.members if m != sb.world.bot.id)
    while True:  # read up to the last GUILD_CREATE
        try:
            seq = (await client.recv(timeout=0.5))["s"] or seq
        except TimeoutError:
            break
    await client.ws.close()
    for i in range(3):  # while we are away
        await sb.send_message(channel.id, author, f"missed {i}")
    client = await connect(http, sb, "zlib-stream")
    await client.send(6, {"token": sb.token, "session_id": session, "seq": seq})
    got = [await client.until("MESSAGE_CREATE") for _ in range(3)]
    assert [g["d"]["content"] for g in got] == ["missed 0", "missed 1", "missed 2"]
    assert [g["s"] for g in got] == [seq + 1, seq + 2, seq + 3]
    await client.until("RESUMED")
    # An unknown session can't be resumed.
    other = await connect(http, sb)
    await other.send(6, {"token": sb.token, "session_id": "nope", "seq": 1})
    assert (await other.recv())["op"] == 9


async def test_content_needs_the_message_content_intent(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    guild = next(g for g in sb.world.guilds.values() if (g.id >> 22) % 1 == 0)
    channel = next(c for c in guild.channels.values() if c.type == 0)
    author = next(m for m in guild.members if m != sb.world.bot.id)
    without = await connect(http, sb)
    await without.send(2, identify(sb, intents=1 | (1 << 9)))
    await without.until("READY")
    await sb.send_message(channel.id, author, "secret words")
    msg = await without.until("MESSAGE_CREATE")
    assert msg["d"]["content"] == "" and msg["d"]["author"]["id"] == str(author)


async def test_dm_events_go_to_shard_zero_only(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    clients = []
    for shard in (0, 1):
        c = await connect(http, sb)
        await c.send(2, identify(sb, shard=shard, count=2, intents=1 | (1 << 12) | (1 << 15)))
        await c.until("READY")
        clients.append(c)
    user = next(iter(sb.world.guilds.values())).owner_id
    dm = sb.world.dm_channel(user)
    await sb.send_message(dm.id, user, "hello bot")
    assert (await clients[0].until("MESSAGE_CREATE"))["d"]["content"] == "hello bot"
    with pytest.raises(TimeoutError):
        await clients[1].until("MESSAGE_CREATE", timeout=0.5)


# -- REQUEST_GUILD_MEMBERS (op 8) ---------------------------------------------------------------

GUILDS, GUILD_MEMBERS, GUILD_PRESENCES = 1 << 0, 1 << 1, 1 << 8


async def identified(http: aiohttp.ClientSession, sb: Sandbox, intents: int) -> Client:
    client = await connect(http, sb)
    await client.send(2, identify(sb, intents=intents))
    await client.until("READY")
    return client


async def still_open(client: Client) -> None:
    """The connection survived: a heartbeat is still answered."""
    await client.send(1, None)
    while (await client.recv())["op"] != 11:
        pass


def add_members(sb: Sandbox, guild_id: int, prefix: str, count: int) -> list[int]:
    """New users with usernames `<prefix><n>`, made members of the guild."""
    guild = sb.world.guilds[guild_id]
    ids = []
    for i in range(count):
        user = User(sb.world.ids.now(), f"{prefix}{i}")
        sb.world.users[user.id] = user
        guild.members[user.id] = Member(user.id, [], 1_600_000_000.0)
        ids.append(user.id)
    return ids


async def test_request_guild_members_whole_list_in_chunks_of_1000(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    guild = next(iter(sb.world.guilds.values()))
    add_members(sb, guild.id, "crowd", 1500)
    client = await identified(http, sb, GUILDS | GUILD_MEMBERS)
    await client.send(8, {"guild_id": str(guild.id), "query": "", "limit": 0, "nonce": "n1"})
    chunks = [(await client.until("GUILD_MEMBERS_CHUNK"))["d"] for _ in range(2)]
    assert [c["chunk_index"] for c in chunks] == [0, 1]
    assert all(c["chunk_count"] == 2 and c["nonce"] == "n1" for c in chunks)
    assert [len(c["members"]) for c in chunks] == [1000, len(guild.members) - 1000]
    got = [m["user"]["id"] for c in chunks for m in c["members"]]
    assert sorted(got) == sorted(str(m) for m in guild.members)
    assert all("presences" not in c and "not_found" not in c for c in chunks)


async def test_whole_member_list_without_the_members_intent_is_4014(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    guild = next(iter(sb.world.guilds.values()))
    client = await identified(http, sb, GUILDS)
    await client.send(8, {"guild_id": str(guild.id), "query": "", "limit": 0})
    assert await client.closed_with() == 4014


async def test_query_without_the_members_intent_finds_by_username_or_nick(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    # What discord.py's member converter sends for `!rank Bob`: a query with limit 100, on a
    # connection without GUILD_MEMBERS. Discord answers it; it must not close the connection.
    guild = next(iter(sb.world.guilds.values()))
    (bob,) = add_members(sb, guild.id, "Bobby", 1)
    (nicked,) = add_members(sb, guild.id, "someone", 1)
    guild.members[nicked].nick = "bobcat"
    add_members(sb, guild.id, "notbob", 1)
    client = await identified(http, sb, GUILDS)
    await client.send(8, {"guild_id": guild.id, "query": "BOB", "limit": 100, "nonce": "q"})
    chunk = (await client.until("GUILD_MEMBERS_CHUNK"))["d"]
    assert {m["user"]["id"] for m in chunk["members"]} == {str(bob), str(nicked)}
    assert chunk["nonce"] == "q" and chunk["chunk_index"] == 0 and chunk["chunk_count"] == 1
    await still_open(client)


async def test_a_query_returns_at_most_limit_and_at_most_100(
    sb: Sandbox, http: aiohttp.ClientSession, identify_interval_passes: Callable[[], None]
) -> None:
    guild = next(iter(sb.world.guilds.values()))
    add_members(sb, guild.id, "zed", 150)
    client = await identified(http, sb, GUILDS)
    for limit, expected in ((3, 3), (500, 100), (0, 100)):
        await client.send(8, {"guild_id": str(guild.id), "query": "zed", "limit": limit})
        chunk = (await client.until("GUILD_MEMBERS_CHUNK"))["d"]
        assert len(chunk["members"]) == expected, limit
        assert "nonce" not in chunk
    # An empty query with a limit is a prefix query too: no intent needed, at most `limit`.
    await client.send(8, {"guild_id": str(guild.id), "query": "", "limit": 2})
    assert len((await client.until("GUILD_MEMBERS_CHUNK"))["d"]["members"]) == 2
    # Even with GUILD_MEMBERS, a query is capped at 100.
    identify_interval_passes()  # for the bucket's next IDENTIFY
    members = await identified(http, sb, GUILDS | GUILD_MEMBERS)
    await members.send(8, {"guild_id": str(guild.id), "query": "z", "limit": 1000})
    assert len((await members.until("GUILD_MEMBERS_CHUNK"))["d"]["members"]) == 100


async def test_user_ids_with_not_found_and_no_intent_needed(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    guild = next(iter(sb.world.guilds.values()))
    member = next(m for m in guild.members if m != sb.world.bot.id)
    stranger = next(u for u in sb.world.users if u not in guild.members)
    client = await identified(http, sb, GUILDS)
    await client.send(
        8, {"guild_id": str(guild.id), "user_ids": [str(member), str(stranger)], "limit": 5}
    )
    chunk = (await client.until("GUILD_MEMBERS_CHUNK"))["d"]
    assert [m["user"]["id"] for m in chunk["members"]] == [str(member)]
    assert chunk["not_found"] == [str(stranger)]
    # A single snowflake (not a list) is allowed too.
    await client.send(8, {"guild_id": str(guild.id), "user_ids": str(member)})
    chunk = (await client.until("GUILD_MEMBERS_CHUNK"))["d"]
    assert [m["user"]["id"] for m in chunk["members"]] == [str(member)]
    await still_open(client)


async def test_presences_only_with_the_presences_intent(
    sb: Sandbox, http: aiohttp.ClientSession, identify_interval_passes: Callable[[], None]
) -> None:
    guild = next(iter(sb.world.guilds.values()))
    online, offline = [m for m in guild.members if m != sb.world.bot.id][:2]
    await sb.event("presence", {"guild_id": guild.id, "user_id": online, "status": "dnd"})
    request = {"guild_id": str(guild.id), "user_ids": [online, offline], "presences": True}
    without = await identified(http, sb, GUILDS)
    await without.send(8, request)
    chunk = (await without.until("GUILD_MEMBERS_CHUNK"))["d"]
    assert len(chunk["members"]) == 2 and "presences" not in chunk  # treated as false
    identify_interval_passes()
    with_intent = await identified(http, sb, GUILDS | GUILD_PRESENCES)
    await with_intent.send(8, request)
    chunk = (await with_intent.until("GUILD_MEMBERS_CHUNK"))["d"]
    assert [(p["user"]["id"], p["status"]) for p in chunk["presences"]] == [(str(online), "dnd")]


async def test_a_nonce_over_32_bytes_is_ignored(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    guild = next(iter(sb.world.guilds.values()))
    client = await identified(http, sb, GUILDS)
    await client.send(8, {"guild_id": str(guild.id), "query": "a", "limit": 1, "nonce": "x" * 33})
    chunk = (await client.until("GUILD_MEMBERS_CHUNK"))["d"]
    assert "nonce" not in chunk


@pytest.mark.parametrize(
    "d",
    [
        None,
        [],
        "guild",
        {"query": "", "limit": 0},  # no guild_id
        {"guild_id": "abc", "query": "a", "limit": 1},
        {"guild_id": ["1", "2"], "query": "a", "limit": 1},  # one guild per request
        {"guild_id": True, "query": "a", "limit": 1},
        {"guild_id": "-5", "query": "a", "limit": 1},
        {"guild_id": "1" * 30, "query": "a", "limit": 1},
        {"guild_id": "GUILD"},  # neither query nor user_ids
        {"guild_id": "GUILD", "query": 5, "limit": 1},
        {"guild_id": "GUILD", "query": "a"},  # a query needs a limit
        {"guild_id": "GUILD", "query": "a", "limit": "5"},
        {"guild_id": "GUILD", "query": "a", "limit": -1},
        {"guild_id": "GUILD", "query": "a", "limit": 1.5},
        {"guild_id": "GUILD", "query": "a", "limit": True},
        {"guild_id": "GUILD", "query": "a", "limit": 1, "presences": "yes"},
        {"guild_id": "GUILD", "user_ids": ["x"]},
        {"guild_id": "GUILD", "user_ids": [{"id": "1"}]},
        {"guild_id": "GUILD", "user_ids": {"1": 1}},
    ],
)
async def test_malformed_request_guild_members_is_4002(
    sb: Sandbox, http: aiohttp.ClientSession, d: Any
) -> None:
    guild = next(iter(sb.world.guilds.values()))
    if isinstance(d, dict) and d.get("guild_id") == "GUILD":
        d = {**d, "guild_id": str(guild.id)}
    client = await identified(http, sb, GUILDS | GUILD_MEMBERS)
    await client.send(8, d)
    assert await client.closed_with() == 4002


async def test_faults_reconnect_and_invalidate(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    client = await connect(http, sb)
    await client.send(2, identify(sb))
    await client.until("READY")
    assert await sb.fault("reconnect", shard=0) == 1
    while (payload := await client.recv())["op"] != 7:
        pass
    assert await sb.fault("invalidate", shard=0) == 1
    while (payload := await client.recv())["op"] != 9:
        pass
    assert payload["d"] is False


async def test_more_than_2500_guilds_on_a_shard_4011(http: aiohttp.ClientSession) -> None:
    async with Sandbox(SandboxConfig(guilds=2501, members=3)) as big:
        client = await connect_plain(http, big)
        await client.send(2, identify(big))
        assert await client.closed_with() == 4011


async def connect_plain(http: aiohttp.ClientSession, sb: Sandbox) -> Client:
    client = Client(await http.ws_connect(f"{sb.gateway_url}?v=10&encoding=json"), None)
    assert (await client.recv())["op"] == 10
    return client
