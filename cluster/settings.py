"""Settings: read once, typed and validated, from the environment and an optional TOML file.

The environment wins over the file. Every problem is collected, so one run of
`guildhouse config check` names them all; `load()` raises `SettingsError` carrying one line per
problem, and the CLI prints those lines and exits with status 2.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ipc.client import SENTINEL_SCHEMES, parse_sentinel_url
from ipc.throttle import DEFAULT_COMMAND, DEFAULT_GUILD, DEFAULT_USER, Rule, RuleError

DEFAULT_API_URL = "https://discord.com/api/v10"
DEFAULT_CONFIG_FILE = "guildhouse.toml"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("auto", "json", "text")
# Checked again by the worker (bot/dpy/compression.py), which applies it.
GATEWAY_COMPRESSIONS = ("zlib-stream", "zstd-stream")


class SettingsError(Exception):
    """One or more settings are bad; `problems` has one human-readable line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Invalid(ValueError):
    """Raised by a parser: the message says what is wrong and what is expected."""


@dataclass(frozen=True)
class Settings:
    discord_token: str | None = None
    discord_api_url: str | None = None
    discord_gateway_url: str | None = None
    database_url: str | None = None
    redis_url: str | None = None
    redis_prefix: str = "gh:"
    shard_count: int | None = None  # None: ask Discord (GET /gateway/bot)
    cluster_count: int | None = None  # None: the CPU count, at most one per shard
    cluster_id: int | None = None  # None: this launcher runs every cluster
    owner_ids: frozenset[int] = frozenset()
    log_level: str = "INFO"
    log_format: str = "auto"  # auto: text on a terminal, JSON lines otherwise
    http_port: int = 8080
    data_dir: Path = Path(".guildhouse")
    rest_rate: int = 50
    gateway_compression: str = "zlib-stream"
    throttle_user: Rule | None = DEFAULT_USER
    throttle_command: Rule | None = DEFAULT_COMMAND
    throttle_guild: Rule | None = DEFAULT_GUILD
    throttle_exempt_mods: bool = True
    stats_rename_window: float = 600.0
    stats_settle: float = 10.0
    stats_rename_budget: float = 1.0
    stats_poll: float = 600.0
    stats_flush: float = 30.0
    stats_heartbeat_channel: int | None = None
    stats_heartbeat_every: float = 5.0  # minutes
    stats_presence_every: float = 0.0
    stats_presence_lines: tuple[str, ...] = ()
    analytics_flush: float = 10.0
    analytics_link_secret: str | None = None
    public_url: str = "http://localhost:8080"
    config_file: Path | None = None  # where file values came from, if any

    def clusters_for(self, shard_count: int) -> int:
        """CLUSTER_COUNT, or by default one per CPU but never more than shards."""
        if self.cluster_count is not None:
            return self.cluster_count
        return max(1, min(os.cpu_count() or 1, shard_count))

    @property
    def uses_sandbox(self) -> bool:
        """No token: the launcher starts the built-in Discord sandbox."""
        return self.discord_token is None

    def masked(self) -> dict[str, str]:
        """Effective settings for display, secrets masked."""
        out: dict[str, str] = {}
        for spec in SPECS:
            value = getattr(self, spec.attr)
            out[spec.env] = spec.show(value)
        return out


# -- parsers ---------------------------------------------------------------------------------


def _token(raw: str) -> str:
    value = raw.strip()
    if value.lower().startswith("bot "):
        value = value[4:].strip()
    parts = value.split(".")
    if len(parts) != 3 or not all(parts):
        raise _Invalid(
            "does not look like a bot token; expected three dot-separated parts "
            "(copy it from the Developer Portal, without 'Bot ')"
        )
    return value


