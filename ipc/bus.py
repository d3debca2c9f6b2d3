"""The IPC bus: named, typed requests between clusters over Redis pub/sub.

Why pub/sub: requests and answers are short-lived and only useful to a process that is
listening right now; a cluster that is down should not find a backlog of stale requests when
it returns (streams would keep them). Who should answer is known from the registry, so a
`gather` knows whom it is waiting for, returns as soon as all have answered, and marks the
result partial, naming the silent clusters, when the timeout passes first. A call to a cluster
the registry doesn't know fails at once instead of waiting.

Requests carry a handler name and a JSON payload, which the handler's dataclass validates;
nothing is ever evaluated. Unknown names and bad payloads get an error answer; a failing
handler gets an error answer too, and the listener keeps running.

The transport is lean because a gather is CPU-bound on small machines (every cluster parses a
request and publishes an answer): the bus's channels (this cluster's, every cluster's, this
node's replies) are three of the process's one pub/sub connection (ipc/subscriber.py), read
directly with no PubSub object's per-message layers, and requests and answers go out on a second
connection switched to `CLIENT REPLY OFF`, so a publish is one socket write with no receiver
count to wait for and parse (packed by hiredis, and written by the publishing coroutine itself:
redis-py's `send_packed_command` would run the write as a task of its own on Python 3.11; the
bus calls its `_send_packed_command` under the same socket timeout). Pub/sub delivery is
at-most-once anyway (a subscriber that is away misses the message); a publish nobody confirms
does not weaken that, and the asker's timeout covers either loss. Where `CLIENT REPLY` is
refused (an ACL, a proxy), publishes fall back to the ordinary confirmed PUBLISH.

A lost subscription is the subscriber's to renew (with its one backoff) and to report, once
per outage; the bus drops its publishing connection then, which went to the same server.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis
from prometheus_client import Counter, Histogram
from redis.exceptions import RedisError, ResponseError

from ipc.client import Keys, is_outage, redis_outage
from ipc.registry import Registry
from ipc.subscriber import Subscriber, Subscription

try:
    import hiredis
except ImportError:  # an install without redis's [hiredis] extra
    hiredis = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

Handler = Callable[[Any], Awaitable[Any]]


# A cluster that died less than this long ago may still be asked (and reported missing after
# the timeout) instead of failing fast.
LIVE_TTL = 1.0

# Asked from this cluster: by request name and outcome (ok, error, timeout: some cluster
# didn't answer in time). prometheus-client's multiprocess mode merges workers.
IPC_REQUESTS = Counter(
    "guildhouse_ipc_requests_total",
    "IPC requests sent (call and gather), by name and outcome (ok, error, timeout).",
    ["cluster", "name", "outcome"],
)
IPC_DURATION = Histogram(
    "guildhouse_ipc_request_duration_seconds",
    "Time from sending an IPC request to the last answer (or the timeout).",
    ["cluster", "name"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
IPC_HANDLED = Counter(
    "guildhouse_ipc_handled_total",
    "IPC requests this cluster answered, by name and outcome (ok, error).",
    ["cluster", "name", "outcome"],
)


class BusError(Exception):
    """A request could not be answered; the message says why."""


class ClusterDown(BusError):
    pass


@dataclass
class GatherResult:
    results: dict[int, Any] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    missing: list[int] = field(default_factory=list)

    @property
    def partial(self) -> bool:
        return bool(self.missing or self.errors)


@dataclass
class _Pending:
    expected: set[int]
    result: GatherResult
    done: asyncio.Event = field(default_factory=asyncio.Event)


def _connection_of(redis: aioredis.Redis) -> Any:
    """A new connection with the client's settings (auth, TLS, database), outside its pool."""
    return redis.connection_pool.make_connection()  # type: ignore[no-untyped-call]


