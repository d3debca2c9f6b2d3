"""A zombied gateway connection (its heartbeats go un-ACKed) is closed and RESUMEd.

Discord's gateway documentation (Sending Heartbeats): "If a client does not receive a heartbeat
ACK between its attempts at sending heartbeats, this may be due to a failed or "zombied"
connection. The client should immediately terminate the connection with any close code
besides `1000` or `1001`, then reconnect and attempt to Resume." discord.py 2.7.1's keep-alive
thread closes a connection only when nothing at all has been received for
`heartbeat_timeout` (60 s), so a shard whose ACKs stop while events still come (or nothing
comes) stays READY and is not noticed for a minute or ever.

`install()` wraps `DiscordWebSocket.send_heartbeat`, which the keep-alive thread hands to the
event loop for each periodic heartbeat. It wraps what is there, so it is installed after
heartbeat.py (whose `install()` replaces the method with its own wrapper of discord.py's). The
wrapper notes on the connection's handler when it sent a heartbeat; if the next one is due and
no HEARTBEAT_ACK came since (the handler's `_last_ack`, which `ack()` sets, is older), it does
not send it but closes the connection with 4000 (`DiscordWebSocket.close`, which also stops the
keep-alive thread, as discord.py's own 60 s check does). The shard's `poll_event` then sees a
close it can handle and raises `ReconnectWebSocket` (resume), so the shard RESUMEs with its
session: no IDENTIFY, and the gateway replays what was missed. The heartbeat sent at HELLO and
one the gateway asks for (op 1) go through `send_as_json`, not here, and are not counted: only
the thread's periodic heartbeats, one interval apart, are compared, so a connection is closed
when the periodic heartbeat after an un-ACKed one is due: one to two intervals after the ACKs
stopped. Both the wrapper and `ack()` run on the event loop, so the two can't race.

Relies on: `DiscordWebSocket.send_heartbeat(self, data)` being what the keep-alive thread
hands to the loop, the connection's handler in `DiscordWebSocket._keep_alive`, its
`_last_ack` (a perf_counter time set by `ack()`), `DiscordWebSocket.close(self, code)`, and
`poll_event` reconnecting with a resume on a 4000 close (`_can_handle_close`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from discord.gateway import DiscordWebSocket

RELIES_ON = (
    "discord.gateway:DiscordWebSocket.send_heartbeat(self, data)",
    "discord.gateway:DiscordWebSocket.close(self, code)",
    "discord.gateway:DiscordWebSocket._keep_alive",
    "discord.gateway:DiscordWebSocket._can_handle_close",
    "discord.gateway:KeepAliveHandler._last_ack",
)

log = logging.getLogger(__name__)

# Not 1000 or 1001 (those end a session: Discord would not let it RESUME); 4000 is what
# discord.py closes with on its own timeout, and it reconnects with a resume after it.
CLOSE_CODE = 4000
# The handler attribute: when the last periodic heartbeat was sent (perf_counter), or absent.
_SENT = "_guildhouse_heartbeat_sent"

SendHeartbeat = Callable[[DiscordWebSocket, Any], Coroutine[Any, Any, None]]


def _wrap(send: SendHeartbeat) -> SendHeartbeat:
    async def send_heartbeat(self: DiscordWebSocket, data: Any) -> None:
        keep_alive = self._keep_alive
        if keep_alive is None:
            await send(self, data)
            return
        sent = getattr(keep_alive, _SENT, None)
        if isinstance(sent, float) and keep_alive._last_ack < sent:
            log.warning(
                "Shard ID %s sent a heartbeat %.1fs ago that was never ACKed: the connection "
                "is zombied; closing it (%d) to reconnect and RESUME",
                self.shard_id,
                time.perf_counter() - sent,
                CLOSE_CODE,
            )
            await self.close(CLOSE_CODE)
            return
        setattr(keep_alive, _SENT, time.perf_counter())
        await send(self, data)

    send_heartbeat.__wrapped__ = send  # type: ignore[attr-defined]
    send_heartbeat._guildhouse_zombie = True  # type: ignore[attr-defined]
    return send_heartbeat


def installed() -> bool:
    return getattr(DiscordWebSocket.send_heartbeat, "_guildhouse_zombie", False)


def install() -> None:
    """Close and RESUME zombied gateway connections in this process (idempotent)."""
    if not installed():
        DiscordWebSocket.send_heartbeat = _wrap(DiscordWebSocket.send_heartbeat)  # type: ignore[method-assign,assignment]
