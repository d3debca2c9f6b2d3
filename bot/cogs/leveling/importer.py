"""Import XP from another leveling bot: a CSV file of ``user_id,xp`` lines, for one guild.

`parse` is pure: it checks the file line by line and keeps the good lines (first occurrence of
a member), the errors with their line numbers, and the file's SHA-256. `apply` writes the good
lines to PostgreSQL, the system of record, in one transaction with its audit row; the caller
then rebuilds the Redis boards from PostgreSQL (see bot.entry.import_xp).

Semantics: an import *sets* each listed member's imported amount (table ``xp_imports``); their
XP changes by the difference from what earlier imports gave them. Importing the same file twice
changes nothing the second time; a different file replaces the imported amounts of the members
it lists (members it doesn't list keep theirs); XP earned in Guildhouse is never touched. Each
change is an ``xp_events`` row of kind ``import`` with the award id
``i:<guild>:<user>:<revision>:<file hash>``, dated at the Discord epoch (2015-01-01 UTC), so
imported XP counts on the all-time boards and in no month, week or day. A decrease never takes
a member below 0.

Levels reached by an import are recorded as announced (``xp_totals.level``) without an
announcement, a level role or an achievement: those come with the member's next level-up.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import hashlib
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bot import audit
from bot.cogs.leveling import rules
from bot.cogs.leveling.rebuild import rebuild
from ipc.client import Keys
from ipc.leaderboard import RebuildBusy

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 16 * 1024 * 1024  # ~500,000 lines; a guild's members, with room to spare
MAX_LINE_BYTES = 256
MAX_XP = 10**9
MAX_USER_ID = 2**63 - 1  # PostgreSQL BIGINT; every Discord snowflake fits
MAX_ERRORS_LISTED = 20
# Imported XP was earned before, elsewhere: dated here, it is in no current month/week/day.
IMPORT_EPOCH = datetime(2015, 1, 1, tzinfo=UTC)
ACTION = "xp.import"
CLI_ACTOR = 0  # audit_log.actor_id of the operator running the CLI

_DIGITS = re.compile(r"[0-9]{1,20}")
_SIGNED = re.compile(r"[+-]?[0-9]+")
_LETTER = re.compile(r"[A-Za-z]")


class ImportRefused(ValueError):
    """The file as a whole can't be imported (too large, not UTF-8 text); the message says
    why."""


@dataclass(frozen=True)
class LineError:
    line: int  # 1-based
    message: str


@dataclass
class Parsed:
    sha256: str
    rows: dict[int, int] = field(default_factory=dict)  # user id -> xp, in file order
    lines: int = 0  # lines in the file
    blank: int = 0
    header: bool = False
    errors: list[LineError] = field(default_factory=list)  # the first MAX_ERRORS_LISTED
    error_count: int = 0

    @property
    def skipped(self) -> int:
        """Lines not imported: blank lines, the header and lines with errors."""
        return self.blank + int(self.header) + self.error_count

    def _error(self, line: int, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS_LISTED:
            self.errors.append(LineError(line, message))


def _show(value: str) -> str:
    # repr: a value from the file never puts control characters on the operator's terminal.
    return repr(value if len(value) <= 40 else value[:40] + "…")


def _is_header(fields: list[str]) -> bool:
    return any(_LETTER.search(f) for f in fields) and not any(_SIGNED.fullmatch(f) for f in fields)


def _row(fields: list[str], text: str) -> tuple[int, int] | str:
    """A line's (user id, xp), or what is wrong with it."""
    if len(fields) != 2:
        hint = ""
        if len(fields) == 1 and any(sep in text for sep in ";\t|"):
            hint = " (separate the columns with a comma)"
        return f"expected 2 columns (user_id,xp), found {len(fields)}{hint}"
    user_text, xp_text = fields
    if not _DIGITS.fullmatch(user_text):
        return f"user id {_show(user_text)} is not a Discord id (a whole number, up to 20 digits)"
    user_id = int(user_text)
    if not 0 < user_id <= MAX_USER_ID:
        return f"user id {user_id} is out of range (1 to {MAX_USER_ID})"
    if not _SIGNED.fullmatch(xp_text) or len(xp_text) > 20:
        return f"xp {_show(xp_text)} is not a whole number"
    xp = int(xp_text)
    if xp < 0:
        return f"xp {xp} is negative"
    if xp > MAX_XP:
        return f"xp {xp:,} is more than the limit of {MAX_XP:,}"
    return user_id, xp


