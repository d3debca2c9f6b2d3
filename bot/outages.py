"""PostgreSQL or Redis out of reach: which errors mean that, and this worker's view of each.

The one place that knows which exceptions mean "the server can't be reached right now" (as
opposed to a bug, or a query the server refused): the central command error handler
(bot/errors.py) and the background loops (reminder scheduler, XP flusher, settings listeners)
all ask `server_of`, so they agree on what an outage is.

An outage is logged once per server, not once per command or per retry: the first failure
logs a WARNING, the first success afterwards an INFO, and in between the callers stay quiet
(DEBUG). `guildhouse_backend_outages_total` counts the outages and `guildhouse_backend_down`
is 1 while one lasts. For PostgreSQL the pool reports both directions itself (bot/db/pool.py:
every connection attempt and every query), so the state is right whoever hit the error; Redis
has no such hook in redis-py, so the components that use it report what they see.

The Redis view is not this module's own: it is ipc/client.py's `redis_outage`, the one record
of the process that the components of ipc/ (IPC bus, throttles, REST limiter, IDENTIFY
queue) report to as well, and which ipc owns because ipc may not import the bot. This module
makes it speak for the worker (`report_as`: its lines come from `bot.outages`, like
PostgreSQL's) and counts it in the metrics (`watch`), so one Redis outage is one WARNING,
one INFO and one increase of `guildhouse_backend_outages_total{server="redis"}` whichever
part of the worker met it first.
"""

from __future__ import annotations

import logging
import re

import asyncpg
from redis import exceptions as redis_errors

from bot import metrics
from ipc.client import Outage, is_outage, process_cluster, redis_outage

log = logging.getLogger(__name__)

POSTGRES = "postgres"
REDIS = "redis"

# asyncpg says "connection is closed" / "pool is closing" as a bare InterfaceError; its other
# InterfaceErrors are misuse (a bug), not an outage.
_CLOSED = re.compile(r"\b(connection|pool) is clos(ed|ing)\b")
# Connection refused, reset, timed out, no route: which server's, the traceback tells.
_LIBRARIES = (("asyncpg", POSTGRES), ("redis", REDIS))


def server_of(exc: BaseException) -> str | None:
    """POSTGRES or REDIS if `exc` (or what it was raised from) means that server can't be
    reached right now; None for anything else."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found = _server_of_one(current)
        if found is not None:
            return found
        # Only explicit chaining (`raise ... from`): an implicit __context__ may be an error
        # that was handled before an unrelated one.
        current = current.__cause__
    return None


def _server_of_one(exc: BaseException) -> str | None:
    if isinstance(exc, BaseExceptionGroup):
        found = {server_of(e) for e in exc.exceptions}
        return found.pop() if len(found) == 1 else None
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        # 08: connection exceptions (08P01 is a protocol violation: a bug). 57P: operator
        # intervention - shut down by an admin or a crash, starting up, database dropped.
        if (state.startswith("08") and state != "08P01") or state.startswith("57P"):
            return POSTGRES
        return None
    if isinstance(exc, asyncpg.InterfaceError):
        return POSTGRES if _CLOSED.search(str(exc)) else None
    if isinstance(exc, redis_errors.RedisError):
        # ipc decides for its own components too: both sides agree on a Redis outage.
        return REDIS if is_outage(exc) else None
    if isinstance(exc, OSError):  # TimeoutError included (acquire, connect)
        return _raised_in(exc)
    return None


def _raised_in(exc: BaseException) -> str | None:
    """The server whose client library the exception last passed through, if any."""
    found = None
    tb = exc.__traceback__
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        for package, server in _LIBRARIES:
            if module == package or module.startswith(package + "."):
                found = server
        tb = tb.tb_next
    return found


# What a worker does while a server is away, for the outage's one WARNING.
_MEANWHILE = "commands that need it say so, background work retries until it is back"


def _export(view: Outage) -> None:
    """The outage metrics of a view, at each change and when its state is first known (the
    series exist at 0 from then on, so a first outage is an increase, not a new series)."""
    cluster = process_cluster()
    if view.down:
        metrics.BACKEND_OUTAGES.labels(cluster, view.kind).inc()
        metrics.BACKEND_DOWN.labels(cluster, view.kind).set(1)
    else:
        metrics.BACKEND_OUTAGES.labels(cluster, view.kind)
        metrics.BACKEND_DOWN.labels(cluster, view.kind).set(0)


class Server(Outage):
    """One worker's view of one server: reachable, or down since when (logged here, counted
    in the metrics). `failed(exc, where)` when `where` (a command, a loop) found it
    unreachable, `reachable()` when something just worked with it."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(kind, name, log=log, meanwhile=_MEANWHILE)
        self.watch(_export)


postgres: Outage = Server(POSTGRES, "PostgreSQL")
# The process's one Redis record, which ipc/ reports to: see the module's docstring.
redis: Outage = redis_outage
redis.report_as(log, _MEANWHILE)
redis.watch(_export)
SERVERS: dict[str, Outage] = {POSTGRES: postgres, REDIS: redis}


def note(exc: BaseException, where: str) -> str | None:
    """If `exc` means a server is unreachable, record it (logged once per outage) and return
    which; None otherwise, and the caller handles `exc` as it would any other error."""
    found = server_of(exc)
    if found is not None:
        SERVERS[found].failed(exc, where)
    return found