def _url(*schemes: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        try:
            parts = urlsplit(value)
        except ValueError as exc:
            expected = f"{schemes[0]}://host..."
            raise _Invalid(f"is not a valid URL ({exc}); expected {expected}") from None
        if parts.scheme not in schemes:
            raise _Invalid(
                f"has scheme {parts.scheme or 'none'!r}; expected one of {', '.join(schemes)}"
            )
        if not parts.hostname and parts.scheme not in ("unix",):
            raise _Invalid(f"has no host; expected {schemes[0]}://host[:port]...")
        try:
            parts.port  # noqa: B018 - validates the port
        except ValueError:
            raise _Invalid("has an invalid port; expected a number from 1 to 65535") from None
        return value.rstrip("/")

    return parse


def _redis_url(raw: str) -> str:
    """A plain Redis URL, or one naming Sentinels (`redis+sentinel://h1:26379,h2/mymaster`)."""
    try:
        target = parse_sentinel_url(raw)
    except ValueError as exc:
        raise _Invalid(str(exc)) from None
    if target is not None:
        return raw.strip()
    return _url("redis", "rediss", "unix", *SENTINEL_SCHEMES)(raw)


def _int(lo: int, hi: int | None = None, *, auto: bool = False) -> Callable[[str], int | None]:
    expected = f"a whole number from {lo}" + (f" to {hi}" if hi is not None else " up")
    if auto:
        expected += " or 'auto'"

    def parse(raw: str) -> int | None:
        value = raw.strip()
        if auto and value.lower() == "auto":
            return None
        try:
            number = int(value, 10)
        except ValueError:
            raise _Invalid(f"is not a whole number; expected {expected}") from None
        if number < lo or (hi is not None and number > hi):
            raise _Invalid(f"is out of range; expected {expected}")
        return number

    return parse


def _float(lo: float, hi: float, unit: str, *, off: bool = False) -> Callable[[str], float]:
    """A number of `unit` from `lo` to `hi`; with `off`, also 0 (the feature is off)."""
    expected = f"a number of {unit} from {lo:g} to {hi:g}" + (", or 0 for off" if off else "")

    def parse(raw: str) -> float:
        try:
            number = float(raw.strip())
        except ValueError:
            raise _Invalid(f"is not a number; expected {expected}") from None
        if not (lo <= number <= hi or (off and number == 0)):
            raise _Invalid(f"is out of range; expected {expected}")
        return number

    return parse


def _snowflake(raw: str) -> int:
    value = raw.strip()
    if not value.isdigit() or not 15 <= len(value) <= 20:
        raise _Invalid("is not a Discord channel id; expected its numeric id (17-20 digits)")
    return int(value)


def _lines(raw: str) -> tuple[str, ...]:
    lines = tuple(x.strip() for x in raw.split("|") if x.strip())
    if too_long := [x for x in lines if len(x) > 128]:
        raise _Invalid(
            f"has a line of {len(too_long[0])} characters; expected lines separated by '|', "
            "each at most 128 characters (Discord's limit for an activity)"
        )
    return lines


def _secret(raw: str) -> str:
    value = raw.strip()
    if len(value) < 16:
        raise _Invalid("is too short to sign links with; expected at least 16 characters")
    return value


def _owner_ids(raw: str) -> frozenset[int]:
    ids: set[int] = set()
    for part in raw.replace(" ", ",").split(","):
        if not part:
            continue
        if not part.isdigit() or not 15 <= len(part) <= 20:
            raise _Invalid(
                f"contains {part!r}, which is not a Discord user id; "
                "expected comma-separated numeric ids (17-20 digits)"
            )
        ids.add(int(part))
    return frozenset(ids)


def _choice(options: tuple[str, ...], *, upper: bool) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().upper() if upper else raw.strip().lower()
        if value not in options:
            raise _Invalid(f"is not a known value; expected one of {', '.join(options)}")
        return value

    return parse


def _prefix(raw: str) -> str:
    value = raw.strip()
    if not value or len(value) > 32 or any(c.isspace() for c in value):
        raise _Invalid("expected 1-32 characters without spaces, e.g. 'gh:'")
    return value


def _rule(raw: str) -> Rule | None:
    if raw.strip().lower() == "off":
        return None
    try:
        return Rule.parse(raw)
    except RuleError as exc:
        raise _Invalid(f"is not usable: {exc}; or 'off'") from None


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise _Invalid("is not a yes/no value; expected true or false")


def _path(raw: str) -> Path:
    value = raw.strip()
    if not value:
        raise _Invalid("is empty; expected a directory path")
    return Path(value).expanduser()


# -- display ---------------------------------------------------------------------------------


def _mask_url(url: str) -> str:
    # By hand, not urlsplit's .port: a Sentinel URL lists several host:port pairs.
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    netloc = f"{userinfo.partition(':')[0]}:***@{hosts}" if at and ":" in userinfo else None
    query = re.sub(r"(sentinel_password=)[^&]*", r"\1***", parts.query)
    if netloc is None and query == parts.query:
        return url
    return urlunsplit(parts._replace(netloc=netloc or parts.netloc, query=query))


def _show_default(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, frozenset):
        return ",".join(str(v) for v in sorted(value)) or "(none)"
    if isinstance(value, tuple):
        return " | ".join(str(v) for v in value) or "(none)"
    return str(value)


@dataclass(frozen=True)
class Spec:
    env: str
    attr: str
    parse: Callable[[str], Any]
    help: str
    secret: bool = False
    url_secret: bool = False
    unset_means: str = ""

    def show(self, value: Any) -> str:
        if value is None:
            return f"(unset: {self.unset_means})" if self.unset_means else "(unset)"
        if self.secret:
            return "***"
        if self.url_secret:
            return _mask_url(str(value))
        return _show_default(value)


# Statistics' and analytics' settings (docs/stats.md, docs/community.md), handed to the workers
# in WorkerConfig.stats and .analytics.
FEATURE_SPECS: tuple[Spec, ...] = (
    Spec(
        "STATS_RENAME_WINDOW",
        "stats_rename_window",
        _float(1, 3600, "seconds"),
        "Window of Discord's 2 renames of a counter channel (600; tests shrink it).",
    ),
    Spec(
        "STATS_SETTLE",
        "stats_settle",
        _float(0, 600, "seconds"),
        "How long a burst of changes may go on before its counter's rename.",
    ),
    Spec(
        "STATS_RENAME_BUDGET",
        "stats_rename_budget",
        _float(0.01, 50, "renames a second"),
        "Counter renames a second, per worker.",
    ),
    Spec(
        "STATS_POLL",
        "stats_poll",
        _float(1, 86_400, "seconds"),
        "Seconds between reads of servers' approximate member and online counts.",
    ),
    Spec(
        "STATS_FLUSH",
        "stats_flush",
        _float(0.05, 3600, "seconds"),
        "Seconds between writes of the day tallies to PostgreSQL.",
    ),
    Spec(
        "STATS_HEARTBEAT_CHANNEL",
        "stats_heartbeat_channel",
        _snowflake,
        "Channel id of the owners' heartbeat message.",
        unset_means="no heartbeat",
    ),
    Spec(
        "STATS_HEARTBEAT_EVERY",
        "stats_heartbeat_every",
        _float(0.1, 1440, "minutes"),
        "Minutes between heartbeat edits.",
    ),
    Spec(
        "STATS_PRESENCE_EVERY",
        "stats_presence_every",
        _float(60, 86_400, "seconds", off=True),
        "Seconds between presence lines (at least 60), or 0: no rotation.",
    ),
    Spec(
        "STATS_PRESENCE_LINES",
        "stats_presence_lines",
        _lines,
        "Extra 'playing' presence lines, separated by '|' ({guilds} filled in).",
    ),
    Spec(
        "ANALYTICS_FLUSH",
        "analytics_flush",
        _float(0.05, 3600, "seconds"),
        "Seconds between writes of counted command uses.",
    ),
    Spec(
        "ANALYTICS_LINK_SECRET",
        "analytics_link_secret",
        _secret,
        "Key that signs analytics page links (at least 16 characters).",
        secret=True,
        unset_means="derived from the bot's token",
    ),
    Spec(
        "PUBLIC_URL",
        "public_url",
        _url("http", "https"),
        "The launcher's HTTP address as people reach it (analytics links start with it).",
    ),
)


SPECS: tuple[Spec, ...] = (
    Spec(
        "DISCORD_TOKEN",
        "discord_token",
        _token,
        "Bot token. Unset: run against the built-in sandbox.",
        secret=True,
        unset_means="built-in sandbox",
    ),
    Spec(
        "DISCORD_API_URL",
        "discord_api_url",
        _url("http", "https"),
        "REST base URL, e.g. a sandbox started on its own.",
        unset_means=f"{DEFAULT_API_URL} or the sandbox",
    ),
    Spec(
        "DISCORD_GATEWAY_URL",
        "discord_gateway_url",
        _url("ws", "wss"),
        "Gateway URL override.",
        unset_means="from GET /gateway/bot",
    ),
    Spec(
        "DATABASE_URL",
        "database_url",
        _url("postgres", "postgresql"),
        "PostgreSQL DSN.",
        url_secret=True,
        unset_means="embedded PostgreSQL under DATA_DIR",
    ),
    Spec(
        "REDIS_URL",
        "redis_url",
        _redis_url,
        "Redis URL; redis+sentinel://host:26379,host2:26379/mymaster names Sentinels instead "
        "(docs/kubernetes.md).",
        url_secret=True,
        unset_means="embedded Redis under DATA_DIR",
    ),
    Spec("REDIS_PREFIX", "redis_prefix", _prefix, "Prefix of every Redis key we write."),
    Spec(
        "SHARD_COUNT",
        "shard_count",
        _int(1, 100_000, auto=True),
        "Total shards, or 'auto'.",
        unset_means="auto: Discord's recommendation",
    ),
    Spec(
        "CLUSTER_COUNT",
        "cluster_count",
        _int(1, 1024),
        "Worker processes (clusters) in all.",
        unset_means="CPU count, at most one per shard",
    ),
    Spec(
        "CLUSTER_ID",
        "cluster_id",
        _int(0, 1023),
        "Run only this cluster (one per pod).",
        unset_means="this launcher runs every cluster",
    ),
    Spec("OWNER_IDS", "owner_ids", _owner_ids, "Comma-separated user ids with owner rights."),
    Spec("LOG_LEVEL", "log_level", _choice(LOG_LEVELS, upper=True), "Minimum log level."),
    Spec(
        "LOG_FORMAT",
        "log_format",
        _choice(LOG_FORMATS, upper=False),
        "json, text, or auto (text on a terminal, else json).",
    ),
    Spec("HTTP_PORT", "http_port", _int(0, 65535), "Port of /metrics, /healthz, /readyz."),
    Spec("DATA_DIR", "data_dir", _path, "Where embedded services keep their data."),
    Spec(
        "REST_RATE",
        "rest_rate",
        _int(1, 100_000),
        "REST requests per second for the whole bot (Discord's global limit: 50).",
    ),
    Spec(
        "GATEWAY_COMPRESSION",
        "gateway_compression",
        _choice(GATEWAY_COMPRESSIONS, upper=False),
        "Gateway transport compression: zlib-stream (a 32 KiB window per shard) or "
        "zstd-stream (the sender's window per shard: 2 MiB from the sandbox).",
    ),
    Spec(
        "THROTTLE_USER",
        "throttle_user",
        _rule,
        "Commands per user across all commands, e.g. 15/10s, or off.",
        unset_means="off",
    ),
    Spec(
        "THROTTLE_COMMAND",
        "throttle_command",
        _rule,
        "Calls of one command per user, e.g. 8/10s, or off.",
        unset_means="off",
    ),
    Spec(
        "THROTTLE_GUILD",
        "throttle_guild",
        _rule,
        "Calls of one command per server, e.g. 60/10s, or off.",
        unset_means="off",
    ),
    Spec(
        "THROTTLE_EXEMPT_MODS",
        "throttle_exempt_mods",
        _bool,
        "Moderators and admins skip command throttles (servers can override).",
    ),
    *FEATURE_SPECS,
)
SPEC_BY_ENV = {s.env: s for s in SPECS}


def _read_file(path: Path, problems: list[str]) -> dict[str, str]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        problems.append(f"GUILDHOUSE_CONFIG={str(path)!r}: cannot be read ({exc.strerror})")
        return {}
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"GUILDHOUSE_CONFIG={str(path)!r}: is not valid TOML ({exc})")
        return {}
    values: dict[str, str] = {}
    for key, value in data.items():
        env = key.upper()
        if env not in SPEC_BY_ENV:
            problems.append(
                f"{key} (in {path.name}): unknown setting; expected one of "
                f"{', '.join(s.env.lower() for s in SPECS)}"
            )
            continue
        if isinstance(value, list):
            values[env] = ",".join(str(v) for v in value)
        elif isinstance(value, bool) or not isinstance(value, str | int):
            problems.append(f"{key} (in {path.name}): must be a string or a number")
        else:
            values[env] = str(value)
    return values


