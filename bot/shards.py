"""What each shard of this worker is doing, for the launcher's probes and the hung-shard watch.

discord.py already reconnects a shard whose heartbeats go unanswered (a zombie connection).
What it does not do is notice a shard that never gets to READY (stuck in an identify or
invalid-session loop); the watch below reconnects such a shard, and the launcher reads these
states for /readyz and `guildhouse status`.

Nor does it survive a fatal close code on one shard: it ends the whole client, every shard of
the worker with it. A shard that has been READY before proved the token and the intents, so a
fatal close later is about that one session (something sent on it, or Discord's side): the bot
reconnects that shard alone, and gives up on it (FAILED) only when the closes repeat
(`FatalClosePolicy`). Before its first READY a fatal close means the configuration is wrong,
and the worker stops with a line that says what to fix (`FATAL_CLOSES`).
"""

from __future__ import annotations

import enum
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol


class ShardState(enum.IntEnum):
    STARTING = 0  # not connected yet (waiting in the identify queue, say)
    CONNECTING = 1  # connected, waiting for READY/RESUMED
    READY = 2
    DISCONNECTED = 3
    FAILED = 4  # closed by the gateway too often; not reconnected until the worker restarts


# The close codes after which discord.py does not reconnect (DiscordWebSocket._can_handle_close),
# and what each means for whoever runs the bot.
FATAL_CLOSES: dict[int, str] = {
    4004: "authentication failed: the bot token is wrong or was reset",
    4010: "invalid shard: the shard id or count sent in IDENTIFY is not valid",
    4011: "sharding required: a shard would hold too many guilds; raise the shard count",
    4012: "invalid API version",
    4013: "invalid intents",
    4014: "disallowed intents: a privileged intent (or a request that needs one) is not "
    "enabled for this bot in the Developer Portal",
}


@dataclass(frozen=True)
class FatalClosePolicy:
    """How a READY-before shard comes back from a fatal close: after a backoff, with a new
    IDENTIFY; the `max_closes`-th fatal close within `window` seconds marks it FAILED."""

    base_delay: float = 1.0
    max_delay: float = 60.0
    max_closes: int = 3
    window: float = 600.0

    def delay(self, closes: int) -> float:
        """Exponential backoff with full jitter, so shards closed together don't IDENTIFY in
        step (they queue for the IDENTIFY turn anyway; this spreads the asking)."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** max(0, closes - 1)))
        return random.uniform(self.base_delay / 2, max(self.base_delay / 2, ceiling))


class Reporter(Protocol):
    """How a worker tells its launcher it is alive and how its shards are (cluster/ provides)."""

    def heartbeat(self) -> None: ...

    def shard(self, shard_id: int, state: ShardState, latency: float | None) -> None: ...


class ShardTracker:
    def __init__(self, shard_ids: tuple[int, ...], policy: FatalClosePolicy | None = None) -> None:
        now = time.monotonic()
        self.states = dict.fromkeys(shard_ids, ShardState.STARTING)
        self.since = dict.fromkeys(shard_ids, now)
        self.policy = policy or FatalClosePolicy()
        self._ever_ready: set[int] = set()
        self._fatal: dict[int, deque[float]] = {sid: deque() for sid in shard_ids}

    def update(self, shard_id: int, state: ShardState) -> None:
        # FAILED is final for this process: the disconnect event that follows the close, or
        # the hung-shard watch, must not make it look like a shard that is coming back.
        current = self.states.get(shard_id)
        if current is None or current in (state, ShardState.FAILED):
            return
        self.states[shard_id] = state
        self.since[shard_id] = time.monotonic()
        if state == ShardState.READY:
            self._ever_ready.add(shard_id)

    def got_ready(self, shard_id: int) -> None:
        """The shard's IDENTIFY was accepted (a READY arrived): token and intents are good."""
        if shard_id in self.states:
            self._ever_ready.add(shard_id)

    def was_ready(self, shard_id: int) -> bool:
        return shard_id in self._ever_ready

    def fatal_close(self, shard_id: int) -> int:
        """Count a fatal close of the shard; return how many fell within the policy's window
        (this one included). At `policy.max_closes` the shard is FAILED."""
        now = time.monotonic()
        closes = self._fatal.setdefault(shard_id, deque())
        closes.append(now)
        while closes and now - closes[0] > self.policy.window:
            closes.popleft()
        if len(closes) >= self.policy.max_closes:
            self.update(shard_id, ShardState.FAILED)
        return len(closes)

    def all_ready(self) -> bool:
        return all(s == ShardState.READY for s in self.states.values())

    def stuck(self, timeout: float) -> list[int]:
        """Shards that have been connected but not READY for longer than `timeout` s."""
        now = time.monotonic()
        return [
            sid
            for sid, state in self.states.items()
            if state in (ShardState.CONNECTING, ShardState.DISCONNECTED)
            and now - self.since[sid] > timeout
        ]


class GuildArrivals:
    """A shard is READY once the guilds its READY named have arrived, not 2 s later.

    READY lists the shard's guilds, all unavailable; a GUILD_CREATE follows for each. discord.py
    dispatches `shard_ready` only when no GUILD_CREATE has come for `guild_ready_timeout` (2 s)
    after the last one, so every shard's readiness (and a restart's, and `/readyz`) would wait
    that long for nothing. This counts the listed guilds down instead and marks the shard
    READY in the tracker when the last one arrives. discord.py's event still comes; it covers
    a guild that stays unavailable (an outage on Discord's side), which never completes the
    count.

    Fed from the client's `dispatch`, synchronously (`on`), so the states follow the gateway's
    order, not the order in which listener tasks happen to run.
    """

    EVENTS = frozenset({"shard_connect", "guild_available", "shard_disconnect"})

    def __init__(self, tracker: ShardTracker, guilds: Callable[[], Iterable[Any]]) -> None:
        """`guilds` gives the client's guilds (read at each READY)."""
        self.tracker = tracker
        self.guilds = guilds
        self._pending: dict[int, set[int]] = {}

    def on(self, event: str, arg: Any) -> None:
        """One of EVENTS and its argument."""
        if event == "shard_connect":
            # discord.py dispatches this on READY, having added its guilds as unavailable.
            shard_id: int = arg
            self.tracker.got_ready(shard_id)
            self.tracker.update(shard_id, ShardState.CONNECTING)
            listed = {g.id for g in self.guilds() if g.shard_id == shard_id and g.unavailable}
            complete = self.expect(shard_id, listed)
        elif event == "shard_disconnect":
            self.forget(arg)
            self.tracker.update(arg, ShardState.DISCONNECTED)
            return
        else:  # guild_available
            shard_id = arg.shard_id
            complete = self.arrived(shard_id, arg.id)
        if complete:
            self.tracker.update(shard_id, ShardState.READY)

    def expect(self, shard_id: int, guild_ids: set[int]) -> bool:
        """A READY named these guilds; True when there are none to wait for."""
        self._pending[shard_id] = set(guild_ids)
        if guild_ids:
            return False
        del self._pending[shard_id]
        return True

    def arrived(self, shard_id: int, guild_id: int) -> bool:
        """A listed guild's GUILD_CREATE; True when it was the shard's last one."""
        pending = self._pending.get(shard_id)
        if pending is None or guild_id not in pending:
            return False
        pending.discard(guild_id)
        if pending:
            return False
        del self._pending[shard_id]
        return True

    def forget(self, shard_id: int) -> None:
        """The shard disconnected: what its READY listed is no longer awaited."""
        self._pending.pop(shard_id, None)
