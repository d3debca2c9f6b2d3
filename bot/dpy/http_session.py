"""What every aiohttp session discord.py's HTTP client makes carries: our client middlewares, and
a websocket class for its gateway connections that reads without a timer per event.

discord.py makes its aiohttp session itself, when it logs in, and sends its first request at
once; it takes no middlewares. `install` gives the client a session attribute that puts them
on every session it is given, from the first on. What the bot puts there is the shared REST
limiter (bot/rest_limits.py).

The same session opens the shards' gateway connections (`HTTPClient.ws_connect`), and each
shard reads its connection with `receive(timeout=60)` (`DiscordWebSocket.poll_event`): aiohttp
arms and cancels a timer for every read, about a tenth of what a chat message costs the worker.
A silent connection is closed without that timeout: discord.py's keep-alive thread closes it
when nothing was received for the same 60 s, and zombie.py when a heartbeat goes un-ACKed
(sooner). So the session's websockets are `GatewaySocket`, whose `receive` ignores the timeout.
Voice connections use the same session and wait with a timeout of their own
(`asyncio.wait_for`), which this leaves alone.

Relies on: `HTTPClient.__session` (so `_HTTPClient__session` on the instance), set by
`HTTPClient.__init__` and again when discord.py makes or remakes the session, and read for
every request; aiohttp's `ClientSession._middlewares`, what `ClientSession(middlewares=...)`
sets (aiohttp 3.12 and later, which pyproject.toml requires), and
`ClientSession._ws_response_class`, what `ClientSession(ws_response_class=...)` sets;
`KeepAliveHandler`'s close after `heartbeat_timeout` s without a message.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import discord

RELIES_ON = ("discord.http:HTTPClient._HTTPClient__session",)

# Where discord.py's HTTPClient keeps its aiohttp session (`self.__session`).
_SESSION = "_HTTPClient__session"


class GatewaySocket(aiohttp.ClientWebSocketResponse):
    """aiohttp's client websocket, reading without a timeout (see the module's docstring)."""

    async def receive(self, timeout: float | None = None) -> aiohttp.WSMessage:  # noqa: ASYNC109 - the signature discord.py calls
        return await super().receive()


class _LimitedHTTPClient(discord.http.HTTPClient):
    """discord.py's HTTP client, whose every aiohttp session carries `_middlewares`."""

    _middlewares: tuple[aiohttp.ClientMiddlewareType, ...] = ()

    @property
    def _HTTPClient__session(self) -> Any:  # the name discord.py's code uses
        return self.__dict__[_SESSION]

    @_HTTPClient__session.setter
    def _HTTPClient__session(self, session: Any) -> None:
        if isinstance(session, aiohttp.ClientSession):
            # ClientSession(middlewares=...) is aiohttp's API; discord.py makes the session.
            session._middlewares = self._middlewares
            session._ws_response_class = GatewaySocket  # ClientSession(ws_response_class=...)
        self.__dict__[_SESSION] = session


def install(http: discord.http.HTTPClient, *middlewares: aiohttp.ClientMiddlewareType) -> None:
    """Put `middlewares` on every aiohttp session `http` makes, from its first request on
    (call before login)."""
    if _SESSION not in vars(http):
        # bot.dpy.check() says so at start; this is for a caller that did not run it.
        raise RuntimeError(
            f"discord.py's HTTPClient no longer keeps its session in {_SESSION}: "
            "bot/dpy/http_session.py needs updating for this version"
        )
    session = vars(http)[_SESSION]
    http.__class__ = _LimitedHTTPClient
    http._middlewares = middlewares  # type: ignore[attr-defined]
    if isinstance(session, aiohttp.ClientSession):
        http._HTTPClient__session = session  # type: ignore[attr-defined]  # re-set: gets them
