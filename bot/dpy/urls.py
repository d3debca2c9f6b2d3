"""Point discord.py at a Discord-compatible endpoint (the sandbox) instead of Discord.

discord.py has no setting for its base URLs; these two class attributes are what it reads.
Nothing else in the code knows whether it talks to Discord or the sandbox.

Relies on: `Route.BASE`, read for every REST request's URL, and
`DiscordWebSocket.DEFAULT_GATEWAY`, read by AutoShardedClient when the shard count is given,
and after a session is lost.
"""

from __future__ import annotations

import discord.gateway
import discord.http
import yarl

RELIES_ON = ("discord.http:Route.BASE", "discord.gateway:DiscordWebSocket.DEFAULT_GATEWAY")


def install(api_url: str | None, gateway_url: str | None) -> None:
    """Send REST requests to `api_url` and connect shards to `gateway_url` (each if given)."""
    if api_url:
        discord.http.Route.BASE = api_url.rstrip("/")
    if gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
