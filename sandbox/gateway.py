"""The gateway: websocket sessions, as Discord runs them for a bot.

Follows https://discord.com/developers/docs/events/gateway: HELLO, heartbeats and ACKs,
IDENTIFY with shard and intents, READY then one GUILD_CREATE per guild of the shard, RESUME
with replay, RECONNECT (op 7), INVALID_SESSION (op 9), REQUEST_GUILD_MEMBERS, PRESENCE_UPDATE,
the documented close codes, identify concurrency per bucket `shard_id % max_concurrency`, and
transport compression (zlib-stream, zstd-stream or none).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import zlib
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import WSMsgType, web

from sandbox import presence
from sandbox.world import LARGE_THRESHOLD

if TYPE_CHECKING:
    from sandbox.server import SandboxConfig
    from sandbox.world import Guild, World

log = logging.getLogger(__name__)

# Opcodes
DISPATCH, HEARTBEAT, IDENTIFY, PRESENCE_UPDATE, VOICE_STATE = 0, 1, 2, 3, 4
RESUME, RECONNECT, REQUEST_MEMBERS, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 6, 7, 8, 9, 10, 11

# Intents (https://discord.com/developers/docs/events/gateway#gateway-intents)
GUILDS = 1 << 0
GUILD_MEMBERS = 1 << 1
GUILD_MODERATION = 1 << 2
GUILD_PRESENCES = 1 << 8
GUILD_MESSAGES = 1 << 9
GUILD_MESSAGE_REACTIONS = 1 << 10
DIRECT_MESSAGES = 1 << 12
DIRECT_MESSAGE_REACTIONS = 1 << 13
MESSAGE_CONTENT = 1 << 15
PRIVILEGED = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT
ALL_INTENTS = (1 << 26) - 1

# Which intent a dispatch needs, for guild events and for DM events.
EVENT_INTENTS: dict[str, tuple[int, int]] = {
    "MESSAGE_CREATE": (GUILD_MESSAGES, DIRECT_MESSAGES),
    "MESSAGE_UPDATE": (GUILD_MESSAGES, DIRECT_MESSAGES),
    "MESSAGE_DELETE": (GUILD_MESSAGES, DIRECT_MESSAGES),
    "MESSAGE_DELETE_BULK": (GUILD_MESSAGES, 0),
    "MESSAGE_REACTION_ADD": (GUILD_MESSAGE_REACTIONS, DIRECT_MESSAGE_REACTIONS),
    "GUILD_MEMBER_ADD": (GUILD_MEMBERS, 0),
    "GUILD_MEMBER_UPDATE": (GUILD_MEMBERS, 0),
    "GUILD_MEMBER_REMOVE": (GUILD_MEMBERS, 0),
    "GUILD_BAN_ADD": (GUILD_MODERATION, 0),
    "GUILD_BAN_REMOVE": (GUILD_MODERATION, 0),
    "GUILD_AUDIT_LOG_ENTRY_CREATE": (GUILD_MODERATION, 0),
    "PRESENCE_UPDATE": (GUILD_PRESENCES, 0),
    "CHANNEL_UPDATE": (GUILDS, 0),
    "GUILD_UPDATE": (GUILDS, 0),
    "GUILD_ROLE_CREATE": (GUILDS, 0),
    "GUILD_ROLE_UPDATE": (GUILDS, 0),
    "GUILD_CREATE": (GUILDS, 0),
    "GUILD_DELETE": (GUILDS, 0),
}

MAX_GUILDS_PER_SHARD = 2500
SEND_LIMIT, SEND_WINDOW = 120, 60.0
# A frame this close to a window's end starts the next one. A client that keeps to the limit by
# its own clock (discord.py: 110 from its first send, then a new window 60 s later) sends its
# next burst at its boundary, and a frame can arrive a little earlier than the one that opened
# the window did (network jitter); counted in the old window, that burst would be a 4008 that
# Discord, whose clients chunk thousands of guilds at start this way, doesn't give.
SEND_JITTER = 0.25
RESUME_BUFFER = 2000
MEMBERS_PER_CHUNK = 1000  # GUILD_MEMBERS_CHUNK: "up to 1000 members per chunk"
MEMBERS_PER_QUERY = 100  # a prefix query, or user_ids, returns at most 100 members


class Closed(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass
class Session:
    id: str
    shard_id: int
    shard_count: int
    intents: int
    seq: int = 0
    buffer: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RESUME_BUFFER))
    conn: Connection | None = None
    guild_ids: set[int] = field(default_factory=set)
    stall_acks: int = 0

    @property
    def shard(self) -> tuple[int, int]:
        return (self.shard_id, self.shard_count)

    def wants(self, event: str, guild_id: int | None) -> bool:
        if event == "INTERACTION_CREATE":
            return True
        need = EVENT_INTENTS.get(event)
        if need is None:
            return True
        bit = need[0] if guild_id is not None else need[1]
        return bit == 0 or bool(self.intents & bit)


@dataclass
class MembersRequest:
    """A REQUEST_GUILD_MEMBERS payload, checked against its documented structure: guild_id a
    snowflake; one of query (a string, with limit, an integer >= 0) or user_ids (a snowflake or
    a list of them); presences a boolean. Anything else is Discord's decode error, 4002."""

    guild_id: int
    query: str = ""
    limit: int = 0
    user_ids: list[int] | None = None
    presences: bool = False
    nonce: str | None = None

    @classmethod
    def parse(cls, data: Any) -> MembersRequest:
        if not isinstance(data, dict):
            raise _decode_error()
        req = cls(_snowflake(data.get("guild_id")))
        query, limit, user_ids = data.get("query"), data.get("limit"), data.get("user_ids")
        if user_ids is not None:
            ids = user_ids if isinstance(user_ids, list) else [user_ids]
            req.user_ids = [_snowflake(u) for u in ids]
        if query is not None:
            if not isinstance(query, str):
                raise _decode_error()
            req.query = query
        elif req.user_ids is None:
            raise _decode_error()  # one of query or user_ids is required
        if limit is not None or (query is not None and req.user_ids is None):
            # limit is required with a query.
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
                raise _decode_error()
            req.limit = limit
        presences = data.get("presences")
        if presences is not None:
            if not isinstance(presences, bool):
                raise _decode_error()
            req.presences = presences
        # "If you send an invalid nonce it will be ignored and the reply member_chunk(s) will
        # not have a nonce set."
        nonce = data.get("nonce")
        if isinstance(nonce, str) and len(nonce.encode()) <= 32:
            req.nonce = nonce
        return req