def load(env: Mapping[str, str] | None = None, *, config_file: Path | None = None) -> Settings:
    """Read and validate settings; raise SettingsError naming every bad value."""
    env = os.environ if env is None else env
    problems: list[str] = []

    file_values: dict[str, str] = {}
    explicit = env.get("GUILDHOUSE_CONFIG")
    path = config_file or (Path(explicit) if explicit else Path(DEFAULT_CONFIG_FILE))
    used_file: Path | None = None
    if explicit or config_file or path.exists():
        file_values = _read_file(path, problems)
        used_file = path

    kwargs: dict[str, Any] = {}
    for spec in SPECS:
        source = "environment"
        raw = env.get(spec.env)
        if raw is None and spec.env in file_values:
            raw, source = file_values[spec.env], path.name
        if raw is None or (raw.strip() == "" and source == "environment"):
            continue  # unset (an empty variable counts as unset, as in most shells' habits)
        try:
            kwargs[spec.attr] = spec.parse(raw)
        except _Invalid as exc:
            shown = "***" if spec.secret else raw
            problems.append(f"{spec.env}={shown!r} ({source}): {exc}")

    if kwargs.get("cluster_id") is not None:
        if "cluster_count" not in kwargs:
            problems.append(
                f"CLUSTER_ID={kwargs['cluster_id']}: needs CLUSTER_COUNT, the number of "
                "clusters in all (on Kubernetes: the StatefulSet's replicas)"
            )
        elif kwargs["cluster_id"] >= (count := kwargs["cluster_count"]):
            problems.append(
                f"CLUSTER_ID={kwargs['cluster_id']}: must be below CLUSTER_COUNT ({count}); "
                "cluster ids count from 0"
            )
    shards, clusters = kwargs.get("shard_count"), kwargs.get("cluster_count")
    if shards is not None and clusters is not None and clusters > shards:
        problems.append(
            f"CLUSTER_COUNT={clusters}: more clusters than shards (SHARD_COUNT={shards}); "
            "expected at most one cluster per shard"
        )
    if problems:
        raise SettingsError(problems)
    return Settings(**kwargs, config_file=used_file)
