"""One Redis pub/sub connection per process, shared by everything in it that listens.

Every listener of a process (the IPC bus, the guild caches, the throttles' lost-window channel,
the reminders' wake-up, the launcher's control channel) subscribes through the subscriber of
its Redis client, so a worker holds one pub/sub connection whatever it listens to, and one
reconnect loop with one backoff serves them all.

Usage::

    from ipc.subscriber import Subscriber

    subscriber = Subscriber.of(redis)  # this client's subscriber, made on first use
    sub = await subscriber.subscribe(channel, callback)  # callback(channel: str, data: bytes)
    await sub.subscribed()  # once Redis has confirmed it (optional: wait_for it with a limit)
    ...
    await sub.close()  # unsubscribe; the last subscription's close ends the connection

- `subscribe(channel, callback=None, *, on_subscribed=None, on_lost=None)` and
  `psubscribe(pattern, ...)` (a glob pattern; the callback gets the channel that matched) add a
  subscription at run time and return a `Subscription`. They don't wait for Redis: while Redis
  is away the subscription is registered and is made as soon as it is back.
- `callback(channel, data)` is called in the reader task, in the order Redis delivered, with
  `data` as bytes. It must not block: start a task for real work. An exception it raises is
  logged and the reader carries on.
- Without a callback, messages queue on the subscription: `await sub.get()` (or
  `sub.get(within=1.0)`, None when nothing came) or `async for channel, data in sub`. The
  queue holds `queue_size` messages; past that new ones are dropped with a warning.
- `on_subscribed()` is called each time Redis confirms the subscription: the first time and
  after every reconnect. Messages published while the connection was down are lost (pub/sub
  keeps nothing), so this is where a listener drops what it can no longer trust.
  `on_lost()` is called when the connection drops, from then until `on_subscribed` messages
  may be missed. Both are plain functions, called in the reader task.
- `await sub.subscribed()` returns once the subscription is confirmed on the current
  connection (at once if it is); `sub.active` says so without waiting. Tests and the reminders'
  wake-up use it to know that a publish from now on will reach them.
- Several subscriptions may share a channel (each gets every message); Redis is asked once.

A lost connection (Redis restarted, `CLIENT KILL`, a network drop) is retried with a jittered,
capped exponential backoff (`Backoff`) until Redis answers; then every channel and pattern is
subscribed again in one command each. An idle connection is checked with a PING every
`health_every` seconds, so a connection that died silently is noticed. The outage itself is the
process's record's to report (`ipc.client.redis_outage`: one WARNING when it starts, one INFO
when it ends); the subscriber adds one INFO line per outage that it is subscribing again, and a
WARNING only for a failure that is not an outage.

The connection is made from the client's settings (auth, TLS, database) outside its pool, is
named `<name>:<pid>` (`CLIENT LIST` shows it), and is read directly: no redis-py PubSub object,
whose per-message layers cost the IPC bus measurable time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError, RedisError, ResponseError

from ipc.backoff import Backoff
from ipc.client import is_outage, redis_outage

try:
    import hiredis
except ImportError:  # an install without redis's [hiredis] extra
    hiredis = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

Callback = Callable[[str, bytes], None]
Hook = Callable[[], None]

# An idle connection is checked this often (seconds): a PING, and a reconnect if nothing at
# all comes back within the same time.
HEALTH_EVERY = 30.0

_KINDS = {
    b"message": (False, "message"),
    b"pmessage": (True, "message"),
    b"subscribe": (False, "subscribe"),
    b"psubscribe": (True, "subscribe"),
    b"unsubscribe": (False, "unsubscribe"),
    b"punsubscribe": (True, "unsubscribe"),
}

_Key = tuple[bool, str]  # (is a pattern, channel or pattern)


class Subscription:
    """One listener's channel (or pattern) on the process's pub/sub connection."""

    def __init__(
        self,
        owner: Subscriber,
        key: _Key,
        *,
        callback: Callback | None,
        on_subscribed: Hook | None,
        on_lost: Hook | None,
        queue_size: int,
    ) -> None:
        self._owner = owner
        self._key = key
        self.pattern = key[0]
        self.channel = key[1]  # the channel, or the pattern of a psubscribe
        self._callback = callback
        self._on_subscribed = on_subscribed
        self._on_lost = on_lost
        self._queue: asyncio.Queue[tuple[str, bytes]] | None = (
            asyncio.Queue(queue_size) if callback is None else None
        )
        self._ticket = 0  # confirmations of this key it waits for, on the current connection
        self._active = asyncio.Event()
        self.closed = False
        self.dropped = 0  # messages dropped because the queue was full

    @property
    def active(self) -> bool:
        """Confirmed by Redis on the connection that is up now."""
        return self._active.is_set()

    async def subscribed(self) -> None:
        """Return once Redis has confirmed this subscription on the current connection."""
        await self._active.wait()

    async def close(self) -> None:
        """Unsubscribe (Redis is asked when no other subscription wants the channel)."""
        await self._owner._remove(self)

    async def get(self, within: float | None = None) -> tuple[str, bytes] | None:
        """The next queued message as (channel, data); None if `within` seconds passed
        first."""
        if self._queue is None:
            raise TypeError("this subscription has a callback: its messages don't queue")
        if within is None:
            return await self._queue.get()
        try:
            async with asyncio.timeout(within):
                return await self._queue.get()
        except TimeoutError:
            return None

    async def __aiter__(self) -> AsyncIterator[tuple[str, bytes]]:
        while True:
            message = await self.get()
            assert message is not None
            yield message

    # -- called by the subscriber's reader ------------------------------------------------------

    def _deliver(self, channel: str, data: bytes) -> None:
        if self._queue is None:
            assert self._callback is not None
            try:
                self._callback(channel, data)
            except Exception:
                log.exception("pub/sub: the callback of %s failed", self.channel)
            return
        try:
            self._queue.put_nowait((channel, data))
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning(
                    "pub/sub: %s is not read fast enough; %d message(s) dropped",
                    self.channel,
                    self.dropped,
                )

    def _confirmed(self) -> None:
        self._active.set()
        self._hook(self._on_subscribed, "on_subscribed")

    def _lost(self) -> None:
        was = self._active.is_set()
        self._active.clear()
        if was:
            self._hook(self._on_lost, "on_lost")

    def _hook(self, hook: Hook | None, what: str) -> None:
        if hook is None:
            return
        try:
            hook()
        except Exception:
            log.exception("pub/sub: %s of %s failed", what, self.channel)


_shared: weakref.WeakKeyDictionary[aioredis.Redis, Subscriber] = weakref.WeakKeyDictionary()


class Subscriber:
    """The pub/sub connection of one Redis client (in practice: of one process) and its
    subscriptions. See the module's docstring for the API."""

    @classmethod
    def of(cls, redis: aioredis.Redis) -> Subscriber:
        """The subscriber shared by every user of this client, made on first use."""
        found = _shared.get(redis)
        if found is None:
            found = _shared[redis] = cls(redis)
        return found

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        name: str = "guildhouse:pubsub",
        backoff: Backoff | None = None,
        health_every: float = HEALTH_EVERY,
    ) -> None:
        self.redis = redis
        self.name = f"{name}:{os.getpid()}"
        self.backoff = backoff or Backoff()
        self.health_every = health_every
        self._subs: dict[_Key, list[Subscription]] = {}
        self._conn: Any = None  # the connection, while it is up and subscribing
        self._sent: dict[_Key, int] = {}  # SUBSCRIBE commands sent per key, this connection
        self._confirmed: dict[_Key, int] = {}  # and their confirmations
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self.connections = 0  # connections made (the first, then one per reconnect)
        self._reads = 0  # replies read (for the watchdog)

    # -- the API ---------------------------------------------------------------------------------

    async def subscribe(
        self,
        channel: str,
        callback: Callback | None = None,
        *,
        on_subscribed: Hook | None = None,
        on_lost: Hook | None = None,
        queue_size: int = 10_000,
    ) -> Subscription:
        """Listen to `channel` (see the module's docstring). Doesn't wait for Redis."""
        return await self._add((False, channel), callback, on_subscribed, on_lost, queue_size)

    async def psubscribe(
        self,
        pattern: str,
        callback: Callback | None = None,
        *,
        on_subscribed: Hook | None = None,
        on_lost: Hook | None = None,
        queue_size: int = 10_000,
    ) -> Subscription:
        """Listen to every channel matching the glob `pattern`."""
        return await self._add((True, pattern), callback, on_subscribed, on_lost, queue_size)

    @property
    def channels(self) -> list[str]:
        """The channels and patterns subscribed to (or to be, while Redis is away)."""
        return [name for _, name in self._subs]

    async def close(self) -> None:
        """Close every subscription and the connection."""
        for subs in list(self._subs.values()):
            for sub in subs:
                sub.closed = True
                sub._lost()
        self._subs.clear()
        await self._stop()

    # -- subscriptions -----------------------------------------------------------------------

    async def _add(
        self,
        key: _Key,
        callback: Callback | None,
        on_subscribed: Hook | None,
        on_lost: Hook | None,
        queue_size: int,
    ) -> Subscription:
        sub = Subscription(
            self,
            key,
            callback=callback,
            on_subscribed=on_subscribed,
            on_lost=on_lost,
            queue_size=queue_size,
        )
        others = self._subs.setdefault(key, [])
        others.append(sub)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="ipc-subscriber")
            return sub  # the reader subscribes to everything when it connects
        if self._conn is None:
            return sub  # likewise, when it connects again
        if len(others) > 1 and self._sent.get(key, 0):
            # Already asked on this connection: wait for the latest request's confirmation.
            sub._ticket = self._sent[key]
            if self._confirmed.get(key, 0) >= sub._ticket:
                sub._confirmed()
            return sub
        await self._send(key[0], True, [key])
        return sub

    async def _remove(self, sub: Subscription) -> None:
        if sub.closed:
            return
        sub.closed = True
        sub._active.clear()
        subs = self._subs.get(sub._key, [])
        if sub in subs:
            subs.remove(sub)
        if subs:
            return
        self._subs.pop(sub._key, None)
        if not self._subs:
            await self._stop()  # nothing left to listen to: no connection either
        elif self._conn is not None:
            await self._send(sub._key[0], False, [sub._key])

    async def _send(self, pattern: bool, subscribe: bool, keys: list[_Key]) -> None:
        """(P)(UN)SUBSCRIBE on the current connection. A failed write is left to the reader,
        which sees the connection die and subscribes everything again."""
        conn = self._conn
        if conn is None or not conn.is_connected or not keys:
            return
        command = ("P" if pattern else "") + ("SUBSCRIBE" if subscribe else "UNSUBSCRIBE")
        if subscribe:
            for key in keys:
                self._sent[key] = self._sent.get(key, 0) + 1
                for sub in self._subs.get(key, []):
                    sub._ticket = self._sent[key]
        with contextlib.suppress(RedisError, OSError):
            await conn.send_packed_command(
                conn.pack_command(command, *(name for _, name in keys)), check_health=False
            )

    # -- the reader ----------------------------------------------------------------------------

    async def _stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        """The one reconnect loop: connect, subscribe everything, read; on a failure, back off
        and do it again, until no subscription is left."""
        while self._subs:
            conn = self.redis.connection_pool.make_connection()  # type: ignore[no-untyped-call]
            try:
                await conn.connect()
                await conn.send_command("CLIENT", "SETNAME", self.name, check_health=False)
                with contextlib.suppress(ResponseError):  # refused by an ACL: unnamed then
                    await conn.read_response()
                self.connections += 1
                self._reached()
                self._sent.clear()
                self._confirmed.clear()
                self._conn = conn  # from here, new subscriptions are sent by `_add`
                keys = list(self._subs)
                await self._send(False, True, [k for k in keys if not k[0]])
                await self._send(True, True, [k for k in keys if k[0]])
                await self._read(conn)
            except (RedisError, OSError) as exc:
                self._failed(exc)
            except Exception as exc:  # a bug here must not end every listener of the process
                log.exception("pub/sub: the reader failed")
                self._failed(exc)
            finally:
                if self._conn is conn:  # (not if a newer reader has taken over)
                    self._conn = None
                    for subs in list(self._subs.values()):
                        for sub in subs:
                            sub._lost()
                await conn.disconnect(nowait=True)
            if self._subs:
                await asyncio.sleep(self.backoff.next())

    async def _read(self, conn: Any) -> None:
        """Read and dispatch until the connection fails, with a watchdog beside it: a read with
        a timeout would cost every message a timer, so the reader blocks and the watchdog
        counts what it read."""
        reader = asyncio.ensure_future(self._dispatch(conn))
        try:
            pinged = False
            while True:
                if not pinged:  # after a PING, what was read before it: its pong may come
                    seen = self._reads  # in while it is being sent
                done, _ = await asyncio.wait((reader,), timeout=self.health_every)
                if done:
                    reader.result()  # the connection's error
                    return
                if self._reads != seen:
                    pinged = False
                elif pinged:  # nothing at all, not even the PING's answer
                    raise TimeoutError(f"no answer to a PING in {self.health_every:.0f}s")
                else:
                    await conn.send_command("PING", check_health=False)
                    pinged = True
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
                await reader

    async def _dispatch(self, conn: Any) -> None:
        stream = getattr(conn, "_reader", None)
        if hiredis is None or not isinstance(stream, asyncio.StreamReader):
            while True:  # redis-py's own parser: the same replies, more layers
                reply = await conn.read_response(
                    timeout=math.inf, disable_decoding=True, push_request=True
                )
                self._reads += 1
                if isinstance(reply, list) and reply:
                    self._on_reply(reply)
        # Read the socket with a parser of our own: redis-py's handles every pub/sub message
        # as a push notification, formatting it for a debug line each time, and hands them
        # over one read call at a time. Here one read of the socket dispatches everything it
        # brought. (The connection was made and set up by redis-py, which read every reply
        # it asked for: nothing of it is left in its parser.)
        parser = hiredis.Reader()
        while True:
            data = await stream.read(65536)
            if not data:
                raise ConnectionError("Connection closed by server.")
            parser.feed(data)
            try:
                while (reply := parser.gets()) is not False:
                    self._reads += 1
                    if isinstance(reply, list) and reply:
                        self._on_reply(reply)
            except hiredis.ProtocolError as exc:
                raise ConnectionError(f"unreadable reply from Redis: {exc}") from exc

    def _on_reply(self, reply: list[Any]) -> None:
        kind = _KINDS.get(reply[0])
        if kind is None:
            return  # a PING's pong
        pattern, what = kind
        key = (pattern, reply[1].decode())
        if what == "message":
            subs = self._subs.get(key)
            if subs:
                channel = reply[2].decode() if pattern else key[1]
                data = reply[3] if pattern else reply[2]
                for sub in tuple(subs) if len(subs) > 1 else subs:
                    sub._deliver(channel, data)
        elif what == "subscribe":
            count = self._confirmed[key] = self._confirmed.get(key, 0) + 1
            for sub in self._subs.get(key, ()):
                if not sub.active and sub._ticket and count >= sub._ticket:
                    sub._confirmed()
        elif key not in self._subs and self._sent.get(key) == self._confirmed.get(key):
            # Unsubscribed with nothing outstanding: forget its counts (reply channels are
            # many and short-lived).
            self._sent.pop(key, None)
            self._confirmed.pop(key, None)

    def _reached(self) -> None:
        redis_outage.reachable()
        self.backoff.reset()
        if self._failing:
            log.info("pub/sub: connected again; subscribing to %d channel(s)", len(self._subs))
        self._failing = False

    def _failed(self, exc: BaseException) -> None:
        outage = is_outage(exc)
        if outage:
            redis_outage.failed(exc, "the pub/sub subscriber")
        if not self._failing:
            # Once per outage, at INFO when the outage is the reason: the process's record has
            # warned about it already.
            log.log(
                logging.INFO if outage else logging.WARNING,
                "pub/sub: connection lost (%s: %s); subscribing again when Redis answers",
                type(exc).__name__,
                exc,
            )
        else:
            log.debug("pub/sub: still not connected (%s)", exc)
        self._failing = True
