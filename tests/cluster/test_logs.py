from __future__ import annotations

import logging

import orjson

from cluster.logs import JsonFormatter, TextFormatter


def _record(**extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("bot.cogs.x", logging.WARNING, __file__, 1, "hello %s", ("you",), None)
    for k, v in extra.items():
        setattr(rec, k, v)
    return rec


def test_json_line_has_the_fields_and_context() -> None:
    line = JsonFormatter().format(_record(cluster=1, shard=3, guild=42, command="roll"))
    data = orjson.loads(line)
    assert data["level"] == "WARNING" and data["logger"] == "bot.cogs.x"
    assert data["message"] == "hello you"
    assert (data["cluster"], data["shard"], data["guild"], data["command"]) == (1, 3, 42, "roll")
    assert data["time"].endswith("+00:00")
    assert "\n" not in line


def test_json_omits_unknown_context_and_keeps_tracebacks_on_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        rec = _record()
        rec.exc_info = sys.exc_info()
    line = JsonFormatter().format(rec)
    data = orjson.loads(line)
    assert "cluster" not in data and "shard" not in data
    assert "ValueError: boom" in data["exception"]
    assert "\n" not in line


def test_text_format_appends_context_tags() -> None:
    text = TextFormatter().format(_record(shard=2, guild=7))
    assert "hello you" in text and text.endswith("[shard=2 guild=7]")


STRAY = """
import gc, sys, threading, warnings
from cluster import logs
logs.setup("INFO", "json")

def fail():
    raise RuntimeError("in a thread")

t = threading.Thread(target=fail, name="worker-thread")
t.start(); t.join()
warnings.warn("a deprecated thing", DeprecationWarning, stacklevel=1)

class Broken:
    def __del__(self):
        raise ValueError("in a destructor")

Broken()
gc.collect()
raise KeyError("uncaught in main")
"""


def test_what_python_prints_by_itself_goes_through_logging_as_json() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-W", "always", "-c", STRAY],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr == "", done.stderr
    entries = [orjson.loads(line) for line in done.stdout.splitlines()]
    exceptions = [e.get("exception", "") for e in entries]
    assert any("RuntimeError: in a thread" in x for x in exceptions), entries
    assert any("ValueError: in a destructor" in x for x in exceptions), entries
    assert any("KeyError: 'uncaught in main'" in x for x in exceptions), entries
    assert any("a deprecated thing" in e["message"] for e in entries), entries
