"""What this worker says about itself: its entry in the cluster registry (`cluster_info`),
its gauges (`sample_metrics`, once a second), each shard's heartbeat latency."""

from __future__ import annotations

import math
import os
import socket
import time
from typing import Any

import asyncpg
import discord
from discord.ext import commands

from bot import metrics
from bot.config import WorkerConfig
from bot.dpy.keep_alive import HeartbeatLatency, last_event_age
from bot.shards import ShardTracker
from ipc.registry import ClusterInfo, ShardInfo


def count_command(cluster: str, ctx: commands.Context[Any], outcome: str) -> None:
    """Count a command that ended (`outcome`: ok, user_error, error, unavailable) and, when it
    got as far as running, how long it ran."""
    name = ctx.command.qualified_name if ctx.command else "unknown"
    kind = "slash" if ctx.interaction else "prefix"
    metrics.COMMANDS.labels(cluster, name, kind, outcome).inc()
    started = getattr(ctx, "guildhouse_started", None)
    if started is not None:
        metrics.COMMAND_DURATION.labels(cluster, name).observe(time.perf_counter() - started)


class WorkerStatus:
    def __init__(
        self,
        client: discord.AutoShardedClient,
        config: WorkerConfig,
        tracker: ShardTracker,
        pool: asyncpg.Pool,
        started_at: float,
    ) -> None:
        self.client = client
        self.config = config
        self.tracker = tracker
        self.pool = pool
        self.started_at = started_at
        self.label = str(config.cluster_id)  # the metrics' cluster label
        self.latency = HeartbeatLatency()

    def shard_latency(self, shard_id: int) -> float | None:
        """The shard's heartbeat latency in seconds; None until it is measured (see
        HeartbeatLatency)."""
        return self.latency.of(shard_id, self.client.get_shard(shard_id))

    def _guilds_per_shard(self) -> dict[int, int]:
        guilds: dict[int, int] = dict.fromkeys(self.tracker.states, 0)
        for guild in self.client.guilds:
            guilds[guild.shard_id] = guilds.get(guild.shard_id, 0) + 1
        return guilds

    def cluster_info(self, state: str) -> ClusterInfo:
        """This cluster's registry entry."""
        guilds = self._guilds_per_shard()
        shards = {}
        for sid, shard_state in self.tracker.states.items():
            latency = self.shard_latency(sid)
            if latency is not None:
                latency = round(latency * 1000, 1)
            shards[sid] = ShardInfo(
                shard_state.name.lower(),
                latency,
                guilds.get(sid, 0),
                last_event_age(self.client.get_shard(sid)),
            )
        return ClusterInfo(
            cluster_id=self.config.cluster_id,
            shard_ids=list(self.config.shard_ids),
            pid=os.getpid(),
            host=socket.gethostname(),
            state=state,
            started=self.started_at,
            guilds=len(self.client.guilds),
            shards=shards,
        )

    def sample_metrics(self) -> None:
        """Refresh gauges; called once a second by the worker's report loop."""
        cluster = self.label
        guilds = self._guilds_per_shard()
        for sid, state in self.tracker.states.items():
            shard = str(sid)
            metrics.SHARD_STATE.labels(cluster, shard).set(int(state))
            metrics.SHARD_GUILDS.labels(cluster, shard).set(guilds.get(sid, 0))
            latency = self.shard_latency(sid)
            # NaN until measured: the series is there from the start (dashboards find it),
            # and no placeholder reads as a latency.
            metrics.GATEWAY_LATENCY.labels(cluster, shard).set(
                math.nan if latency is None else latency
            )
        pool = self.pool
        metrics.DB_POOL_SIZE.labels(cluster).set(pool.get_size())
        metrics.DB_POOL_IN_USE.labels(cluster).set(pool.get_size() - pool.get_idle_size())
        metrics.sample_process(cluster)
