"""Context for log lines: which cluster, shard, guild and command a record belongs to.

Set the context variables where the work starts (an event, a command); every record logged
while they are set carries them, and the JSON formatter of the entry point prints them.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any

cluster: contextvars.ContextVar[int | None] = contextvars.ContextVar("cluster", default=None)
shard: contextvars.ContextVar[int | None] = contextvars.ContextVar("shard", default=None)
guild: contextvars.ContextVar[int | None] = contextvars.ContextVar("guild", default=None)
command: contextvars.ContextVar[str | None] = contextvars.ContextVar("command", default=None)

_VARS: dict[str, contextvars.ContextVar[Any]] = {
    "cluster": cluster,
    "shard": shard,
    "guild": guild,
    "command": command,
}


def install() -> None:
    """Make every LogRecord of this process carry the current context (idempotent)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "guildhouse_context", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        for name, var in _VARS.items():
            value = var.get()
            if value is not None and getattr(record, name, None) is None:
                setattr(record, name, value)
        return record

    factory.guildhouse_context = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
