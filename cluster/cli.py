"""`guildhouse`: the command line of the launcher."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cluster import logs
from cluster.settings import Settings, SettingsError, load

if TYPE_CHECKING:
    from cluster.launcher import BackingUrls

log = logging.getLogger(__name__)

EXIT_BAD_SETTINGS = 2


def _settings_or_exit() -> Settings:
    try:
        return load()
    except SettingsError as exc:
        for line in exc.problems:
            print(f"guildhouse: bad setting: {line}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_SETTINGS) from None


def _run_async(coro: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop
        return asyncio.run(coro)
    return uvloop.run(coro)


# -- commands ----------------------------------------------------------------------------------


def cmd_config_check(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    shown = settings.masked()
    width = max(len(k) for k in shown)
    if settings.config_file:
        print(f"# values from the environment, then {settings.config_file}")
    for key, value in shown.items():
        print(f"{key:<{width}}  {value}")
    print("settings OK")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    logs.setup(settings.log_level, settings.log_format)
    from cluster.launcher import backing_services

    directory: Path | None = args.dir
    if args.status:
        # Looking changes nothing, so it starts nothing: it reads the running database.
        urls = _running_or_exit(settings, redis=False)
        return _run_async(_migrate(urls.database_url, directory, show_status=True))
    # Applying is what a user runs on purpose before a first start: it may start the
    # embedded PostgreSQL (and stops it again unless a launcher runs it).
    with backing_services(settings, redis=False) as urls:
        return _run_async(_migrate(urls.database_url, directory, show_status=False))


def _running_or_exit(
    settings: Settings, *, redis: bool = True, postgres: bool = True
) -> BackingUrls:
    """The servers of the running launcher (or the URLs given); exit 1 in one line if none."""
    from cluster.launcher import NothingRunning, running_services

    try:
        return running_services(settings, redis=redis, postgres=postgres)
    except NothingRunning as exc:
        print(f"guildhouse: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


async def _migrate(dsn: str, directory: Path | None, *, show_status: bool) -> int:
    from bot.entry import MigrationError, apply_migrations, migration_status

    try:
        if not show_status:
            applied = await apply_migrations(dsn, directory)
            print(
                f"applied {len(applied)} migration(s)"
                + (": " + ", ".join(m.filename for m in applied) if applied else "")
            )
            return 0
        rows = await migration_status(dsn, directory)
    except MigrationError as exc:
        print(f"guildhouse: migration failed: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"guildhouse: cannot reach the database: {exc}", file=sys.stderr)
        return 1
    for row in rows:
        if row.applied_at:
            note = " (file changed since)" if row.changed else ""
            note += " (file missing)" if row.migration is None else ""
            when = f"{row.applied_at:%Y-%m-%d %H:%M:%S%z}"
            print(f"applied  {row.version:04d}_{row.name}  {when}{note}")
        else:
            print(f"pending  {row.version:04d}_{row.name}")
    pending = sum(1 for r in rows if not r.applied)
    print(f"{len(rows) - pending} applied, {pending} pending")
    return 0


def cmd_leaderboards_rebuild(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    logs.setup(settings.log_level, settings.log_format)
    urls = _running_or_exit(settings)
    return _run_async(_rebuild(urls.database_url, urls.redis_url, settings.redis_prefix))


async def _rebuild(dsn: str, redis_url: str, prefix: str) -> int:
    import asyncpg
    from redis.exceptions import RedisError

    from bot.entry import rebuild_leaderboards
    from ipc.leaderboard import RebuildBusy

    try:
        result = await rebuild_leaderboards(dsn, redis_url, prefix)
    except (OSError, RedisError, asyncpg.PostgresError, RebuildBusy) as exc:
        print(f"guildhouse: leaderboard rebuild failed: {exc}", file=sys.stderr)
        return 1
    if result is None:
        print("guildhouse: another process is rebuilding the leaderboards; try again later")
        return 1
    boards, replayed = result
    print(
        f"rebuilt {boards} leaderboard(s) from PostgreSQL "
        f"({replayed} award(s) not yet in PostgreSQL replayed from the stream)"
    )
    return 0


def _guild_id(raw: str) -> int | None:
    # Discord snowflakes: positive, and they fit PostgreSQL's BIGINT.
    if raw.isascii() and raw.isdigit() and len(raw) <= 20 and 0 < int(raw) < 2**63:
        return int(raw)
    return None


def cmd_leaderboards_import(args: argparse.Namespace) -> int:
    guild_id = _guild_id(args.guild)
    if guild_id is None:
        print(
            f"guildhouse: --guild {args.guild!r} is not a guild id "
            "(a Discord snowflake: a positive whole number)",
            file=sys.stderr,
        )
        return 2
    path: Path = args.file
    from bot.entry import MAX_IMPORT_BYTES

    try:
        size = path.stat().st_size
        if not path.is_file():
            raise IsADirectoryError(f"{path} is not a file")
        if size > MAX_IMPORT_BYTES:
            print(
                f"guildhouse: {path} is {size:,} bytes; at most {MAX_IMPORT_BYTES:,} are "
                "accepted (split it: each import sets the members it lists)",
                file=sys.stderr,
            )
            return 2
        data = path.read_bytes()
    except OSError as exc:
        print(f"guildhouse: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    settings = _settings_or_exit()
    logs.setup(settings.log_level, settings.log_format)
    urls = _running_or_exit(settings)
    return _run_async(
        _import(
            urls.database_url,
            urls.redis_url,
            settings.redis_prefix,
            guild_id,
            data,
            dry_run=args.dry_run,
            source=path.name,
        )
    )


async def _import(
    dsn: str,
    redis_url: str,
    prefix: str,
    guild_id: int,
    data: bytes,
    *,
    dry_run: bool,
    source: str,
) -> int:
    import asyncpg

    from bot.entry import ImportRefused, import_xp

    try:
        report = await import_xp(
            dsn, redis_url, prefix, guild_id, data, dry_run=dry_run, source=source
        )
    except ImportRefused as exc:
        print(f"guildhouse: {source}: {exc}", file=sys.stderr)
        return 2
    except asyncpg.UndefinedTableError as exc:
        print(
            f"guildhouse: XP import failed: {exc}; run `guildhouse migrate` first",
            file=sys.stderr,
        )
        return 1
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"guildhouse: XP import failed: {exc}", file=sys.stderr)
        return 1
    parsed, applied = report.parsed, report.applied
    head = "dry run, nothing written: " if dry_run else ""
    print(
        f"{head}{source}: {parsed.lines:,} line(s): {len(parsed.rows):,} imported, "
        f"{parsed.skipped:,} skipped ({parsed.blank:,} blank, "
        f"{'1 header, ' if parsed.header else ''}{parsed.error_count:,} with errors)"
    )
    for err in parsed.errors:
        print(f"  line {err.line}: {err.message}")
    if parsed.error_count > len(parsed.errors):
        print(f"  ... and {parsed.error_count - len(parsed.errors):,} more error(s)")
    verb = "would change" if dry_run else "changed"
    print(
        f"guild {guild_id}: {applied.changed:,} member(s) {verb} ({applied.xp_delta:+,} XP), "
        f"{applied.unchanged:,} already had this import"
    )
    if report.boards == "rebuilt":
        print("leaderboards rebuilt from PostgreSQL")
    elif report.boards == "busy":
        print(
            "guildhouse: the import is saved, but another process kept rebuilding the "
            "leaderboards; run `guildhouse leaderboards rebuild`",
            file=sys.stderr,
        )
        return 1
    elif report.boards.startswith("failed"):
        print(
            f"guildhouse: the import is saved, but the leaderboards were not rebuilt "
            f"({report.boards.removeprefix('failed: ')}); run `guildhouse leaderboards rebuild`",
            file=sys.stderr,
        )
        return 1
    return 1 if parsed.error_count else 0


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    logs.setup(settings.log_level, settings.log_format)
    from cluster.metrics import disable_multiprocess, enable_multiprocess

    # Before anything imports prometheus_client: workers inherit the directory.
    metrics_dir = enable_multiprocess()
    try:
        from cluster.launcher import run

        return _run_async(run(settings))
    finally:
        disable_multiprocess(metrics_dir)


def cmd_commands_sync(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    logs.setup(settings.log_level, settings.log_format)
    from cluster.launcher import sync_commands

    return _run_async(sync_commands(settings, args.guild))


def cmd_chat(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    from cluster.console import ChatError, chat, find_control_url
    from cluster.launcher import NothingRunning, running_services

    try:
        base = find_control_url(settings.data_dir, args.url)
    except ChatError as exc:
        print(f"guildhouse: {exc}", file=sys.stderr)
        return 1
    # The bot's Redis, if there is one to read: it tells when the bot waits out a rate limit.
    try:
        redis_url: str | None = running_services(settings, postgres=False).redis_url
    except NothingRunning:
        redis_url = None
    try:
        return _run_async(
            chat(
                base,
                args.channel,
                args.user,
                standing=args.as_,
                history=args.history,
                redis_url=redis_url,
                redis_prefix=settings.redis_prefix,
            )
        )
    except ChatError as exc:
        print(f"guildhouse: {exc}", file=sys.stderr)
        return 1


def cmd_status(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    logs.setup("WARNING", settings.log_format)
    from cluster.launcher import status

    return _run_async(status(settings, as_json=args.json))


def cmd_restart(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    logs.setup("WARNING", settings.log_format)
    if not args.rolling:
        print(
            "guildhouse: only --rolling restarts are supported; restart the launcher "
            "(or the pod) to restart everything at once",
            file=sys.stderr,
        )
        return 2
    from cluster.launcher import rolling_restart

    return _run_async(rolling_restart(settings))


def run_sandbox(argv: list[str]) -> int:
    """`guildhouse sandbox ...`: the sandbox parses its own options (and --help)."""
    from sandbox.runner import main as sandbox_main

    return int(sandbox_main([a for a in argv if a != "--"]))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_usage(sys.stderr)
    return 2


# -- parser ------------------------------------------------------------------------------------


class _Add(Protocol):
    """Adds a subcommand to `guildhouse` (name, the function it runs, help, description)."""

    def __call__(
        self,
        name: str,
        func: Callable[[argparse.Namespace], int],
        help_: str,
        description: str | None = None,
    ) -> argparse.ArgumentParser: ...


def build_parser() -> argparse.ArgumentParser:
    """`guildhouse`'s parser: a function per subcommand group adds its parsers, in the order
    `guildhouse --help` lists them."""
    parser = argparse.ArgumentParser(
        prog="guildhouse",
        description="Guildhouse: a Discord bot for gaming communities, run as a sharded cluster.",
        epilog="Settings come from the environment and an optional guildhouse.toml; "
        "see `guildhouse config check`.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(
        name: str,
        func: Callable[[argparse.Namespace], int],
        help_: str,
        description: str | None = None,
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=description or help_)
        p.set_defaults(func=func)
        return p

    _run_and_migrate(add)
    _config_and_commands(add)
    _leaderboards(add)
    _operations(add)
    _chat(add)
    # Listed here for `guildhouse --help`; main() hands its arguments to the sandbox untouched.
    add(
        "sandbox",
        lambda a: run_sandbox([]),
        "run the built-in Discord sandbox on its own",
        "Run the local Discord emulator (gateway + REST). See `guildhouse sandbox --help`.",
    )
    return parser


def _run_and_migrate(add: _Add) -> None:
    add(
        "run",
        cmd_run,
        "start the bot: services, migrations, workers",
        "Start Guildhouse. Without DATABASE_URL/REDIS_URL it starts embedded PostgreSQL and "
        "Redis under DATA_DIR; without DISCORD_TOKEN it runs against the built-in sandbox. "
        "Stops gracefully on Ctrl-C or SIGTERM.",
    )

    mig = add(
        "migrate",
        cmd_migrate,
        "apply database migrations (or list them)",
        "Apply pending database migrations, each in its own transaction, under an "
        "advisory lock (safe to run from several places at once).",
    )
    mig.add_argument(
        "--status", action="store_true", help="list applied and pending migrations; change nothing"
    )
    mig.add_argument(
        "--dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="read migrations from DIR instead of the built-in ones",
    )


def _config_and_commands(add: _Add) -> None:
    cfg = add("config", lambda a: _usage(cfg), "inspect settings")
    cfg_sub = cfg.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    check = cfg_sub.add_parser(
        "check",
        help="print effective settings (secrets masked); exit 2 naming bad values",
        description="Print the effective settings with secrets masked. Exits 2 with one line "
        "per bad value.",
    )
    check.set_defaults(func=cmd_config_check)

    cmds = add("commands", lambda a: _usage(cmds), "manage slash commands")
    cmds_sub = cmds.add_subparsers(dest="commands_command", metavar="SUBCOMMAND")
    sync = cmds_sub.add_parser(
        "sync",
        help="register slash commands with Discord (global, or one guild)",
        description="Register the bot's slash commands with Discord. Done on demand, by one "
        "process, never on every start. Global commands can take a while to appear in "
        "clients; --guild updates one server at once (useful while developing).",
    )
    sync.add_argument(
        "--guild", type=int, default=None, metavar="ID", help="sync to this guild only"
    )
    sync.set_defaults(func=cmd_commands_sync)


def _leaderboards(add: _Add) -> None:
    lb = add("leaderboards", lambda a: _usage(lb), "manage the XP leaderboards")
    lb_sub = lb.add_subparsers(dest="leaderboards_command", metavar="SUBCOMMAND")
    rebuild = lb_sub.add_parser(
        "rebuild",
        help="rebuild every XP leaderboard in Redis from PostgreSQL",
        description="Rebuild every XP leaderboard (per guild and global; all-time, month, "
        "week, day) in Redis from PostgreSQL, the system of record, plus the awards still on "
        "their way from the Redis stream. Safe while the bot runs: awards made meanwhile are "
        "kept, and only one process rebuilds at a time. The bot does this by itself when it "
        "finds Redis empty.",
    )
    rebuild.set_defaults(func=cmd_leaderboards_rebuild)
    imp = lb_sub.add_parser(
        "import",
        help="import XP for one guild from a CSV file (user_id,xp), e.g. from another bot",
        description="Import XP for one guild from a CSV file of `user_id,xp` lines (a header "
        "line is optional, blank lines are skipped), for a server moving from another leveling "
        "bot. Every line is checked; good lines are imported, bad ones are reported with "
        "their line numbers. An import sets each listed member's imported XP: the same file "
        "twice changes nothing, a corrected file changes only the difference; XP earned here "
        "is kept. Written to PostgreSQL (audited as xp.import), then the leaderboards are "
        "rebuilt. Imported levels are not announced. Exit status: 0 all lines imported, 1 "
        "some lines skipped with errors (the rest imported) or the boards not rebuilt, 2 a "
        "bad argument or a file refused as a whole.",
    )
    imp.add_argument(
        "--guild",
        required=True,
        metavar="ID",
        help="the guild (server) id whose members the file lists",
    )
    imp.add_argument(
        "file",
        type=Path,
        metavar="FILE.csv",
        help="CSV file, UTF-8, lines `user_id,xp` (xp 0 to 1,000,000,000; at most 16 MiB)",
    )
    imp.add_argument(
        "--dry-run",
        action="store_true",
        help="check the file and report what would change; write nothing",
    )
    imp.set_defaults(func=cmd_leaderboards_import)


def _operations(add: _Add) -> None:
    st = add(
        "status",
        cmd_status,
        "show the running clusters and shards",
        "Clusters and shards (state, latency, guilds, uptime, restarts) from the cluster "
        "registry in Redis, across every process and pod.",
    )
    st.add_argument("--json", action="store_true", help="print JSON instead of a table")

    rs = add(
        "restart",
        cmd_restart,
        "restart the running workers",
        "With --rolling, restart every worker of every launcher one at a time, each waiting "
        "until the previous one's shards are READY again: at most one cluster is down at once.",
    )
    rs.add_argument("--rolling", action="store_true", help="one worker at a time (required)")


def _chat(add: _Add) -> None:
    ch = add(
        "chat",
        cmd_chat,
        "talk to the bot in a sandbox channel from the terminal",
        "Type as a member of a sandbox server: messages, prefix commands, slash commands "
        "(/roll dice:2d6), button clicks (:click 1) and saving a file the bot sent (:save 1 "
        "[PATH]); what the bot says from then on is printed as Discord shows it, files "
        "numbered for :save. Piped input waits for the answers, then exits. :help "
        "lists the console's own commands. Needs a running sandbox (`guildhouse run` without "
        "DISCORD_TOKEN, or --url).",
    )
    ch.add_argument(
        "--channel",
        type=int,
        default=None,
        metavar="ID",
        help="channel to talk in (default: #general of the first server)",
    )
    ch.add_argument(
        "--as",
        dest="as_",
        choices=["member", "moderator", "admin", "owner"],
        default="member",
        help="speak as a member with this standing, by Discord permissions (default: a plain "
        "member; admin is the server's owner where no one else has admin rights)",
    )
    ch.add_argument(
        "--user",
        type=int,
        default=None,
        metavar="ID",
        help="speak as this user (instead of --as)",
    )
    ch.add_argument(
        "--history",
        type=int,
        default=0,
        metavar="N",
        help="first show the last N things the bot said in the channel (default: only what "
        "happens from now on)",
    )
    ch.add_argument(
        "--url",
        default=None,
        metavar="URL",
        help="the sandbox's control URL (default: from DATA_DIR/sandbox.json)",
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sandbox"]:
        return run_sandbox(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
