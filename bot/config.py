"""What one worker process needs to run, handed in by the launcher.

The launcher reads and validates the settings; a worker never reads the environment itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ipc.throttle import DEFAULT_COMMAND, DEFAULT_GUILD, DEFAULT_USER, Rule


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
