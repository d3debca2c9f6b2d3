"""Point discord.py at a Discord-compatible endpoint (the sandbox) instead of Discord.

discord.py has no setting for its base URLs; these two class attributes are what it reads.
Nothing else in the code knows whether it talks to Discord or the sandbox.
"""

from __future__ import annotations

import discord.gateway
import discord.http
import yarl


def point_at(api_url: str | None, gateway_url: str | None) -> None:
    if api_url:
        discord.http.Route.BASE = api_url.rstrip("/")
    if gateway_url:
        # Used by AutoShardedClient when shard_count is given, and after a session is lost.
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
