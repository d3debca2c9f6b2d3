"""A gateway event its parser can't read is dropped and logged, not the end of the client.

discord.py hands each dispatch event to its parser (`ConnectionState.parse_<event>`, through
the `parsers` dict the state builds in `__init__`, which each connection reads when it is
made) straight from the shard's read loop. An exception there ends `Shard.worker` with
`EventType.terminate`, and `AutoShardedClient.connect` then closes the client: every shard of
the worker, which the launcher restarts, every shard IDENTIFYing again. A payload off
Discord's documented structure (a field missing, an id that is not a snowflake) would do that,
and so would a bug in a parser of ours (bot/dpy/chat_state.py). `guard` wraps each parser:
such an event is dropped, logged (its type, the guild if the payload names one, the error;
the first of each type with its traceback) and counted in
`guildhouse_gateway_events_dropped_total`, and the shard reads on.

An event dropped half-way may have changed part of the cache (a guild half updated); the next
event about the same thing sets it right, as after any event that never arrived.

Relies on: `ConnectionState.parsers`, a dict of event name -> parser set in
`ConnectionState.__init__` and read by every connection (`DiscordWebSocket.from_client`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from discord.state import ConnectionState

from bot import metrics
from ipc.client import process_cluster

log = logging.getLogger(__name__)

RELIES_ON = ("discord.state:ConnectionState.parsers",)

Parser = Callable[[Any], None]


def guard(state: ConnectionState) -> None:
    """Wrap every parser of `state` (in place: connections made later read the same dict)."""
    seen: set[str] = set()  # event types dropped once already: no traceback again
    parsers = state.parsers
    for event, parse in list(parsers.items()):
        parsers[event] = _guarded(event, parse, seen)


def _guarded(event: str, parse: Parser, seen: set[str]) -> Parser:
    def guarded(data: Any) -> None:
        try:
            parse(data)
        except Exception as exc:
            _dropped(event, data, exc, seen)

    return guarded


def _dropped(event: str, data: Any, exc: Exception, seen: set[str]) -> None:
    guild = data.get("guild_id") if isinstance(data, dict) else None
    where = f" in guild {str(guild)[:20]}" if guild is not None else ""
    first = event not in seen
    seen.add(event)
    log.error(
        "gateway event %s%s dropped: its payload could not be read (%s: %s)",
        event,
        where,
        type(exc).__name__,
        str(exc)[:200],
        exc_info=exc if first else None,
    )
    metrics.GATEWAY_DROPPED.labels(process_cluster(), event).inc()
