"""Record a heartbeat's send time before sending it, so a fast HEARTBEAT_ACK reads as fast.

discord.py 2.7.1 sends each periodic heartbeat from its keep-alive thread
(`KeepAliveHandler.run`): it hands `DiscordWebSocket.send_heartbeat` to the event loop, waits
for it, and only then sets `_last_send`. When the gateway answers quickly (the sandbox, a
gateway proxy) and the loop is busy, the loop handles the ACK (`KeepAliveHandler.ack`:
`latency = now - _last_send`) before the thread gets the GIL back to set `_last_send`, so it
measures from the previous heartbeat: the latency reads as the whole interval (41.25 s against
Discord), `bot.latency` and the shard latency metrics say so, and discord.py warns "Can't keep
up, shard ID 0 websocket is 41.3s behind."

Upstream's fix (discord.py PR #10448) sets `_last_send` on the event loop right before sending.
`install()` does the same from the outside, by wrapping `DiscordWebSocket.send_heartbeat`. The
thread still sets `_last_send` again after the send, as before: harmless (an ACK that arrives
after that reads a little low, as it always did). A discord.py that carries the fix has
`KeepAliveHandler._send_heartbeat`, and there `install()` does nothing. Remove this module once
the discord.py release we require carries the fix. (Voice connections keep the race; Guildhouse
has none.)

How slow the thread can be: behind a loop running short CPU bursts between `sleep(0)`s, it
waited up to a second for the GIL in trials for tests/bot/dpy/test_heartbeat.py; under load
the race is not rare.

Relies on: `DiscordWebSocket.send_heartbeat(data)` being what the keep-alive thread hands to
the loop, the connection's handler in `DiscordWebSocket._keep_alive` and its send time in
`KeepAliveHandler._last_send`, which `ack()` subtracts.
"""

from __future__ import annotations

import time
from typing import Any

from discord.gateway import DiscordWebSocket, KeepAliveHandler

RELIES_ON = (
    "discord.gateway:DiscordWebSocket.send_heartbeat(self, data)",
    "discord.gateway:DiscordWebSocket._keep_alive",
    "discord.gateway:KeepAliveHandler._last_send",
)

_ORIGINAL = DiscordWebSocket.send_heartbeat


async def _send_heartbeat(self: DiscordWebSocket, data: Any) -> None:
    keep_alive = self._keep_alive
    if keep_alive is not None:
        keep_alive._last_send = time.perf_counter()
    await _ORIGINAL(self, data)


def needed() -> bool:
    """Whether the installed discord.py still records the send time after sending."""
    return not hasattr(KeepAliveHandler, "_send_heartbeat")


def install() -> None:
    """Apply the fix to every gateway connection of this process (idempotent)."""
    if needed():
        DiscordWebSocket.send_heartbeat = _send_heartbeat  # type: ignore[method-assign]