def parse(data: bytes) -> Parsed:
    """Check a ``user_id,xp`` CSV file line by line (an optional header line first; blank
    lines skipped; a UTF-8 byte order mark allowed)."""
    if len(data) > MAX_FILE_BYTES:
        raise ImportRefused(
            f"the file is {len(data):,} bytes; at most {MAX_FILE_BYTES:,} are accepted "
            "(split it into several files: each import sets the members it lists)"
        )
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ImportRefused("the file is UTF-16 text; save it as UTF-8 (CSV UTF-8)")
    out = Parsed(sha256=hashlib.sha256(data).hexdigest())
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    raw_lines = data.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()  # the newline ending the last line
    out.lines = len(raw_lines)
    seen_at: dict[int, int] = {}
    content_seen = False
    for number, line in enumerate(raw_lines, start=1):
        raw = line.removesuffix(b"\r")
        if len(raw) > MAX_LINE_BYTES:
            out._error(number, f"the line is longer than {MAX_LINE_BYTES} bytes")
            content_seen = True
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            out._error(number, "not UTF-8 text (save the file as UTF-8)")
            content_seen = True
            continue
        if "\x00" in text:
            out._error(number, "contains NUL bytes: not UTF-8 text (UTF-16? save it as UTF-8)")
            content_seen = True
            continue
        if not text.strip():
            out.blank += 1
            continue
        try:
            fields = [f.strip() for f in next(csv.reader([text]))]
        except csv.Error as exc:
            out._error(number, f"not a CSV line ({exc})")
            content_seen = True
            continue
        first, content_seen = not content_seen, True
        if first and _is_header(fields):
            out.header = True
            continue
        row = _row(fields, text)
        if isinstance(row, str):
            out._error(number, row)
            continue
        user_id, xp = row
        if user_id in seen_at:
            out._error(
                number,
                f"user {user_id} is already on line {seen_at[user_id]} (the first one counts)",
            )
            continue
        seen_at[user_id] = number
        out.rows[user_id] = xp
    return out


# -- PostgreSQL -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Applied:
    changed: int  # members whose imported amount changed (or would, in a dry run)
    unchanged: int  # members this file already gave exactly this amount
    xp_delta: int  # net XP change over all members
    events: int  # xp_events rows written (or that would be)
    audit_id: int | None = None


