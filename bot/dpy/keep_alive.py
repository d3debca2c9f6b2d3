"""Each shard's heartbeat latency and the age of its last event, read from discord.py's
keep-alive handler of the shard's connection.

discord.py's public `latency` is inf until the first HEARTBEAT_ACK of a connection, and that
first ACK misleads (`HeartbeatLatency`); nor does it say when a shard last heard anything.

Relies on: `ShardInfo._parent` (the `Shard`), its `ws`, the connection's handler in
`DiscordWebSocket._keep_alive` (made anew for each connection, at HELLO), and the handler's
`latency`, `_last_ack` and `_last_recv` (perf_counter times). Read defensively all the same:
a shard between connections has no handler.
"""

from __future__ import annotations

import math
import time

import discord

RELIES_ON = (
    "discord.shard:ShardInfo._parent",
    "discord.shard:Shard.ws",
    "discord.gateway:DiscordWebSocket._keep_alive",
    "discord.gateway:KeepAliveHandler.latency",
    "discord.gateway:KeepAliveHandler._last_ack",
    "discord.gateway:KeepAliveHandler._last_recv",
)


def _keep_alive(shard: discord.ShardInfo | None) -> object:
    ws = getattr(getattr(shard, "_parent", None), "ws", None)
    return getattr(ws, "_keep_alive", None)


def last_event_age(shard: discord.ShardInfo | None) -> float | None:
    """Seconds since the shard's websocket last received anything (an event or a heartbeat
    ACK)."""
    last = getattr(_keep_alive(shard), "_last_recv", None)
    if not isinstance(last, float):
        return None
    return round(max(0.0, time.perf_counter() - last), 1)


class HeartbeatLatency:
    """Each shard's heartbeat latency, or None while it is still being measured.

    discord.py's `latency` is inf until the first HEARTBEAT_ACK of a connection, and that
    first ACK answers the heartbeat sent at HELLO, before IDENTIFY: discord.py reads it only
    after IDENTIFY, which waits its turn in the identify queue, so it measures that wait
    (about 2 s was seen), and stands for one heartbeat interval (41.25 s on Discord). So the
    first ACK of each connection is not shown as a measurement: None until the second."""

    def __init__(self) -> None:
        # shard -> (its connection's keep-alive handler, the time of that handler's first ACK)
        self._first: dict[int, tuple[object, float]] = {}

    def of(self, shard_id: int, shard: discord.ShardInfo | None) -> float | None:
        keep_alive = _keep_alive(shard)
        latency = getattr(keep_alive, "latency", None)
        last_ack = getattr(keep_alive, "_last_ack", None)
        if not isinstance(latency, float) or not math.isfinite(latency):
            return None  # no ACK yet on this connection
        if not isinstance(last_ack, float):
            return None
        first = self._first.get(shard_id)
        if first is None or first[0] is not keep_alive:
            # Seen within a second of the first ACK (the worker reports once a second), long
            # before the second, one heartbeat interval later.
            self._first[shard_id] = (keep_alive, last_ack)
            return None
        return None if last_ack == first[1] else latency
