"""Shard planning: how many shards, and which cluster runs which."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass(frozen=True)
class GatewayInfo:
    url: str
    shards: int
    max_concurrency: int
    session_starts_remaining: int
    session_starts_total: int
    resets_after_ms: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GatewayInfo:
        limit = data["session_start_limit"]
        return cls(
            url=str(data["url"]),
            shards=int(data["shards"]),
            max_concurrency=int(limit.get("max_concurrency", 1)),
            session_starts_remaining=int(limit["remaining"]),
            session_starts_total=int(limit["total"]),
            resets_after_ms=int(limit["reset_after"]),
        )


class PlanningError(RuntimeError):
    """The cluster can't start as configured; the message says why and what to do."""


async def fetch_gateway(api_url: str, token: str) -> GatewayInfo:
    """GET /gateway/bot: recommended shards, session-start limit and max_concurrency."""
    headers = {"Authorization": f"Bot {token}", "User-Agent": "DiscordBot (guildhouse, 0.1)"}
    timeout = aiohttp.ClientTimeout(total=30)
    url = f"{api_url.rstrip('/')}/gateway/bot"
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.get(url, headers=headers) as resp,
    ):
        if resp.status == 401:
            raise PlanningError("Discord rejected the token (401): check DISCORD_TOKEN")
        if resp.status != 200:
            text = (await resp.text())[:200]
            raise PlanningError(f"GET /gateway/bot answered {resp.status}: {text}")
        return GatewayInfo.from_json(await resp.json())


def split_shards(shard_count: int, cluster_count: int) -> list[tuple[int, ...]]:
    """Contiguous shard ranges, as even as possible: 10 shards on 3 clusters -> 4, 3, 3."""
    if shard_count < 1 or cluster_count < 1:
        raise PlanningError("shard and cluster counts must be at least 1")
    if cluster_count > shard_count:
        raise PlanningError(
            f"{cluster_count} clusters for {shard_count} shards: "
            "set CLUSTER_COUNT to at most SHARD_COUNT"
        )
    base, extra = divmod(shard_count, cluster_count)
    ranges: list[tuple[int, ...]] = []
    start = 0
    for i in range(cluster_count):
        size = base + (1 if i < extra else 0)
        ranges.append(tuple(range(start, start + size)))
        start += size
    return ranges


def check_session_starts(info: GatewayInfo, shards_to_start: int) -> None:
    if info.session_starts_remaining < shards_to_start:
        hours = info.resets_after_ms / 3_600_000
        raise PlanningError(
            f"only {info.session_starts_remaining} session starts left today "
            f"(of {info.session_starts_total}) but {shards_to_start} shards to start; "
            f"the limit resets in {hours:.1f} h. Starting now would get the token reset."
        )