class _Publisher:
    """PUBLISH without waiting for the answer, on a connection that has replies switched off;
    the ordinary confirmed PUBLISH where that is refused."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._conn: Any = None
        self._lean = True
        self._opening = asyncio.Lock()

    async def publish(self, channel: str, data: bytes) -> None:
        conn = await self._connection() if self._lean else None
        if conn is None:
            await self.redis.publish(channel, data)
            return
        try:
            # The write itself, bounded by the client's socket timeout: redis-py's
            # send_packed_command bounds it with asyncio.wait_for, which on Python 3.11 runs
            # the write as a task of its own, one more turn of the loop before it goes out.
            async with asyncio.timeout(conn.socket_timeout):
                await conn._send_packed_command(_packed_publish(conn, channel, data))
        except (RedisError, OSError):  # TimeoutError is an OSError
            # A write that failed did not go out: send it the confirmed way (which has
            # redis-py's retries), and open a new quiet connection next time.
            await self.reset()
            await self.redis.publish(channel, data)
        except BaseException:
            await self.reset()
            raise

    async def _connection(self) -> Any:
        conn = self._conn
        # Nothing is ever read from this connection, so a server that closed it shows as EOF
        # on its reader: open a new one rather than write into a dead socket.
        reader = getattr(conn, "_reader", None)
        if conn is not None and (reader is None or not reader.at_eof()):
            return conn
        async with self._opening:
            if self._conn is not conn:  # another publish already replaced it
                return self._conn
            await self.reset()
            fresh = _connection_of(self.redis)
            await fresh.connect()
            try:
                # OFF then ON: if OFF is refused, its error is the first reply; if it is
                # accepted, ON's OK is the only one. Then OFF for good.
                await fresh.send_command("CLIENT", "REPLY", "OFF")
                await fresh.send_command("CLIENT", "REPLY", "ON")
                await fresh.read_response()
                await fresh.send_command("CLIENT", "REPLY", "OFF")
            except ResponseError as exc:
                log.info("ipc bus: CLIENT REPLY refused (%s); publishing with replies", exc)
                self._lean = False
                await fresh.disconnect(nowait=True)
                return None
            except BaseException:
                await fresh.disconnect(nowait=True)
                raise
            self._conn = fresh
            return fresh

    async def reset(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.disconnect(nowait=True)


class Bus:
    def __init__(
        self, redis: aioredis.Redis, keys: Keys, cluster_id: int, registry: Registry
    ) -> None:
        self.redis = redis
        self._live_ids: frozenset[int] = frozenset()
        self._live_at = -LIVE_TTL
        self._reading_live: asyncio.Future[None] | None = None
        self.keys = keys
        self.cluster_id = cluster_id
        self.registry = registry
        self.node = uuid.uuid4().hex[:12]
        # Request ids: answers come back on this node's own reply channel, so a number this
        # process never repeats is unique enough.
        self._ids = itertools.count(1)
        self.own = keys("rpc", cluster_id)
        self.all = keys("rpc", "all")
        self.reply = keys("rpc", "reply", self.node)
        self._handlers: dict[str, tuple[type[Any] | None, Handler]] = {}
        self._pending: dict[str, _Pending] = {}
        self._subscriptions: list[Subscription] = []
        self._jobs: set[asyncio.Task[None]] = set()
        self._publisher = _Publisher(redis)

    # -- registration ------------------------------------------------------------------------

    def handle(self, name: str, payload: type[Any] | None, fn: Handler) -> None:
        """Answer requests called `name`; `payload` is the dataclass a request must fit."""
        if payload is not None and not dataclasses.is_dataclass(payload):
            raise TypeError("payload types must be dataclasses")
        self._handlers[name] = (payload, fn)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to this cluster's channel, every cluster's and this node's replies, on
        the process's one pub/sub connection (ipc/subscriber.py); wait up to 10 s for Redis
        to confirm them (TimeoutError past that)."""
        subscriber = Subscriber.of(self.redis)
        self._subscriptions = [
            await subscriber.subscribe(self.reply, self._on_reply, on_lost=self._on_lost),
            await subscriber.subscribe(self.own, self._on_request),
            await subscriber.subscribe(self.all, self._on_request),
        ]
        async with asyncio.timeout(10):
            for subscription in self._subscriptions:
                await subscription.subscribed()

    async def stop(self) -> None:
        for subscription in self._subscriptions:
            await subscription.close()
        self._subscriptions = []
        for job in list(self._jobs):
            job.cancel()
        if self._reading_live is not None:
            self._reading_live.cancel()
        await self._publisher.reset()

    def _on_lost(self) -> None:
        # The publishing connection went to the same server: don't trust it either. (The
        # subscriber reports the outage and subscribes again.)
        self._spawn(self._publisher.reset())

    def _on_reply(self, _: str, data: bytes) -> None:
        msg = _decoded(data)
        if msg is not None:
            self._on_answer(msg)

    def _on_request(self, _: str, data: bytes) -> None:
        msg = _decoded(data)
        if msg is not None and msg.get("reply") != self.reply:  # ours are answered in _ask
            self._spawn(self._answer(msg))

    def _spawn(self, coro: Awaitable[None]) -> None:
        job: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    # -- answering -----------------------------------------------------------------------------

    async def _answer(self, msg: dict[str, Any]) -> None:
        reply_to, rid = msg.get("reply"), msg.get("id")
        if not isinstance(reply_to, str) or not isinstance(rid, str):
            return
        answer = await self._handled(msg, rid)
        try:
            await self._publisher.publish(reply_to, orjson.dumps(answer, default=str))
        except (RedisError, OSError) as exc:
            outage = is_outage(exc)
            if outage:
                redis_outage.failed(exc, "an IPC answer")
            # The asker times out either way; an outage is the process's record's to warn of.
            level = logging.INFO if outage else logging.WARNING
            log.log(level, "ipc bus: could not answer %s: %s", msg.get("name"), exc)

    async def _answer_self(self, msg: dict[str, Any]) -> None:
        """This cluster's own answer to its own request: no round trip through Redis, but the
        same JSON round trip, so it reads exactly as the other clusters' answers do."""
        answer = await self._handled(msg, str(msg["id"]))
        self._on_answer(orjson.loads(orjson.dumps(answer, default=str)))

    async def _handled(self, msg: dict[str, Any], rid: str) -> dict[str, Any]:
        answer: dict[str, Any] = {"id": rid, "cluster": self.cluster_id}
        entry = self._handlers.get(str(msg.get("name")))
        if entry is None:
            answer["error"] = f"unknown request {msg.get('name')!r}"
        else:
            payload_type, fn = entry
            raw = msg.get("payload") or {}
            try:
                arg = payload_type(**raw) if payload_type is not None else raw
            except TypeError as exc:
                answer["error"] = f"bad payload for {msg.get('name')!r}: {exc}"
            else:
                try:
                    answer["result"] = await fn(arg)
                except Exception as exc:
                    log.exception("ipc handler %s failed", msg.get("name"))
                    answer["error"] = f"{msg.get('name')!r} failed: {exc.__class__.__name__}"
        # Unknown names are labelled as such: a sender can't grow our series without bound.
        known = str(msg.get("name")) if entry is not None else "unknown"
        _child(
            IPC_HANDLED, str(self.cluster_id), known, "error" if "error" in answer else "ok"
        ).inc()
        return answer

    def _on_answer(self, msg: dict[str, Any]) -> None:
        pending = self._pending.get(str(msg.get("id")))
        cluster = msg.get("cluster")
        if pending is None or not isinstance(cluster, int) or cluster not in pending.expected:
            return
        if "error" in msg:
            pending.result.errors[cluster] = str(msg["error"])
        else:
            pending.result.results[cluster] = msg.get("result")
        pending.expected.discard(cluster)
        if not pending.expected:
            pending.done.set()

    # -- asking --------------------------------------------------------------------------------

    async def _ask(
        self, channel: str, targets: set[int], name: str, payload: Any, within: float
    ) -> GatherResult:
        rid = str(next(self._ids))
        pending = _Pending(set(targets), GatherResult())
        self._pending[rid] = pending
        try:
            body = {
                "id": rid,
                "name": name,
                "payload": _plain(payload),
                "reply": self.reply,
                "from": self.cluster_id,
            }
            started = time.perf_counter()
            if targets - {self.cluster_id}:
                await self._publisher.publish(channel, orjson.dumps(body))
            if self.cluster_id in targets:
                self._spawn(self._answer_self(orjson.loads(orjson.dumps(body))))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(within):  # no extra task, unlike wait_for
                    await pending.done.wait()
        finally:
            del self._pending[rid]
        result = pending.result
        result.missing = sorted(pending.expected)
        outcome = "timeout" if result.missing else "error" if result.errors else "ok"
        label = str(self.cluster_id)
        _child(IPC_REQUESTS, label, name, outcome).inc()
        _child(IPC_DURATION, label, name).observe(time.perf_counter() - started)
        return result

    async def _live(self) -> frozenset[int]:
        """Live cluster ids from the registry, never older than LIVE_TTL seconds: a request
        then costs one publish and the answers, not three registry reads first. Past half the
        TTL the next read starts in the background, so a bus in use keeps its view fresh
        without a request ever waiting for it; one idle for longer reads before asking."""
        age = time.monotonic() - self._live_at
        if age > LIVE_TTL:
            await self._read_live()
        elif age > LIVE_TTL / 2 and self._reading_live is None:
            self._reading_live = asyncio.ensure_future(self._read_live())
            self._reading_live.add_done_callback(self._read_live_done)
        return self._live_ids

    async def _read_live(self) -> None:
        started = time.monotonic()  # what is read is at least this fresh
        ids = frozenset(c.cluster_id for c in await self.registry.clusters())
        if started > self._live_at:
            self._live_ids, self._live_at = ids, started

    def _read_live_done(self, task: asyncio.Future[None]) -> None:
        self._reading_live = None
        if not task.cancelled() and task.exception() is not None:
            # The next request past the TTL reads again, and its caller gets the error.
            log.debug("ipc bus: reading the registry failed: %s", task.exception())

    async def gather(self, name: str, payload: Any = None, *, within: float = 5.0) -> GatherResult:
        """Ask every live cluster; partial results name the clusters that didn't answer."""
        live = await self._live()
        if not live:
            return GatherResult()
        return await self._ask(self.all, set(live), name, payload, within)

    async def call(
        self, cluster_id: int, name: str, payload: Any = None, *, within: float = 5.0
    ) -> Any:
        """Ask one cluster; fails at once if the registry shows it down."""
        live = await self._live()
        if cluster_id not in live:
            raise ClusterDown(f"cluster {cluster_id} is not running")
        result = await self._ask(self.keys("rpc", cluster_id), {cluster_id}, name, payload, within)
        if cluster_id in result.errors:
            raise BusError(result.errors[cluster_id])
        if cluster_id in result.missing:
            raise BusError(f"cluster {cluster_id} did not answer within {within:.0f}s")
        return result.results[cluster_id]