def _snowflake(value: Any) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise _decode_error()
    if not 0 < number < 1 << 64:
        raise _decode_error()
    return number


def _decode_error() -> Closed:
    return Closed(4002, "Error while decoding payload.")


class Compressor:
    """Transport compression for one connection (a shared context for the whole stream)."""

    def __init__(self, kind: str | None) -> None:
        self.kind = kind
        self._zlib = zlib.compressobj() if kind == "zlib-stream" else None
        self._zstd: Any = None
        if kind == "zstd-stream":
            import zstandard

            self._zstd = zstandard.ZstdCompressor().compressobj()
            self._flush = zstandard.COMPRESSOBJ_FLUSH_BLOCK

    def encode(self, payload: bytes) -> bytes | str:
        if self._zlib is not None:
            return self._zlib.compress(payload) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
        if self._zstd is not None:
            return bytes(self._zstd.compress(payload) + self._zstd.flush(self._flush))
        return payload.decode()


class Connection:
    def __init__(self, gw: Gateway, ws: web.WebSocketResponse, compress: str | None) -> None:
        self.gw = gw
        self.ws = ws
        self.compressor = Compressor(compress)
        self.session: Session | None = None
        self.last_heartbeat = time.monotonic()
        # Sends counted in fixed windows of SEND_WINDOW s (less SEND_JITTER): one starts at the
        # first frame after the last one ended (discord.py's limiter, 110 per such window, fits).
        self.window_start = float("-inf")
        self.window_sends = 0
        self.lock = asyncio.Lock()

    async def send(self, payload: dict[str, Any]) -> None:
        data = self.compressor.encode(orjson.dumps(payload))
        async with self.lock:
            if self.ws.closed:
                return
            if isinstance(data, bytes):
                await self.ws.send_bytes(data)
            else:
                await self.ws.send_str(data)

    async def close(self, code: int, reason: str) -> None:
        self.gw.stats["close_codes"][str(code)] += 1
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, message=reason.encode())


