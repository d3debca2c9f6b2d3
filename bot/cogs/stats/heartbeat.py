"""The owners' heartbeat: every `STATS_HEARTBEAT_EVERY` minutes one message in the channel
`STATS_HEARTBEAT_CHANNEL` (a bot setting, WorkerConfig.stats; off when unset), edited in
place, with every cluster's shards, guilds, latency, events per second, memory and CPU per
process, and the Redis and PostgreSQL round trips, coloured for warning when something is off.

It is a job (`stats.heartbeat`, key `heartbeat:<slot>`, any cluster) so one worker posts per
slot however many run; the handler gathers `stats_heartbeat` from every cluster over the IPC bus
and schedules the next slot in the transaction that completes it. The message id is kept in
Redis (`stats:heartbeat:message`): if it is lost, or the message was deleted, a new one is
posted.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import discord
import psutil

from bot import jobs, metrics

if TYPE_CHECKING:
    from bot.config import StatsConfig
    from bot.guildhouse import Guildhouse

KIND = "stats.heartbeat"
RPC = "stats_heartbeat"
SLOW_LATENCY = 1.0  # s of gateway latency that is a warning
SLOW_ROUND_TRIP = 0.1  # s to Redis or PostgreSQL that is a warning
HIGH_CPU = 90.0  # % of a core


@dataclass(frozen=True)
class Setting:
    channel_id: int | None
    every: float  # seconds

    @classmethod
    def of(cls, config: StatsConfig) -> Setting:
        return cls(config.heartbeat_channel, config.heartbeat_every)

    def slot(self, now: float) -> int:
        return int(now // self.every)

    def due(self, slot: int) -> datetime:
        return datetime.fromtimestamp(slot * self.every, UTC)


def warnings(answers: dict[int, dict[str, Any]], expected: int, missing: list[int]) -> list[str]:
    """What is off, in words (pure)."""
    out = [f"cluster {c} did not answer" for c in sorted(missing)]
    if len(answers) + len(missing) < expected:
        out.append(f"{expected - len(answers) - len(missing)} cluster(s) not registered")
    for cid, a in sorted(answers.items()):
        if a["ready_shards"] < a["shards"]:
            out.append(f"cluster {cid}: {a['shards'] - a['ready_shards']} shard(s) not READY")
        if a["latency"] is not None and a["latency"] > SLOW_LATENCY:
            out.append(f"cluster {cid}: gateway latency {a['latency'] * 1000:.0f} ms")
        for what in ("redis", "postgres"):
            rtt = a[f"{what}_rtt"]
            if rtt is None:
                out.append(f"cluster {cid}: {what} unreachable")
            elif rtt > SLOW_ROUND_TRIP:
                out.append(f"cluster {cid}: {what} round trip {rtt * 1000:.0f} ms")
        if a["cpu"] > HIGH_CPU:
            out.append(f"cluster {cid}: CPU {a['cpu']:.0f} %")
    return out


def _ms(value: float | None) -> str:
    return "down" if value is None else f"{value * 1000:.1f} ms"


def embed(answers: dict[int, dict[str, Any]], problems: list[str], now: datetime) -> discord.Embed:
    colour = discord.Colour.orange() if problems else discord.Colour.green()
    guilds = sum(a["guilds"] for a in answers.values())
    shards = sum(a["shards"] for a in answers.values())
    ready = sum(a["ready_shards"] for a in answers.values())
    e = discord.Embed(
        title="Heartbeat",
        colour=colour,
        description=(
            f"**{len(answers)}** clusters up · **{ready}/{shards}** shards READY · "
            f"**{guilds:,}** servers"
        ),
        timestamp=now,
    )
    for cid, a in sorted(answers.items())[:20]:
        latency = "n/a" if a["latency"] is None else f"{a['latency'] * 1000:.0f} ms"
        e.add_field(
            name=f"Cluster {cid}",
            value=(
                f"shards {a['ready_shards']}/{a['shards']} · {a['guilds']:,} servers\n"
                f"latency {latency} · {a['events_per_s']:.1f} events/s\n"
                f"RSS {a['rss'] / 2**20:.0f} MiB · CPU {a['cpu']:.0f} %\n"
                f"Redis {_ms(a['redis_rtt'])} · PostgreSQL {_ms(a['postgres_rtt'])}"
            ),
        )
    if problems:
        e.add_field(name="Warnings", value="\n".join(problems)[:1024], inline=False)
    return e


class Heartbeat:
    def __init__(self, bot: Guildhouse, setting: Setting | None = None) -> None:
        self.bot = bot
        self.setting = setting or Setting.of(bot.config.stats)
        self._proc = psutil.Process()
        self._proc.cpu_percent(None)  # the first reading is from here
        self._events = (time.monotonic(), self._event_total())

    def kind(self) -> jobs.Kind:
        return jobs.Kind(KIND, self.run, lease=30.0, max_attempts=2)

    def _event_total(self) -> float:
        label = self.bot.cluster_label
        total = 0.0
        for metric in metrics.GATEWAY_EVENTS.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total") and sample.labels.get("cluster") == label:
                    total += sample.value
        return total

    async def answer(self, _: object) -> dict[str, Any]:
        """This worker's figures (the `stats_heartbeat` request)."""
        now, total = time.monotonic(), self._event_total()
        then, before = self._events
        self._events = (now, total)
        status = self.bot.worker_status
        info = status.cluster_info("ready")
        started = time.perf_counter()
        try:
            await self.bot.redis.ping()
            redis_rtt: float | None = time.perf_counter() - started
        except Exception:
            redis_rtt = None
        started = time.perf_counter()
        try:
            await self.bot.pool.fetchval("SELECT 1")
            pg_rtt: float | None = time.perf_counter() - started
        except Exception:
            pg_rtt = None
        latency = self.bot.latency
        return {
            "guilds": info.guilds,
            "shards": len(info.shards),
            "ready_shards": sum(s.state == "ready" for s in info.shards.values()),
            "latency": latency if math.isfinite(latency) else None,
            "events_per_s": (total - before) / max(1e-3, now - then),
            "rss": self._proc.memory_info().rss,
            "cpu": self._proc.cpu_percent(None),
            "redis_rtt": redis_rtt,
            "postgres_rtt": pg_rtt,
        }

    async def ensure(self) -> None:
        if self.setting.channel_id is None:
            return
        slot = self.setting.slot(time.time())
        await jobs.of(self.bot).schedule(KIND, f"heartbeat:{slot}", self.setting.due(slot))

    async def run(self, run: jobs.Run) -> None:
        channel_id = self.setting.channel_id
        if channel_id is None:
            return  # turned off since: the chain ends
        gathered = await self.bot.bus.gather(RPC, within=5)
        answers = {c: r for c, r in gathered.results.items() if isinstance(r, dict)}
        missing = sorted({*gathered.missing, *gathered.errors})
        problems = warnings(answers, self.bot.config.cluster_count, missing)
        e = embed(answers, problems, datetime.now(UTC))
        await self._post(channel_id, e)
        # The slot after this one's, or after now's if this one ran late (missed slots are
        # skipped: a heartbeat is about the present).
        this = int(run.job.key.rpartition(":")[2])
        nxt = max(this, self.setting.slot(time.time())) + 1
        async with run.complete() as conn:
            await jobs.store.schedule(conn, KIND, f"heartbeat:{nxt}", self.setting.due(nxt))
        await jobs.of(self.bot).notify()

    async def _post(self, channel_id: int, e: discord.Embed) -> None:
        key = self.bot.keys("stats", "heartbeat", "message")
        channel = self.bot.get_partial_messageable(channel_id)
        known = await self.bot.redis.get(key)
        if known:
            try:
                await channel.get_partial_message(int(known)).edit(embed=e)
                return
            except discord.NotFound:
                pass  # deleted: post a new one
            except discord.HTTPException as exc:
                raise jobs.Retry(f"editing the heartbeat: {exc}") from exc
        try:
            msg = await channel.send(embed=e)
        except discord.HTTPException as exc:
            raise jobs.Retry(f"posting the heartbeat: {exc}") from exc
        await self.bot.redis.set(key, str(msg.id))