# The metrics' children by label values: `labels()` takes a lock and builds its key on every
# call. The names are the bus's requests (and "unknown"), so the table stays small.
_CHILDREN: dict[tuple[Any, ...], Any] = {}


def _child(metric: Any, *values: str) -> Any:
    key = (metric, *values)
    child = _CHILDREN.get(key)
    if child is None:
        child = _CHILDREN[key] = metric.labels(*values)
    return child


def _packed_publish(conn: Any, channel: str, data: bytes) -> list[bytes]:
    """PUBLISH as the bytes to write: hiredis's packer in one call where it is installed
    (redis-py's encodes each argument in Python first)."""
    if hiredis is not None:
        # (hiredis's stub types the tuple as one element long)
        return [hiredis.pack_command(("PUBLISH", channel, data))]  # type: ignore[arg-type]
    return conn.pack_command("PUBLISH", channel, data)


def _decoded(data: bytes) -> dict[str, Any] | None:
    try:
        msg = orjson.loads(data)
    except orjson.JSONDecodeError:
        log.warning("ipc bus: dropped a message that is not JSON")
        return None
    return msg if isinstance(msg, dict) else None


def _plain(payload: Any) -> Any:
    if payload is None:
        return {}
    if dataclasses.is_dataclass(payload) and not isinstance(payload, type):
        return dataclasses.asdict(payload)
    return payload
