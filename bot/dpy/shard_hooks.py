"""How Guildhouse hooks into AutoShardedClient's connection of each shard.

Three hooks (bot/shard_lifecycle.py does the work behind them), and what each relies on:

- `launch_shard(gateway, shard_id, *, initial)`, overridden by Guildhouse: a shard waits its
  turn in the IDENTIFY queue before it connects, and a stop cuts the wait short. discord.py's
  `connect` calls it once per shard, one after another; on a failed connection it logs, sleeps
  5 s and calls itself again, for ever, so the override runs again, and what it does after
  discord.py's own must be idempotent. When it returns, the shard's `Shard` exists.
- `before_identify_hook(shard_id, *, initial)` (public API), awaited before every IDENTIFY:
  the first and each after a lost session, not before a RESUME.
- `install(info, on_fatal_close)`: a fatal close of one shard kept from ending the whole
  client. discord.py hands a shard's disconnects to the client's event queue through the
  callable the `Shard` was given (`Shard._queue_put`, reached through `ShardInfo._parent`), and
  its `connect` loop ends the client, every shard, on a fatal close code of any one
  (`EventItem.error`: a `ConnectionClosed`, or `PrivilegedIntentsRequired` for a 4014).
  Wrapping that callable touches two private names and no logic: overriding `connect` would
  copy its loop and reach for the name-mangled queue itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import discord

from bot.shards import FATAL_CLOSES

if TYPE_CHECKING:
    from discord.shard import EventItem

RELIES_ON = (
    "discord.shard:AutoShardedClient.launch_shard(self, gateway, shard_id, *, initial)",
    "discord.client:Client.before_identify_hook(self, shard_id, *, initial)",
    "discord.shard:ShardInfo._parent",
    "discord.shard:Shard._queue_put",
    "discord.shard:EventItem.error",
)


def fatal_close_code(error: BaseException | None) -> int | None:
    """The close code, if `error` is a gateway close after which discord.py gives up."""
    if isinstance(error, discord.PrivilegedIntentsRequired):
        return 4014  # discord.py replaces the ConnectionClosed of a 4014 with this
    if isinstance(error, discord.ConnectionClosed) and error.code in FATAL_CLOSES:
        return error.code
    return None


def install(info: discord.ShardInfo | None, on_fatal_close: Callable[[int], bool]) -> bool:
    """Call `on_fatal_close(code)` for a fatal close of the shard `info` is about, instead of
    handing it to discord.py (which ends the client), when that returns True. Everything else
    passes through unchanged. False if the shard can't be guarded (not launched)."""
    parent = getattr(info, "_parent", None)
    put = getattr(parent, "_queue_put", None)
    if parent is None or put is None:
        return False

    def queue_put(item: EventItem) -> None:
        code = fatal_close_code(item.error)
        if code is None or not on_fatal_close(code):
            put(item)

    parent._queue_put = queue_put
    return True
