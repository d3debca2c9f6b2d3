"""What each shard of this worker is doing, for the launcher's probes and the hung-shard watch.

discord.py already reconnects a shard whose heartbeats go unanswered (a zombie connection).
What it does not do is notice a shard that never gets to READY (stuck in an identify or
invalid-session loop); the watch below reconnects such a shard, and the launcher reads these
states for /readyz and `guildhouse status`.
"""

from __future__ import annotations

import enum
import time
from typing import Protocol


class ShardState(enum.IntEnum):
    STARTING = 0  # not connected yet (waiting in the identify queue, say)
    CONNECTING = 1  # connected, waiting for READY/RESUMED
    READY = 2
    DISCONNECTED = 3


class Reporter(Protocol):
    """How a worker tells its launcher it is alive and how its shards are (cluster/ provides)."""

    def heartbeat(self) -> None: ...

    def shard(self, shard_id: int, state: ShardState, latency: float | None) -> None: ...


class ShardTracker:
    def __init__(self, shard_ids: tuple[int, ...]) -> None:
        now = time.monotonic()
        self.states = dict.fromkeys(shard_ids, ShardState.STARTING)
        self.since = dict.fromkeys(shard_ids, now)

    def update(self, shard_id: int, state: ShardState) -> None:
        if shard_id in self.states and self.states[shard_id] != state:
            self.states[shard_id] = state
            self.since[shard_id] = time.monotonic()

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