def _lock_key(guild_id: int) -> int:
    digest = hashlib.blake2b(f"xp_import:{guild_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def award_id(guild_id: int, user_id: int, revision: int, sha256: str) -> str:
    return f"i:{guild_id}:{user_id}:{revision}:{sha256[:12]}"


def _deltas(
    parsed: Parsed, pending: list[int], before: dict[int, tuple[int, int]], current: dict[int, int]
) -> dict[int, int]:
    """Each member's XP change: the new imported amount less the one before, never taking a
    member's total (`current`, where it goes down) below 0."""
    deltas: dict[int, int] = {}
    for u in pending:
        delta = parsed.rows[u] - before.get(u, (0, 0))[0]
        if delta < 0:
            delta = max(delta, -max(0, current.get(u, 0)))
        if delta:
            deltas[u] = delta
    return deltas


async def apply(
    pool: asyncpg.Pool,
    guild_id: int,
    parsed: Parsed,
    *,
    dry_run: bool = False,
    source: str = "",
    now: datetime | None = None,
) -> Applied:
    """Write `parsed` (its good lines) for `guild_id`: events, totals, levels, the imported
    amounts and one audit row, in one transaction. A dry run reads the same and writes
    nothing."""
    users = list(parsed.rows)
    async with pool.acquire() as conn, conn.transaction(readonly=dry_run):
        if not dry_run:
            # One import per guild at a time: the difference is taken from what we read here.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(guild_id))
        rows = await conn.fetch(
            "SELECT user_id, xp, revision FROM xp_imports "
            "WHERE guild_id = $1 AND user_id = ANY($2::bigint[])",
            guild_id,
            users,
        )
        before = {r["user_id"]: (int(r["xp"]), int(r["revision"])) for r in rows}
        pending = [u for u in users if before.get(u, (0, 0))[0] != parsed.rows[u]]
        lowered = [u for u in pending if parsed.rows[u] < before.get(u, (0, 0))[0]]
        current: dict[int, int] = {}
        if lowered:
            query = (
                "SELECT user_id, xp FROM xp_totals WHERE guild_id = $1 AND user_id = ANY($2) "
                "ORDER BY user_id"
            )
            # A dry run's transaction is read-only: no row locks there. Rows are locked and
            # written in user id order, so a concurrent flush waits rather than deadlocks.
            totals = await conn.fetch(
                query if dry_run else query + " FOR UPDATE", guild_id, lowered
            )
            current = {r["user_id"]: int(r["xp"]) for r in totals}
        deltas = _deltas(parsed, pending, before, current)
        unchanged = len(users) - len(pending)
        result = Applied(len(pending), unchanged, sum(deltas.values()), len(deltas))
        if dry_run or not pending:
            return result
        await _write(
            conn,
            guild_id,
            parsed,
            pending=pending,
            before=before,
            deltas=deltas,
            now=now or datetime.now(UTC),
        )
        entry = await audit.write(
            conn,
            guild_id=guild_id,
            actor_id=CLI_ACTOR,
            action=ACTION,
            before={"imported_xp": sum(before.get(u, (0, 0))[0] for u in pending)},
            after={
                "imported_xp": sum(parsed.rows[u] for u in pending),
                "members": len(pending),
                "xp_delta": result.xp_delta,
                "file_sha256": parsed.sha256,
                "file": source,
                "lines_with_errors": parsed.error_count,
            },
        )
    log.info(
        "XP import for guild %d: %d member(s) changed, %+d XP (file %s)",
        guild_id,
        result.changed,
        result.xp_delta,
        parsed.sha256[:12],
    )
    return Applied(result.changed, result.unchanged, result.xp_delta, result.events, entry.id)


async def _write(
    conn: asyncpg.Connection,
    guild_id: int,
    parsed: Parsed,
    *,
    pending: list[int],
    before: dict[int, tuple[int, int]],
    deltas: dict[int, int],
    now: datetime,
) -> None:
    revisions = {u: before.get(u, (0, 0))[1] + 1 for u in pending}
    if deltas:
        users = sorted(deltas)
        await conn.execute(
            """
            INSERT INTO xp_events (award_id, guild_id, user_id, amount, kind, created_at)
            SELECT a, $2, u, x, 'import', $5
            FROM unnest($1::text[], $3::bigint[], $4::int[]) AS t(a, u, x)
            """,
            [award_id(guild_id, u, revisions[u], parsed.sha256) for u in users],
            guild_id,
            users,
            [deltas[u] for u in users],
            IMPORT_EPOCH,
        )
        totals = await conn.fetch(
            """
            INSERT INTO xp_totals AS t (guild_id, user_id, xp)
            SELECT $1, u, x FROM unnest($2::bigint[], $3::bigint[]) AS i(u, x)
            ON CONFLICT (guild_id, user_id) DO UPDATE SET xp = t.xp + excluded.xp
            RETURNING user_id, xp
            """,
            guild_id,
            users,
            [deltas[u] for u in users],
        )
        # The level an import reaches counts as announced (nobody is told about it); one that
        # goes down follows the XP down, so it is announced when earned again.
        levels = {r["user_id"]: rules.level_for(int(r["xp"])) for r in totals}
        await conn.execute(
            """
            UPDATE xp_totals AS t SET level = CASE WHEN i.up THEN GREATEST(t.level, i.level)
                                                   ELSE LEAST(t.level, i.level) END
            FROM unnest($2::bigint[], $3::int[], $4::bool[]) AS i(user_id, level, up)
            WHERE t.guild_id = $1 AND t.user_id = i.user_id
            """,
            guild_id,
            list(levels),
            list(levels.values()),
            [deltas[u] > 0 for u in levels],
        )
    await conn.execute(
        """
        INSERT INTO xp_imports AS t (guild_id, user_id, xp, revision, file_sha256, imported_at)
        SELECT $1, u, x, r, $5, $6 FROM unnest($2::bigint[], $3::bigint[], $4::int[]) AS i(u, x, r)
        ON CONFLICT (guild_id, user_id) DO UPDATE SET xp = excluded.xp,
            revision = excluded.revision, file_sha256 = excluded.file_sha256,
            imported_at = excluded.imported_at
        """,
        guild_id,
        pending,
        [parsed.rows[u] for u in pending],
        [revisions[u] for u in pending],
        parsed.sha256,
        now,
    )


async def imported(pool: asyncpg.Pool, guild_id: int) -> dict[int, int]:
    """The imported amount of every member of `guild_id` who has one."""
    rows = await pool.fetch("SELECT user_id, xp FROM xp_imports WHERE guild_id = $1", guild_id)
    return {r["user_id"]: int(r["xp"]) for r in rows}


# -- the live boards ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportReport:
    guild_id: int
    dry_run: bool
    parsed: Parsed
    applied: Applied
    # rebuilt; unchanged (nothing changed, or a dry run); busy (another rebuild held the lock
    # all along); failed: <why>
    boards: str


async def refresh_boards(
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    keys: Keys,
    *,
    attempts: int = 60,
    wait: float = 0.5,
) -> str:
    """Rebuild the Redis boards from PostgreSQL after an import. A rebuild already running may
    have read PostgreSQL before the import committed, so this waits for it and rebuilds again."""
    for _ in range(attempts):
        try:
            if await rebuild(pool, redis, keys, trigger="import") is not None:
                return "rebuilt"
        except RebuildBusy:
            pass  # our rebuild lost its lock to another one: try again after it
        except (RedisError, OSError) as exc:
            log.warning("XP import saved, but the boards were not rebuilt: %s", exc)
            return f"failed: {exc}"
        await asyncio.sleep(wait)
    return "busy"
