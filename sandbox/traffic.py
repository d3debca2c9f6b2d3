"""A traffic generator: N messages per second across guilds, a mix of chat and commands,
recording each command's round trip (sent → the bot's first answer in that channel); and a
raid: N new accounts joining one guild, all at once or at a given rate, during the traffic or
on its own."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sandbox.server import Sandbox

CHAT = ("gg", "anyone up for a raid?", "brb", "nice roll", "who has the map", "lol", "ok")


@dataclass
class TrafficReport:
    sent: int = 0
    commands: int = 0
    answered: int = 0
    round_trips: list[float] = field(default_factory=list)  # seconds
    raiders: list[int] = field(default_factory=list)  # user ids of a raid's joins

    def percentile(self, q: float) -> float | None:
        if not self.round_trips:
            return None
        ordered = sorted(self.round_trips)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def generate(
    sb: Sandbox,
    *,
    rate: float,
    duration: float,
    commands: tuple[str, ...] = ("!ping",),
    command_share: float = 0.3,
    seed: int = 1,
    settle: float = 5.0,
    raid_joins: int = 0,
    raid_guild: int | None = None,
) -> TrafficReport:
    """Send about `rate` messages/s for `duration` s; wait up to `settle` s for answers. With
    `raid_joins`, that many new accounts join `raid_guild` (the largest guild by default) all
    at once halfway through (GUILD_MEMBER_ADD each): `report.raiders`."""
    if rate <= 0 or duration <= 0 or not 0 <= command_share <= 1:
        raise ValueError("rate and duration must be positive, command_share within 0..1")
    if raid_joins < 0:
        raise ValueError("raid_joins must be 0 or more")
    rng = random.Random(seed)
    places = []
    for guild in sb.world.guilds.values():
        channels = [c.id for c in guild.channels.values() if c.type == 0 and not c.overwrites]
        people = [m for m in guild.members if m != sb.world.bot.id]
        if channels and people:
            places.append((channels, people))
    if not places:
        raise ValueError("the world has no text channel with members")
    report = TrafficReport()
    pending: dict[str, deque[float]] = {}
    after = len(sb.rest.outbox)
    all_answered = asyncio.Event()
    sending = True

    async def collect() -> None:
        nonlocal after
        while True:
            entries = await sb.outbox(after=after, wait=1.0)
            for entry in entries:
                after = max(after, int(entry["seq"]))
                waiting = pending.get(entry["channel_id"])
                if waiting and entry["kind"] in ("message", "interaction_response"):
                    report.round_trips.append(time.monotonic() - waiting.popleft())
                    report.answered += 1
            if not sending and report.answered >= report.commands:
                all_answered.set()

    collector = asyncio.create_task(collect())
    try:
        start = time.monotonic()
        total = int(rate * duration)
        for i in range(total):
            if raid_joins and i == total // 2:
                report.raiders = await raid(sb, raid_joins, guild_id=raid_guild)
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            channels, people = rng.choice(places)
            channel, author = rng.choice(channels), rng.choice(people)
            is_command = rng.random() < command_share
            content = rng.choice(commands) if is_command else rng.choice(CHAT)
            if is_command:
                pending.setdefault(str(channel), deque()).append(time.monotonic())
                report.commands += 1
            await sb.send_message(channel, author, content)
            report.sent += 1
        sending = False
        if report.answered >= report.commands:
            all_answered.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_answered.wait(), settle)
    finally:
        collector.cancel()
    return report


async def raid(
    sb: Sandbox, joins: int, *, guild_id: int | None = None, rate: float | None = None
) -> list[int]:
    """`joins` new accounts join a guild (the largest, by default): all at once, or `rate`
    a second. Returns their user ids, in the order they joined."""
    if joins < 1:
        raise ValueError("joins must be 1 or more")
    if rate is not None and rate <= 0:
        raise ValueError("rate must be positive")
    if guild_id is None:
        guild = max(sb.world.guilds.values(), key=lambda g: len(g.members))
    else:
        guild = sb.world.guilds[guild_id]
    if rate is None:
        return await sb.events.raid(guild, joins)
    joined: list[int] = []
    start = time.monotonic()
    for i in range(joins):
        await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        joined += await sb.events.raid(guild, 1)
    return joined