class Gateway:
    """Discord's gateway: connections, sessions, IDENTIFY and RESUME, dispatch, faults. The
    payload checks that stand alone live beside it (checked_identify, MembersRequest,
    sandbox/presence.py)."""

    def __init__(self, world: World, config: SandboxConfig) -> None:
        self.world = world
        self.config = config
        self.sessions: dict[str, Session] = {}
        self.connections: set[Connection] = set()
        self.last_identify: dict[int, float] = {}  # bucket -> time
        self.url = ""  # set by the server once it knows its port
        self.presences = presence.Presences(config.window_scale)
        self.stats: dict[str, Any] = {
            "identifies": Counter(),  # by bucket
            "identify_times": [],
            "invalid_sessions": 0,
            "op9_identify_too_fast": 0,
            "close_codes": Counter(),
            "connections": 0,
        }

    # -- connection loop ---------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        encoding = request.query.get("encoding", "json")
        compress = request.query.get("compress")
        ws = web.WebSocketResponse(max_msg_size=1 << 20, autoping=True)
        await ws.prepare(request)
        if compress not in (None, "zlib-stream", "zstd-stream"):
            await ws.close(code=4002, message=b"Unknown compression")
            return ws
        conn = Connection(self, ws, compress)
        self.connections.add(conn)
        self.stats["connections"] += 1
        watchdog = asyncio.create_task(self._watch_heartbeats(conn))
        try:
            if encoding != "json":
                raise Closed(4002, "Only the json encoding is supported")
            await conn.send(
                {
                    "op": HELLO,
                    "d": {"heartbeat_interval": self.config.heartbeat_ms},
                    "s": None,
                    "t": None,
                }
            )
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    raw: bytes | str = msg.data
                elif msg.type == WSMsgType.BINARY:
                    raw = msg.data
                else:
                    break
                await self._on_frame(conn, raw)
        except Closed as closed:
            await conn.close(closed.code, closed.reason)
        finally:
            watchdog.cancel()
            self.connections.discard(conn)
            if conn.session is not None and conn.session.conn is conn:
                conn.session.conn = None
        return ws

    async def _watch_heartbeats(self, conn: Connection) -> None:
        """A connection that misses heartbeats is closed, as Discord does."""
        limit = self.config.heartbeat_ms / 1000 * 1.5 + 1
        while not conn.ws.closed:
            await asyncio.sleep(min(limit / 4, 5))
            if time.monotonic() - conn.last_heartbeat > limit:
                await conn.close(4009, "Session timed out")
                return

    async def _on_frame(self, conn: Connection, raw: bytes | str) -> None:
        now = time.monotonic()
        if now - conn.window_start >= (SEND_WINDOW - SEND_JITTER) * self.config.window_scale:
            conn.window_start, conn.window_sends = now, 0
        conn.window_sends += 1
        if conn.window_sends > SEND_LIMIT:
            raise Closed(4008, "Rate limited.")
        try:
            payload = orjson.loads(raw)
            op = payload["op"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise Closed(4002, "Error while decoding payload.") from None
        data = payload.get("d")
        if op == HEARTBEAT:
            conn.last_heartbeat = now
            session = conn.session
            if session is not None and session.stall_acks > 0:
                session.stall_acks -= 1
                return
            await conn.send({"op": HEARTBEAT_ACK, "d": None, "s": None, "t": None})
        elif op == IDENTIFY:
            await self._identify(conn, data)
        elif op == RESUME:
            await self._resume(conn, data)
        elif conn.session is None:
            raise Closed(4003, "Not authenticated.")
        elif op == PRESENCE_UPDATE:  # sandbox/presence.py: 4002 off the structure, 4008 too often
            if (code := self.presences.update(conn.session.shard, data)) is not None:
                raise Closed(code, presence.CLOSES[code])
        elif op == REQUEST_MEMBERS:
            await self._request_members(conn, data)
        elif op == VOICE_STATE:
            return
        else:
            raise Closed(4001, "Unknown opcode.")

    # -- identify / resume ---------------------------------------------------------------------

    async def _identify(self, conn: Connection, data: Any) -> None:
        if conn.session is not None:
            raise Closed(4005, "Already authenticated.")
        shard_id, shard_count, intents, large_threshold = checked_identify(
            data, self.world.token, self.config.allowed_privileged
        )
        guilds = [g for g in self.world.guilds.values() if g.shard(shard_count) == shard_id]
        if len(guilds) > MAX_GUILDS_PER_SHARD:
            raise Closed(4011, "Sharding required.")
        bucket = shard_id % self.config.max_concurrency
        now = time.monotonic()
        last = self.last_identify.get(bucket)
        if last is not None and now - last < self.config.identify_interval:
            self.stats["op9_identify_too_fast"] += 1
            self.stats["invalid_sessions"] += 1
            await conn.send({"op": INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        self.last_identify[bucket] = now
        self.stats["identifies"][str(bucket)] += 1
        self.stats["identify_times"].append({"shard": shard_id, "bucket": bucket, "at": now})
        session = Session(secrets.token_hex(16), shard_id, shard_count, intents)
        self.presences.identified((shard_id, shard_count), data.get("presence"))
        session.guild_ids = {g.id for g in guilds}
        session.conn = conn
        conn.session = session
        self.sessions[session.id] = session
        app = {"id": str(self.world.application_id), "flags": 0}
        await self.dispatch_to(
            session,
            "READY",
            {
                "v": 10,
                "user": self.world.bot.to_dict(),
                "user_settings": {},
                "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
                "session_id": session.id,
                "resume_gateway_url": self.url,
                "shard": [shard_id, shard_count],
                "application": app,
                "session_type": "normal",
                "private_channels": [],
                "relationships": [],
                "presences": [],
                "geo_ordered_rtc_regions": [],
                "guild_join_requests": [],
            },
        )
        with_presences = bool(intents & GUILD_PRESENCES)
        for guild in guilds:
            create = guild.gateway_dict(
                self.world, with_presences=with_presences, large_threshold=large_threshold
            )
            await self.dispatch_to(session, "GUILD_CREATE", create)

    async def _resume(self, conn: Connection, data: Any) -> None:
        if not isinstance(data, dict):
            raise Closed(4002, "Error while decoding payload.")
        if data.get("token") not in (self.world.token, f"Bot {self.world.token}"):
            raise Closed(4004, "Authentication failed.")
        session = self.sessions.get(str(data.get("session_id")))
        seq = data.get("seq")
        if (
            session is None
            or not isinstance(seq, int)
            or seq > session.seq
            or (session.buffer and seq < session.buffer[0]["s"] - 1)
        ):
            self.stats["invalid_sessions"] += 1
            await conn.send({"op": INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        old = session.conn
        session.conn = conn
        conn.session = session
        if old is not None and old is not conn:
            await old.close(4000, "Session resumed elsewhere")
        for event in list(session.buffer):
            if event["s"] > seq:
                await conn.send(event)
        await self.dispatch_to(session, "RESUMED", {})

    async def _request_members(self, conn: Connection, data: Any) -> None:
        """REQUEST_GUILD_MEMBERS (op 8): see member_chunks. Asking for the entire member list
        without the GUILD_MEMBERS intent closes the connection with 4014; a malformed request
        is a decode error (4002), as for any payload."""
        session = conn.session
        assert session is not None
        req = MembersRequest.parse(data)
        whole_list = req.user_ids is None and req.query == "" and req.limit == 0
        if whole_list and not session.intents & GUILD_MEMBERS:
            raise Closed(4014, "Disallowed intent(s).")
        guild = self.world.guilds.get(req.guild_id)
        if guild is None or guild.id not in session.guild_ids:
            return  # not a guild of this session: nothing to answer
        for payload in member_chunks(self.world, guild, req, session.intents):
            await self.dispatch_to(session, "GUILD_MEMBERS_CHUNK", payload)

    # -- dispatching ---------------------------------------------------------------------------

    async def dispatch_to(self, session: Session, event: str, data: dict[str, Any]) -> None:
        session.seq += 1
        payload = {"op": DISPATCH, "t": event, "s": session.seq, "d": data}
        session.buffer.append(payload)
        if session.conn is not None:
            try:
                await session.conn.send(payload)
            except (ConnectionError, RuntimeError):
                session.conn = None  # kept in the buffer for a RESUME

    async def dispatch(self, event: str, data: dict[str, Any], guild_id: int | None) -> int:
        """Send an event to every session that should get it; return how many did."""
        sent = 0
        for session in list(self.sessions.values()):
            if guild_id is not None:
                if guild_id not in session.guild_ids:
                    continue
            elif session.shard_id != 0:
                continue  # events with no guild (DMs) go to shard 0 only
            if not session.wants(event, guild_id):
                continue
            payload = data
            if (
                event in ("MESSAGE_CREATE", "MESSAGE_UPDATE")
                and guild_id is not None
                and not (session.intents & MESSAGE_CONTENT)
            ):
                mentioned = any(
                    str(self.world.bot.id) == u.get("id") for u in data.get("mentions", [])
                )
                if not mentioned:
                    payload = {
                        **data,
                        "content": "",
                        "embeds": [],
                        "attachments": [],
                        "components": [],
                    }
            await self.dispatch_to(session, event, payload)
            sent += 1
        return sent

    # -- faults ----------------------------------------------------------------------------------

    def sessions_of_shard(self, shard_id: int | None) -> list[Session]:
        return [
            s
            for s in self.sessions.values()
            if s.conn is not None and (shard_id is None or s.shard_id == shard_id)
        ]

    async def fault(self, kind: str, shard_id: int | None, count: int, code: int = 4000) -> int:
        hit = 0
        for session in self.sessions_of_shard(shard_id):
            conn = session.conn
            assert conn is not None
            if kind == "drop":
                with contextlib.suppress(Exception):
                    await conn.ws.close(code=4000, message=b"Unknown error")
            elif kind == "reconnect":
                await conn.send({"op": RECONNECT, "d": None, "s": None, "t": None})
            elif kind == "invalidate":
                self.sessions.pop(session.id, None)
                self.stats["invalid_sessions"] += 1
                await conn.send({"op": INVALID_SESSION, "d": False, "s": None, "t": None})
            elif kind == "stall_acks":
                session.stall_acks = max(1, count)
            elif kind == "close":
                # Any close code, the fatal ones (4004, 4010-4014) included: how a client
                # takes a close it did not provoke.
                await conn.close(code, "Closed by a sandbox fault")
            elif kind == "malformed":
                guild = min(session.guild_ids) if session.guild_ids else None
                for event, data in malformed_events(guild):
                    await self.dispatch_to(session, event, data)
            else:
                raise ValueError(kind)
            hit += 1
        return hit

    async def close_all(self) -> None:
        for conn in list(self.connections):
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1001, message=b"Going away")


def malformed_events(guild_id: int | None) -> list[tuple[str, dict[str, Any]]]:
    """The `malformed` fault's dispatch events, off Discord's documented structure: a message
    whose ids are not snowflakes, one in the guild `guild_id` by an author with no id, and a
    reaction with nothing but its guild. How a client takes a payload it can't read."""
    guild = str(guild_id) if guild_id is not None else None
    return [
        ("MESSAGE_CREATE", {"id": "not a snowflake", "channel_id": "nor this", "content": "!"}),
        (
            "MESSAGE_CREATE",
            {"id": "1", "guild_id": guild, "channel_id": guild, "author": {}, "member": {}},
        ),
        ("MESSAGE_REACTION_ADD", {"guild_id": guild}),
    ]


def checked_identify(data: Any, token: str, privileged: int) -> tuple[int, int, int, int]:
    """IDENTIFY's payload checked as Discord does, with its close codes: (shard id, shard
    count, intents, large_threshold). large_threshold is "a value between 50 and 250"
    (default 50); another number is taken as the nearest of the two, a non-integer is 4002."""
    if not isinstance(data, dict):
        raise Closed(4002, "Error while decoding payload.")
    if data.get("token") not in (token, f"Bot {token}"):
        raise Closed(4004, "Authentication failed.")
    shard = data.get("shard") or [0, 1]
    try:
        shard_id, shard_count = int(shard[0]), int(shard[1])
    except (TypeError, ValueError, IndexError):
        raise Closed(4010, "Invalid shard.") from None
    if shard_count < 1 or not 0 <= shard_id < shard_count:
        raise Closed(4010, "Invalid shard.")
    if not presence.acceptable(data.get("presence")):
        raise Closed(4002, "Error while decoding payload.")
    threshold = data.get("large_threshold", LARGE_THRESHOLD)
    if isinstance(threshold, bool) or not isinstance(threshold, int):
        raise Closed(4002, "Error while decoding payload.")
    intents = data.get("intents")
    if not isinstance(intents, int) or intents < 0 or intents & ~ALL_INTENTS:
        raise Closed(4013, "Invalid intent(s).")
    if intents & PRIVILEGED & ~privileged:
        raise Closed(4014, "Disallowed intent(s).")
    return shard_id, shard_count, intents, min(max(threshold, 50), 250)


def member_chunks(
    world: World, guild: Guild, req: MembersRequest, intents: int
) -> list[dict[str, Any]]:
    """The GUILD_MEMBERS_CHUNK payloads answering a request, with the limits Discord
    documents: a prefix query (of username or nickname) returns at most 100 members, as do
    user_ids; presences only with GUILD_PRESENCES (else silently none); a nonce of up to 32
    bytes is echoed, a longer one ignored; chunks of up to 1,000 members."""
    whole_list = req.user_ids is None and req.query == "" and req.limit == 0
    out: list[dict[str, Any]] = []
    not_found: list[str] = []
    if req.user_ids is not None:
        wanted = list(dict.fromkeys(req.user_ids))[:MEMBERS_PER_QUERY]
        members = [guild.members[u] for u in wanted if u in guild.members]
        not_found = [str(u) for u in wanted if u not in guild.members]
    else:
        prefix = req.query.casefold()
        members = [
            m
            for m in guild.members.values()
            if world.users[m.user_id].username.casefold().startswith(prefix)
            or (m.nick is not None and m.nick.casefold().startswith(prefix))
        ]
        if not whole_list:
            members = members[: min(req.limit or MEMBERS_PER_QUERY, MEMBERS_PER_QUERY)]
    presences = req.presences and bool(intents & GUILD_PRESENCES)
    chunks = [
        members[i : i + MEMBERS_PER_CHUNK] for i in range(0, len(members), MEMBERS_PER_CHUNK)
    ] or [[]]
    for i, chunk in enumerate(chunks):
        payload: dict[str, Any] = {
            "guild_id": str(guild.id),
            "members": [m.to_dict(world) for m in chunk],
            "chunk_index": i,
            "chunk_count": len(chunks),
        }
        if req.user_ids is not None:
            payload["not_found"] = not_found if i == 0 else []
        if presences:
            payload["presences"] = [
                guild.presence(m.user_id) for m in chunk if m.user_id in guild.presences
            ]
        if req.nonce is not None:
            payload["nonce"] = req.nonce
        out.append(payload)
    return out
