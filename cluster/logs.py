"""Log handlers for the entry points (launcher and worker processes).

Libraries and features only call `logging.getLogger(__name__)`; handlers are installed here,
once per process. JSON lines carry `cluster`, `shard`, `guild` and `command` when the record has
them: the worker's bot puts them there from its context variables.
"""

from __future__ import annotations

import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Any

import orjson

CONTEXT_FIELDS = ("cluster", "shard", "guild", "command", "error_id")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        tags = [
            f"{n}={getattr(record, n)}"
            for n in CONTEXT_FIELDS
            if getattr(record, n, None) is not None
        ]
        if tags:
            first, sep, rest = text.partition("\n")
            text = f"{first} [{' '.join(tags)}]{sep}{rest}"
        return text


def resolve_format(log_format: str) -> str:
    if log_format == "auto":
        return "text" if sys.stdout.isatty() else "json"
    return log_format


def setup(level: str, log_format: str, *, cluster: int | None = None) -> None:
    """Install the one stdout handler of this process."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter() if resolve_format(log_format) == "json" else TextFormatter()
    )
    if cluster is not None:
        handler.addFilter(_ClusterTag(cluster))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    _route_stray_output()
    # discord.py's gateway chatter at INFO is useful; its HTTP debug lines are not.
    logging.getLogger("discord.http").setLevel(max(logging.INFO, root.level))


class _ClusterTag(logging.Filter):
    def __init__(self, cluster: int) -> None:
        super().__init__()
        self.cluster = cluster

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "cluster", None) is None:
            record.cluster = self.cluster
        return True


def _route_stray_output() -> None:
    """What Python would print to stderr on its own (an uncaught exception in the main thread
    or another thread, an exception ignored in a destructor, a warning) goes through logging
    instead, so in JSON mode every line of the process is one JSON object."""
    stray = logging.getLogger("guildhouse.uncaught")

    def excepthook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, value, tb)
            return
        stray.critical("uncaught exception", exc_info=(kind, value, tb))

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None or isinstance(args.exc_value, SystemExit):
            return
        name = args.thread.name if args.thread is not None else "?"
        stray.error(
            "uncaught exception in thread %s",
            name,
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        )

    def unraisable_hook(args: Any) -> None:
        exc = args.exc_value
        stray.warning(
            "%s: %r",
            args.err_msg or "exception ignored",
            args.object,
            exc_info=(args.exc_type, exc, args.exc_traceback) if exc is not None else None,
        )

    sys.excepthook = excepthook
    threading.excepthook = thread_hook
    sys.unraisablehook = unraisable_hook
    logging.captureWarnings(True)
