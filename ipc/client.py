"""The one way to build a Redis client, the names of our keys, and this process's one view of
whether Redis can be reached (`redis_outage`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

import redis.asyncio as aioredis
from prometheus_client import Counter
from redis import exceptions as redis_errors
from redis.asyncio.sentinel import Sentinel
from redis.commands.core import AsyncScript

REDIS_ERRORS = Counter(
    "guildhouse_redis_errors_total",
    "Redis operations that failed (and fell back where there is a fallback), by operation.",
    ["cluster", "operation"],
)
# Which cluster this process is, for the label above (a worker sets it once at start).
_process_cluster = [""]


def set_metrics_cluster(cluster_id: int) -> None:
    _process_cluster[0] = str(cluster_id)


def process_cluster() -> str:
    """This process's cluster id, as a metrics label ('' outside a worker)."""
    return _process_cluster[0]


def count_redis_error(operation: str) -> None:
    REDIS_ERRORS.labels(_process_cluster[0], operation).inc()


SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelUrl:
    """`redis+sentinel://[user:password@]host[:port][,host[:port]...]/service[/db][?query]`:
    the Sentinels to ask (port 26379 unless given) and the name of the primary they watch.

    The user and password are the primary's (as in a plain `redis://` URL); Sentinels that
    require a password of their own get it as `?sentinel_password=...`. `rediss+sentinel`
    speaks TLS to the primary."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None
    tls: bool = False


def _host_port(item: str) -> tuple[str, int]:
    if item.startswith("["):  # [IPv6]:port
        host, _, rest = item[1:].partition("]")
        port_text = rest.removeprefix(":")
    else:
        host, _, port_text = item.rpartition(":") if ":" in item else (item, "", "")
    if not host:
        raise ValueError(f"{item!r} names no host")
    if not port_text:
        return host, SENTINEL_PORT
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{item!r} has an invalid port; expected a number from 1 to 65535")
    return host, int(port_text)


def parse_sentinel_url(url: str) -> SentinelUrl | None:
    """The Sentinels and service a `redis+sentinel://` URL names; None for any other URL.
    Raises ValueError, saying what is wrong, for a malformed one."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep or scheme.lower() not in SENTINEL_SCHEMES:
        return None
    rest, _, query_text = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        userinfo, hosts = "", netloc
    sentinels = tuple(_host_port(h.strip()) for h in hosts.split(",") if h.strip())
    if not sentinels:
        raise ValueError("names no Sentinel; expected redis+sentinel://host:26379/service")
    service, _, db_text = path.strip("/").partition("/")
    if not service:
        raise ValueError("names no service; expected redis+sentinel://host:26379/service")
    if db_text and not db_text.isdigit():
        raise ValueError(f"has database {db_text!r}; expected a number")
    username, _, password = userinfo.partition(":")
    query = parse_qs(query_text)
    unknown = set(query) - {"sentinel_password"}
    if unknown:
        raise ValueError(f"has unknown option {sorted(unknown)[0]!r}; known: sentinel_password")
    return SentinelUrl(
        sentinels=sentinels,
        service=unquote(service),
        db=int(db_text or 0),
        username=unquote(username) or None,
        password=unquote(password) or None,
        sentinel_password=query.get("sentinel_password", [None])[0],
        tls=scheme.lower() == "rediss+sentinel",
    )


class SentinelRedis(aioredis.Redis):
    """A client of the primary the Sentinels name: each new connection asks them where it is
    (redis-py's `SentinelConnectionPool`), so after a failover the client reconnects to the
    new primary by itself. Closing it closes the Sentinel connections too."""

    sentinel_manager: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinel_manager is not None:
            for client in self.sentinel_manager.sentinels:
                await client.aclose()


def create_redis(url: str, *, max_connections: int = 64) -> aioredis.Redis:
    """A `redis.asyncio` client (bytes in, bytes out) with a bounded connection pool.

    `url` is a plain Redis URL (`redis://`, `rediss://`, `unix://`) or names Sentinels
    (`redis+sentinel://host:26379,host2:26379/mymaster`, see `SentinelUrl`): then the client
    follows the primary through failovers. Build it in an entry point with
    `async with create_redis(url) as r:` so it is closed there.
    """
    options: dict[str, Any] = {
        "max_connections": max_connections,
        "health_check_interval": 30,
        "socket_connect_timeout": 5,
        "socket_keepalive": True,
        "retry_on_timeout": True,
    }
    target = parse_sentinel_url(url)
    if target is None:
        return aioredis.Redis.from_url(url, **options)
    sentinel_options: dict[str, Any] = {"socket_connect_timeout": 5, "socket_timeout": 5}
    if target.sentinel_password:
        sentinel_options["password"] = target.sentinel_password
    sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_options)  # type: ignore[no-untyped-call,unused-ignore]  # typed from redis 8.2
    client: SentinelRedis = sentinel.master_for(
        target.service,
        redis_class=SentinelRedis,
        db=target.db,
        username=target.username,
        password=target.password,
        ssl=target.tls,
        **options,
    )
    client.sentinel_manager = sentinel
    return client


@dataclass(frozen=True)
class ScriptCall:
    """A registered Lua script with its keys and arguments, for one component to run inside
    another's round trip (see `Throttle.hit(also=...)`)."""

    script: AsyncScript
    keys: list[str]
    args: list[str | int]


