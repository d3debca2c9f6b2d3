"""Discord's global REST limit, shared by every process and pod of the bot.

discord.py limits each process on its own; W processes can send W times the global limit (50
requests per second per bot) and earn 429s, then a temporary ban. `GlobalLimiter` hands out
slots from one sliding window kept in Redis: a Lua script, on Redis's clock, admits a request
only if fewer than `rate` were admitted in the last `window` seconds, so no configuration of
processes can exceed it. One round trip per request on the hot path.

Per-route buckets are shared too: what a response's `X-RateLimit-*` headers say (the route's
bucket, what is left, when it resets) goes to Redis, and the same script that grants the global
slot takes one from the bucket's remaining count, or holds the call until the bucket resets when
it is empty. A bucket exhausted, or a 429 earned, by one process holds the others back.
Responses cost a second round trip only when they bring news (a new route or window, an empty
bucket, a 429).

A global 429 seen by any process pauses everyone for its `retry_after`. If Redis is
unreachable, each process falls back to a local window of its share (`rate / clusters`),
says so once at INFO (the outage's one WARNING is the process's: `ipc.client.redis_outage`),
and goes back to the shared window when Redis answers again, adding to it what it sent locally.
The local window counts every request the process sent, through Redis or not. A full
connection pool is not an outage: the request waits for a connection. One task of a process at
a time waits for the global window; the others queue behind it (docs/ratelimits.md).

Interaction callbacks and webhook follow-ups are exempt from the global limit on Discord, and
here.

A command's answer has one seam here: `reserve` a `Reservation` when the command is known (a
slot of this process's allotment, when there is one, and the buckets the command owns),
`buy_call`/`bought` to buy the slot in a round trip the caller makes anyway, pass the
reservation to `acquire` and `learn` for each request the command sends, and `settle` it when
the command ends (an unspent allotted slot goes back to the allotment).

The parts, each a module here, composed by `GlobalLimiter` (limiter.py):

- admission.py: `Admission`, the shared window (the admit script, one task of a process at a
  time waiting for it, the pause of a global 429) and the local window it falls back to while
  Redis is unreachable, joined back to the shared one when Redis answers again
- allotment.py: `Allotment`, this process's slots granted ahead and refilled in the
  background, and the `Reservation`s of commands' answers
- buckets.py: `Buckets`, what responses' `X-RateLimit-*` headers say, shared when it is news
- routes.py: `route_of` and `is_exempt`, a call as Discord buckets and limits it
- guard.py: `InvalidRequestGuard`, the count of invalid answers that keeps the bot from
  Discord's ban
"""

from __future__ import annotations

from ipc.ratelimit.allotment import Reservation
from ipc.ratelimit.guard import InvalidRequestGuard, RequestRefused
from ipc.ratelimit.limiter import GlobalLimiter
from ipc.ratelimit.routes import is_exempt, route_of

__all__ = [
    "GlobalLimiter",
    "InvalidRequestGuard",
    "RequestRefused",
    "Reservation",
    "is_exempt",
    "route_of",
]
