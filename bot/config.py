"""What one worker process needs to run, handed in by the launcher.

The launcher reads and validates the settings; a worker never reads the environment itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ipc.throttle import DEFAULT_COMMAND, DEFAULT_GUILD, DEFAULT_USER, Rule


@dataclass(frozen=True)
class StatsConfig:
    """Statistics' settings (STATS_*; cluster/settings.py validates them, docs/stats.md)."""

    rename_window: float = 600.0  # s: Discord's 2 renames of a channel per 10 minutes
    settle: float = 10.0  # s a burst may go on before its rename
    rename_budget: float = 1.0  # renames a second, per worker
    poll: float = 600.0  # s between reads of the approximate counts
    flush: float = 30.0  # s between writes of the day tallies
    heartbeat_channel: int | None = None  # None: no owners' heartbeat
    heartbeat_every: float = 300.0  # s (the setting is in minutes)
    presence_every: float = 0.0  # s; 0: no rotating presence
    presence_lines: tuple[str, ...] = ()  # extra "playing" lines of the rotation


@dataclass(frozen=True)
class AnalyticsConfig:
    """Usage analytics' settings (ANALYTICS_FLUSH, ANALYTICS_LINK_SECRET, PUBLIC_URL)."""

    flush: float = 10.0  # s between writes of the counted uses
    link_secret: str | None = field(default=None, repr=False)  # None: derived from the token
    public_url: str = "http://localhost:8080"  # the launcher's HTTP side as people reach it


@dataclass(frozen=True)
class WorkerConfig:
    cluster_id: int
    cluster_count: int
    shard_ids: tuple[int, ...]
    shard_count: int
    token: str = field(repr=False)
    database_url: str = field(repr=False)
    redis_url: str = field(repr=False)
    redis_prefix: str = "gh:"
    api_url: str | None = None  # None: Discord itself
    gateway_url: str | None = None
    owner_ids: frozenset[int] = frozenset()
    # A shard connected but not READY for this long is reconnected (the launcher sets it from
    # the identify queue's expected wait).
    shard_ready_timeout: float = 300.0
    # Seconds between IDENTIFYs of one max_concurrency bucket (Discord: 5), and the number of
    # buckets (session_start_limit.max_concurrency from GET /gateway/bot).
    identify_interval: float = 5.0
    max_concurrency: int = 1
    # Discord's global REST limit, shared by every process (requests per second).
    rest_rate: int = 50
    # Transport compression of the gateway connections (bot/dpy/compression.py).
    gateway_compression: str = "zlib-stream"
    # Command throttle defaults (None: off in that scope); see bot/command_throttles.py.
    throttle_user: Rule | None = DEFAULT_USER
    throttle_command: Rule | None = DEFAULT_COMMAND
    throttle_guild: Rule | None = DEFAULT_GUILD
    throttle_exempt_mods: bool = True
    # Extensions (cogs) to load; users testing their own cogs add theirs here.
    extensions: tuple[str, ...] = ()
    log_level: str = "INFO"
    log_format: str = "json"
    stats: StatsConfig = field(default_factory=StatsConfig)
    analytics: AnalyticsConfig = field(default_factory=AnalyticsConfig)
