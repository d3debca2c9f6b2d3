"""The bot's presence as each shard sets it: IDENTIFY's `presence` and Update Presence (op 3),
checked against the documented structure, kept per shard for the control API
(`GET /_sandbox/presence`), and held to Discord's limit.

Discord's documentation (Gateway Events, "Update Presence" and the activity object) says:
"Clients may only update their game status 5 times per 20 seconds". It does not say what
happens beyond that; the only documented close for sending too much is 4008 ("Rate limited"),
for the 120 events per 60 s of any connection. The sandbox closes a connection with 4008 at
the 6th presence update within 20 s (scaled by `--window-scale`) of the same shard, so a bot
that breaks the rule fails visibly in tests instead of being silently throttled.

A payload off the structure (status not one of the five, activities not a list of objects
with a name and a type from 0 to 5, since not null or a number, afk not a boolean) is a
decode error, 4002, as for any malformed payload."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

STATUSES = ("online", "dnd", "idle", "invisible", "offline")
ACTIVITY_TYPES = range(6)  # playing, streaming, listening, watching, custom, competing
UPDATES, WINDOW = 5, 20.0  # "5 times per 20 seconds"
KEPT = 200  # updates kept per shard for the control API
CLOSES = {4002: "Error while decoding payload.", 4008: "Rate limited."}


class BadPresence(ValueError):
    pass


def check(data: Any) -> dict[str, Any]:
    """The presence as Discord would take it, or BadPresence."""
    if not isinstance(data, dict):
        raise BadPresence("not an object")
    status = data.get("status")
    if status not in STATUSES:
        raise BadPresence(f"status {status!r}")
    since = data.get("since")
    if since is not None and (isinstance(since, bool) or not isinstance(since, int | float)):
        raise BadPresence(f"since {since!r}")
    afk = data.get("afk", False)
    if not isinstance(afk, bool):
        raise BadPresence(f"afk {afk!r}")
    activities = data.get("activities")
    if activities is None:
        activities = []
    if not isinstance(activities, list):
        raise BadPresence("activities is not a list")
    shown = []
    for a in activities:
        if not isinstance(a, dict):
            raise BadPresence("an activity is not an object")
        name, kind = a.get("name"), a.get("type")
        if not isinstance(name, str) or not 1 <= len(name) <= 128:
            raise BadPresence(f"activity name {name!r}")
        if isinstance(kind, bool) or kind not in ACTIVITY_TYPES:
            raise BadPresence(f"activity type {kind!r}")
        entry: dict[str, Any] = {"name": name, "type": kind}
        if isinstance(a.get("state"), str):
            entry["state"] = a["state"]
        shown.append(entry)
    return {"status": status, "since": since, "afk": afk, "activities": shown}


def acceptable(data: Any) -> bool:
    """IDENTIFY's `presence`: absent, null or a good presence."""
    try:
        return data is None or bool(check(data))
    except BadPresence:
        return False


@dataclass
class ShardPresence:
    shard: tuple[int, int]
    current: dict[str, Any] | None = None
    updates: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=KEPT))
    recent: deque[float] = field(default_factory=deque)  # monotonic times of op 3s in WINDOW
    refused: int = 0  # updates beyond the limit (each closed its connection)


class Presences:
    """Every shard's presence, by (shard id, shard count)."""

    def __init__(self, window_scale: float = 1.0) -> None:
        self.window = WINDOW * window_scale
        self.shards: dict[tuple[int, int], ShardPresence] = {}

    def _of(self, shard: tuple[int, int]) -> ShardPresence:
        return self.shards.setdefault(shard, ShardPresence(shard))

    def identified(self, shard: tuple[int, int], data: Any) -> None:
        """IDENTIFY's initial presence (checked by `acceptable`): shown, not counted against
        the limit."""
        if data is None:
            return
        presence = check(data)
        p = self._of(shard)
        p.current = presence
        p.updates.append({**presence, "at": time.time(), "via": "identify"})

    def update(self, shard: tuple[int, int], data: Any) -> int | None:
        """An op 3 from the shard: None when taken, else the code to close with (4002 off the
        structure, 4008 beyond the limit; neither is applied)."""
        try:
            presence = check(data)
        except BadPresence:
            return 4002
        p = self._of(shard)
        now = time.monotonic()
        while p.recent and now - p.recent[0] >= self.window:
            p.recent.popleft()
        if len(p.recent) >= UPDATES:
            p.refused += 1
            return 4008
        p.recent.append(now)
        p.current = presence
        p.updates.append({**presence, "at": time.time(), "via": "update"})
        return None

    def summary(self) -> dict[str, Any]:
        """What GET /_sandbox/presence returns: each shard's presence now, its updates (oldest
        first, with the wall-clock time and whether IDENTIFY or op 3 set it) and how many were
        refused."""
        return {
            "limit": {"updates": UPDATES, "window": self.window},
            "shards": [
                {
                    "shard": list(p.shard),
                    "current": p.current,
                    "updates": list(p.updates),
                    "refused": p.refused,
                }
                for _, p in sorted(self.shards.items())
            ],
        }
