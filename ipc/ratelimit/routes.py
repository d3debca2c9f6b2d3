"""A REST call as Discord limits it: exempt from the global limit or not (`is_exempt`), and the
route and major parameter its bucket is keyed by (`route_of`)."""

from __future__ import annotations

import functools

EXEMPT_PREFIXES = ("/interactions/", "/webhooks/")


def is_exempt(path: str) -> bool:
    """Interaction callbacks and webhook follow-ups don't count against the global limit."""
    return any(p in path for p in EXEMPT_PREFIXES)


_MAJOR_RESOURCES = ("channels", "guilds", "webhooks")


@functools.lru_cache(maxsize=4096)  # every request asks; a command's answer repeats its path
def route_of(method: str, path: str) -> tuple[str, str]:
    """(route, major parameter) of a REST call, as Discord buckets it.

    `GET /api/v10/channels/123/messages/456` -> (`GET /channels/{id}/messages/{id}`, `123`):
    ids become placeholders, except that the major parameter (the channel, guild or webhook the
    route starts with) keeps calls on different channels in different buckets.
    """
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api" and parts[1].startswith("v"):
        parts = parts[2:]
    major = ""
    out: list[str] = []
    for i, seg in enumerate(parts):
        if i == 1 and parts[0] in _MAJOR_RESOURCES:
            major = seg
            out.append("{major}")
        elif i == 2 and parts[0] == "webhooks":
            major += "/" + seg  # the webhook token is part of its major parameter
            out.append("{token}")
        elif seg.isdigit() or (i > 0 and parts[i - 1] == "reactions"):
            out.append("{id}")
        else:
            out.append(seg)
    return f"{method.upper()} /{'/'.join(out)}", major