class Keys:
    """Every Redis key we write starts with one configurable prefix (REDIS_PREFIX).

    Several bots, or a test run beside a dev run, can share one Redis without collisions.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, *parts: str | int) -> str:
        return self.prefix + ":".join(str(p) for p in parts)


# A ConnectionError that is not about reaching the server: a wrong password or ACL, or this
# process's own connection pool full.
_NOT_AN_OUTAGE = (
    redis_errors.AuthenticationError,
    redis_errors.AuthorizationError,
    redis_errors.MaxConnectionsError,
)


def is_outage(exc: BaseException) -> bool:
    """Whether `exc`, raised by a Redis call, means Redis can't be reached right now: redis-py's
    ConnectionError (BusyLoadingError, a restarted server reading its AOF, included) or
    TimeoutError, or a socket error. Not a script error, a refused password or a full pool:
    those are problems of their own, and each component logs them as it always did."""
    if isinstance(exc, redis_errors.RedisError):
        if isinstance(exc, _NOT_AN_OUTAGE):
            return False
        return isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError)
    return isinstance(exc, OSError)  # TimeoutError included


class Outage:
    """One process's view of one server: reachable, or down since when, and what noticed first.

    Every component that uses the server reports to the same record (`failed` when a call
    could not reach it, `reachable` when one did), so an outage is logged once per process:
    a WARNING when it starts, naming what noticed it first and the error, and an INFO when
    something reaches the server again, with how long it was away. Each component says at INFO
    what it does meanwhile (falls back, retries), and callers stay quiet in between.

    ipc/ imports nothing of the bot, so the record does not know who runs it: the bot's code
    may tell it which logger speaks and what the process does meanwhile (`report_as`), and be
    told of each change (`watch`). bot/outages.py does both when it is imported, making this
    its Redis view: the lines come from `bot.outages` and the changes are counted in the
    worker's outage metrics (in the launcher too, which imports it with the bot's entry point;
    its label there is cluster ''). A process without the bot's code logs as `ipc.client`.
    """

    def __init__(
        self,
        kind: str,
        name: str,
        *,
        log: logging.Logger | None = None,
        meanwhile: str = "what uses it falls back or retries until it is back",
    ) -> None:
        self.kind = kind
        self.name = name
        self.log = logging.getLogger(__name__) if log is None else log
        self.meanwhile = meanwhile
        self.down = False
        self.since = 0.0  # monotonic, when the current outage was noticed
        self.noticed_by = ""  # what noticed the current (or last) outage first
        self.outages = 0  # this process's count
        self._known = False  # reported on at least once (watchers have seen the state)
        self._watchers: list[Callable[[Outage], None]] = []

    def report_as(self, log: logging.Logger, meanwhile: str) -> None:
        """Log the outage lines with `log`, saying `meanwhile` what the process does."""
        self.log = log
        self.meanwhile = meanwhile

    def watch(self, watcher: Callable[[Outage], None]) -> None:
        """Call `watcher(self)` when the state is first known and at every change after."""
        self._watchers.append(watcher)
        if self._known:
            watcher(self)

    def failed(self, exc: BaseException, where: str) -> bool:
        """`where` (a component, a command, a loop) could not reach the server. True if that
        started an outage."""
        if self.down:
            return False
        self.down = True
        self.since = time.monotonic()
        self.noticed_by = where
        self.outages += 1
        self._known = True
        self.log.warning(
            "%s is unreachable (%s: %s: %s); %s",
            self.name,
            where,
            type(exc).__name__,
            exc,
            self.meanwhile,
        )
        self._tell()
        return True

    def reachable(self) -> bool:
        """Something just reached the server (cheap when nothing changed: callers report
        every success). True if that ended an outage."""
        if self.down:
            self.down = False
            self.log.info(
                "%s is reachable again after %.1fs", self.name, time.monotonic() - self.since
            )
            self._tell()
            return True
        if not self._known:
            self._known = True
            self._tell()
        return False

    def _tell(self) -> None:
        for watcher in self._watchers:
            watcher(self)


# This process's Redis, whoever uses it: every component of ipc/ reports here.
redis_outage = Outage("redis", "Redis")


class Degraded:
    """Whether Redis is reachable, as one component sees it, for its fallback.

    While Redis is down, callers use a local fallback; one call per `probe_every` seconds tries
    Redis again (the others don't wait on connection attempts and retries). What the component
    sees goes to the process's record too (`outage`, by default `redis_outage`), which logs the
    outage's one WARNING and its end; the component's own lines, that it falls back and that it
    is back, are INFO. An error that is not an outage (`is_outage`: a script error, say) still
    switches to the fallback, and its line stays a WARNING: nothing else reports it.
    """

    def __init__(
        self,
        log: logging.Logger,
        down: str,
        back: str,
        probe_every: float = 1.0,
        *,
        operation: str = "",
        what: str = "",
        outage: Outage | None = None,
    ):
        self.log = log
        self.operation = operation or log.name.rsplit(".", 1)[-1]
        self.what = what or self.operation
        self.outage = redis_outage if outage is None else outage
        self.down_message = down
        self.back_message = back
        self.probe_every = probe_every
        self.down = False
        self._next_probe = 0.0

    def should_try(self) -> bool:
        if not self.down:
            return True
        now = time.monotonic()
        if now < self._next_probe:
            return False
        self._next_probe = now + self.probe_every  # this caller probes; the rest stay local
        return True

    def failed(self, exc: BaseException) -> None:
        count_redis_error(self.operation)
        self._next_probe = time.monotonic() + self.probe_every
        outage = is_outage(exc)
        if outage:
            # Also while this component is already down: Redis may have come back and gone
            # again (another component saw it) before this one probed.
            self.outage.failed(exc, self.what)
        if not self.down:
            self.down = True
            self.log.log(logging.INFO if outage else logging.WARNING, self.down_message, exc)

    def succeeded(self) -> None:
        self.outage.reachable()
        if self.down:
            self.down = False
            self.log.info(self.back_message)
