"""Prometheus metrics of a worker process.

Workers run in prometheus-client's multiprocess mode: the launcher points
PROMETHEUS_MULTIPROC_DIR at a fresh directory before it spawns them, each worker writes its
samples there, and the launcher's /metrics merges them. Gauges use the `livemostrecent` mode:
the newest value of processes that are alive, so a restarted worker's stale series vanish.
Every series carries `cluster`; per-shard ones carry `shard` too.
"""

from __future__ import annotations

import psutil
from prometheus_client import Counter, Gauge, Histogram

# guildhouse_redis_errors_total is defined in ipc/client.py, where Redis is used.

GATEWAY_EVENTS = Counter(
    "guildhouse_gateway_events_total",
    "Gateway dispatch events received, by type.",
    ["cluster", "type"],
)
GATEWAY_DROPPED = Counter(
    "guildhouse_gateway_events_dropped_total",
    "Gateway dispatch events dropped because their payload could not be read (bot/dpy/"
    "parser_guard.py), by type.",
    ["cluster", "event"],
)
GATEWAY_LATENCY = Gauge(
    "guildhouse_gateway_latency_seconds",
    "Heartbeat round trip of each shard's gateway connection.",
    ["cluster", "shard"],
    multiprocess_mode="livemostrecent",
)
SHARD_STATE = Gauge(
    "guildhouse_shard_state",
    "Shard state: 0 starting, 1 connecting, 2 ready, 3 disconnected, 4 failed.",
    ["cluster", "shard"],
    multiprocess_mode="livemostrecent",
)
SHARD_GUILDS = Gauge(
    "guildhouse_shard_guilds",
    "Guilds served by each shard.",
    ["cluster", "shard"],
    multiprocess_mode="livemostrecent",
)
COMMANDS = Counter(
    "guildhouse_commands_total",
    "Commands run, by name, kind (prefix or slash) and outcome (ok, user_error, error, "
    "unavailable: PostgreSQL or Redis was out of reach).",
    ["cluster", "command", "kind", "outcome"],
)
COMMAND_DURATION = Histogram(
    "guildhouse_command_duration_seconds",
    "Time from invocation to the command's end.",
    ["cluster", "command"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DB_POOL_SIZE = Gauge(
    "guildhouse_db_pool_connections",
    "Connections in the asyncpg pool.",
    ["cluster"],
    multiprocess_mode="livemostrecent",
)
DB_POOL_IN_USE = Gauge(
    "guildhouse_db_pool_connections_in_use",
    "Connections of the asyncpg pool checked out.",
    ["cluster"],
    multiprocess_mode="livemostrecent",
)
QUERY_DURATION = Histogram(
    "guildhouse_db_query_duration_seconds",
    "PostgreSQL query time, by statement kind (SELECT, INSERT, ...) and outcome (ok, error).",
    ["cluster", "verb", "outcome"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
BACKEND_OUTAGES = Counter(
    "guildhouse_backend_outages_total",
    "Outages of a server the worker depends on (postgres, redis): each time the worker found it "
    "unreachable after it had been reachable.",
    ["cluster", "server"],
)
BACKEND_DOWN = Gauge(
    "guildhouse_backend_down",
    "1 while the worker sees the server (postgres, redis) as unreachable, else 0.",
    ["cluster", "server"],
    multiprocess_mode="livemostrecent",
)
REST_REQUESTS = Counter(
    "guildhouse_rest_requests_total",
    "REST calls answered, by route (ids replaced by placeholders) and HTTP status.",
    ["cluster", "route", "status"],
)
REST_429 = Counter(
    "guildhouse_rest_rate_limited_total",
    "429 answers from Discord, by scope (global or bucket).",
    ["cluster", "scope"],
)
REST_WAIT = Histogram(
    "guildhouse_rest_limiter_wait_seconds",
    "Time a REST call waited for the shared global limit or its route bucket (calls that "
    "waited at all).",
    ["cluster"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
REST_INVALID = Gauge(
    "guildhouse_rest_invalid_requests",
    "401/403/429 answers in the last 10 minutes, counted across the whole bot (Discord bans "
    "at 10,000).",
    ["cluster"],
    multiprocess_mode="livemostrecent",
)
THROTTLED = Counter(
    "guildhouse_commands_throttled_total",
    "Command calls refused by a throttle, by command.",
    ["cluster", "command"],
)
XP_AWARDS = Counter(
    "guildhouse_xp_awards_total",
    "Message XP decisions, by outcome (awarded, cooldown, duplicate, no_xp).",
    ["cluster", "outcome"],
)
XP_AWARDED = Counter(
    "guildhouse_xp_awarded_points_total",
    "XP points awarded for messages.",
    ["cluster"],
)
XP_FLUSH_BATCHES = Counter(
    "guildhouse_xp_flush_batches_total",
    "Batches of XP awards written from the Redis stream to Postgres.",
    ["cluster"],
)
XP_FLUSH_ROWS = Counter(
    "guildhouse_xp_flush_rows_total",
    "XP awards flushed to Postgres, by result (inserted, or duplicate: already written).",
    ["cluster", "result"],
)
XP_FLUSH_LAG = Gauge(
    "guildhouse_xp_flush_lag_seconds",
    "Age of the oldest XP award counted in Redis but not yet written to Postgres (0: none).",
    ["cluster"],
    multiprocess_mode="livemax",
)
LEADERBOARD_REBUILDS = Counter(
    "guildhouse_leaderboard_rebuilds_total",
    "Leaderboard rebuilds from Postgres, by trigger (auto: Redis found empty; command).",
    ["cluster", "trigger"],
)
LEVEL_UPS = Counter(
    "guildhouse_level_ups_total",
    "Level-ups announced.",
    ["cluster"],
)
REMINDERS_DUE = Gauge(
    "guildhouse_reminders_due",
    "Reminder deliveries due now and not yet sent that this cluster may deliver (DMs count on "
    "every cluster).",
    ["cluster"],
    multiprocess_mode="livemostrecent",
)
REMINDERS_FIRED = Counter(
    "guildhouse_reminders_fired_total",
    "Reminder deliveries handled, by outcome: sent, already_sent (found sent on a reclaim, not "
    "sent again), retry, failed, error.",
    ["cluster", "outcome"],
)
REMINDERS_LATE = Counter(
    "guildhouse_reminders_late_total",
    "Reminders sent a minute or more after their time (marked late in the message).",
    ["cluster"],
)
REMINDERS_RECLAIMED = Counter(
    "guildhouse_reminders_reclaimed_total",
    "Reminder deliveries claimed again after a lease passed or an attempt failed.",
    ["cluster"],
)
REMINDERS_DELAY = Histogram(
    "guildhouse_reminders_delay_seconds",
    "Time from a reminder's due time to its claim for sending.",
    ["cluster"],
    buckets=(0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400),
)
PROCESS_CPU = Gauge(
    "guildhouse_worker_cpu_percent",
    "CPU use of the worker process (percent of one core) since the last sample.",
    ["cluster"],
    multiprocess_mode="livemostrecent",
)
PROCESS_MEMORY = Gauge(
    "guildhouse_worker_resident_memory_bytes",
    "Resident memory of the worker process.",
    ["cluster"],
    multiprocess_mode="livemostrecent",
)
PROCESS_FDS = Gauge(
    "guildhouse_worker_open_fds",
    "Open file descriptors of the worker process.",
    ["cluster"],
    multiprocess_mode="livemostrecent",
)

_process = psutil.Process()


def sample_process(cluster: str) -> None:
    """Refresh the process gauges (cheap; called from the worker's report loop)."""
    with _process.oneshot():
        PROCESS_CPU.labels(cluster).set(_process.cpu_percent(None))
        PROCESS_MEMORY.labels(cluster).set(_process.memory_info().rss)
        PROCESS_FDS.labels(cluster).set(_process.num_fds())
