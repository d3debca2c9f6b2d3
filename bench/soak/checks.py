"""The soak's invariants, from the ledger, PostgreSQL, the sandbox's counts, the workers' RSS
and the launcher's log; each a row of the table: what, bound, measured, pass."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from bench.soak.faults import READY_WITHIN, Fault
from bench.soak.load import Action, Ledger, text_of
from bench.soak.rig import LogLine

REST_MAX = 50  # requests in any 1 s window
RSS_GROWTH = 48 * 2**20  # bytes a worker may grow after warm-up
WARM_UP = 60.0  # seconds of a worker's life before its RSS is held to the bound
BEFORE, AFTER = 2.0, 10.0  # a fault's window: from BEFORE s before it to AFTER s after READY


@dataclass
class Row:
    what: str
    bound: str
    measured: str
    ok: bool


def in_window(at: float, faults: list[Fault]) -> bool:
    return any(f.at - BEFORE <= at <= (f.end or f.at) + AFTER for f in faults)


def _answered(ledger: Ledger, a: Action) -> int:
    return len(ledger.answers(a.token))


def commands(ledger: Ledger, faults: list[Fault]) -> list[Row]:
    rolls = [a for a in ledger.actions if a.kind in ("roll", "slash") and not a.error]
    twice, lost = [], []
    for a in rolls:
        got, clicks = _answered(ledger, a), ledger.clicked.get(a.token, 0)
        if got > 1 + clicks:
            twice.append(a.token)
        if got == 0 and not in_window(a.sent, faults):
            lost.append(a.token)
    lost += [
        a.token
        for a in ledger.actions
        if a.kind == "warn" and not a.error and not a.case and not in_window(a.sent, faults)
    ]
    warns = [a for a in ledger.actions if a.kind == "warn" and not a.error]
    case_twice = [k for k, es in ledger.cases.items() if len({e["message_id"] for e in es}) > 1]
    return [
        Row(
            "rolls (prefix, slash, rerolls) answered twice",
            "0",
            f"{len(twice)} of {len(rolls)}",
            not twice,
        ),
        Row("warnings answered twice", "0", f"{len(case_twice)} of {len(warns)}", not case_twice),
        Row(
            "commands sent outside a fault window, unanswered",
            "0",
            f"{len(lost)} {lost[:5]}" if lost else "0",
            not lost,
        ),
    ]


async def database(db: asyncpg.Connection, ledger: Ledger, faults: list[Fault]) -> list[Row]:
    rows: list[Row] = []
    chats = [a for a in ledger.actions if a.kind == "chat" and a.ref and not a.error]
    ids = [f"m:{a.ref}" for a in chats]
    found = {
        r["award_id"]
        for r in await db.fetch(
            "SELECT award_id FROM xp_events WHERE award_id = ANY($1::text[])", ids
        )
    }
    quiet = [a for a in chats if not in_window(a.sent, faults)]
    missing = [a.ref for a in quiet if f"m:{a.ref}" not in found]
    rows.append(
        Row(
            "XP awards of chat outside fault windows in PostgreSQL",
            "all",
            f"{len(quiet) - len(missing)} of {len(quiet)} ({len(found)} of {len(chats)} in all)",
            not missing,
        )
    )
    off = await db.fetch(
        """SELECT t.guild_id, t.user_id, t.xp, coalesce(e.sum, 0) AS events
           FROM xp_totals t LEFT JOIN (SELECT guild_id, user_id, sum(amount) AS sum
                FROM xp_events GROUP BY 1, 2) e USING (guild_id, user_id)
           WHERE t.xp <> coalesce(e.sum, 0)"""
    )
    rows.append(
        Row("members whose XP total is not the sum of their awards", "0", str(len(off)), not off)
    )
    rows += await _reminders(db, ledger, faults)
    rows += await _cases(db, ledger)
    rows += await _points(db, ledger, faults)
    return rows


async def _reminders(db: asyncpg.Connection, ledger: Ledger, faults: list[Fault]) -> list[Row]:
    """A reminder's confirmation (`Reminder #N set`) names its row; its message is its token.
    Saved at most once; every confirmed row there; every saved one fired exactly once."""
    reminders = [a for a in ledger.actions if a.kind == "remind" and not a.error]
    rows: dict[str, list[int]] = defaultdict(list)
    ids = set()
    for r in await db.fetch("SELECT id, message FROM reminders WHERE message LIKE 'soak-r%'"):
        rows[r["message"]].append(r["id"])
        ids.add(r["id"])
    twice = [a.token for a in reminders if len(rows[a.token]) > 1]
    unsaved = [n for n in ledger.confirmed if n not in ids]
    confirmed_twice = [n for n, msgs in ledger.confirmed.items() if len(msgs) > 1]
    wrong_fire, lost = [], []
    for a in reminders:
        fired = {
            e["message_id"]
            for e in ledger.by_token.get(a.token, [])
            if e.get("kind") != "edit" and text_of(e).startswith("⏰")
        }
        if len(fired) != (1 if rows[a.token] else 0):
            wrong_fire.append(f"{a.token}:{len(fired)}")
        if not rows[a.token] and not in_window(a.sent, faults):
            lost.append(a.token)
    return [
        Row(
            "reminders: confirmed ones in PostgreSQL, none saved twice",
            "0 wrong",
            f"{len(unsaved) + len(twice)} wrong of {len(reminders)} "
            f"({len(ledger.confirmed)} confirmed, {len(ids)} saved)",
            not unsaved and not twice,
        ),
        Row(
            "reminders confirmed twice",
            "0",
            str(len(confirmed_twice)),
            not confirmed_twice,
        ),
        Row(
            "saved reminders fired other than once",
            "0",
            f"{len(wrong_fire)} {wrong_fire[:5]}" if wrong_fire else "0",
            not wrong_fire,
        ),
        Row(
            "reminders asked outside a fault window, not saved",
            "0",
            f"{len(lost)} {lost[:5]}" if lost else "0",
            not lost,
        ),
    ]


async def _cases(db: asyncpg.Connection, ledger: Ledger) -> list[Row]:
    warns = [a for a in ledger.actions if a.kind == "warn" and not a.error]
    cases: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for r in await db.fetch(
        "SELECT guild_id, number, reason FROM mod_cases WHERE reason LIKE 'soak-w%'"
    ):
        cases[r["reason"]].append((r["guild_id"], r["number"]))
    wrong = [
        a.token
        for a in warns
        if len(cases[a.token]) > 1 or (a.case and cases[a.token] != [(a.guild, a.case)])
    ]
    acked = sum(1 for a in warns if a.case)
    return [
        Row(
            "warnings: acknowledged cases in PostgreSQL once, none twice",
            "0 wrong",
            f"{len(wrong)} wrong of {len(warns)} ({acked} acknowledged)",
            not wrong,
        )
    ]


async def _points(db: asyncpg.Connection, ledger: Ledger, faults: list[Fault]) -> list[Row]:
    """A give's answer names its amount (unique in the run) and member: that ledger line is
    in PostgreSQL once; unanswered ones at most once; every balance is its entries' sum."""
    gives = [a for a in ledger.actions if a.kind == "give" and not a.error]
    lines: dict[tuple[int, str, int], int] = defaultdict(int)
    for r in await db.fetch(
        "SELECT e.guild_id, e.account, e.amount FROM points_entries e"
        " JOIN points_tx t ON t.id = e.tx_id WHERE t.kind LIKE '%give%' AND e.amount > 0"
    ):
        lines[(r["guild_id"], r["account"], r["amount"])] += 1
    wrong, acked, twice = [], 0, []
    for a in gives:
        found = lines[(a.guild, f"u:{a.target}", int(a.due))]
        answers = len(ledger.answers(a.token))
        acked += answers > 0
        if found > 1 or (answers and found != 1):
            wrong.append(a.token)
        if answers > 1:
            twice.append(a.token)
        if not answers and not in_window(a.sent, faults):
            wrong.append(f"unanswered: {a.token}")
    off = await db.fetch(
        """SELECT a.guild_id, a.account FROM points_accounts a
           LEFT JOIN (SELECT guild_id, account, sum(amount) AS sum FROM points_entries
                      GROUP BY 1, 2) e USING (guild_id, account)
           WHERE a.balance <> coalesce(e.sum, 0)"""
    )
    return [
        Row(
            "points given: answered ones in PostgreSQL once, none twice",
            "0 wrong",
            f"{len(wrong)} wrong of {len(gives)} ({acked} answered)",
            not wrong,
        ),
        Row("points gives answered twice", "0", str(len(twice)), not twice),
        Row("points balances not the sum of their ledger lines", "0", str(len(off)), not off),
    ]


def readiness(faults: list[Fault]) -> list[Row]:
    times = [f.ready_after for f in faults]
    late = [f.kind for f in faults if f.ready_after is None or f.ready_after > READY_WITHIN]
    worst = max((t for t in times if t is not None), default=0.0)
    return [
        Row(
            "every shard READY again after each fault",
            f"<= {READY_WITHIN:.0f} s",
            f"worst {worst:.1f} s over {len(faults)} faults" + (f", late: {late}" if late else ""),
            not late,
        ),
        _stalled_acks(faults),
    ]


def _stalled_acks(faults: list[Fault]) -> Row:
    """A shard whose heartbeat went un-ACKed closed that zombied connection and RESUMEd
    (bot/dpy/zombie.py); before it, the shard stayed READY on it and this was not checked."""
    stalls = [f for f in faults if f.kind == "gateway_stall_acks"]
    failed = [f.detail for f in stalls if not f.resumed]
    return Row(
        "stalled heartbeat ACKs: the shard reconnected and RESUMEd, no IDENTIFY",
        "every one",
        f"{len(stalls) - len(failed)} of {len(stalls)}" + (f", not: {failed}" if failed else ""),
        not failed,
    )


def rest(stats: dict[str, Any]) -> list[Row]:
    most = int(stats.get("max_requests_in_1s") or 0)
    return [
        Row("REST requests in any 1 s", f"<= {REST_MAX}", str(most), most <= REST_MAX),
        Row(
            "invalid-request ban",
            "none",
            f"banned={bool(stats.get('banned'))}, {stats.get('invalid_requests')} invalid",
            not stats.get("banned"),
        ),
    ]


def memory(samples: dict[int, list[tuple[float, int]]]) -> list[Row]:
    worst, held = 0, 0
    for series in samples.values():
        if not series or series[-1][0] - series[0][0] < WARM_UP + 30:
            continue
        held += 1
        base = next(rss for at, rss in series if at - series[0][0] >= WARM_UP)
        worst = max(worst, max(rss for _, rss in series) - base)
    return [
        Row(
            f"worker RSS growth after {WARM_UP:.0f} s of warm-up",
            f"<= {RSS_GROWTH / 2**20:.0f} MiB",
            f"{worst / 2**20:.1f} MiB (worst of {held} workers that lived long enough)",
            worst <= RSS_GROWTH,
        )
    ]


def errors(lines: list[LogLine], faults: list[Fault]) -> tuple[list[Row], list[str]]:
    found: list[LogLine] = []
    for line in lines:
        try:
            entry = orjson.loads(line.text)
        except orjson.JSONDecodeError:
            if "Traceback" in line.text:
                found.append(line)
            continue
        if isinstance(entry, dict) and str(entry.get("level", "")).upper() in (
            "ERROR",
            "CRITICAL",
        ):
            found.append(line)
    unexplained = [ln.text for ln in found if not in_window(ln.at, faults)]
    return [
        Row(
            "ERROR log lines not explained by a fault",
            "0",
            f"{len(unexplained)} ({len(found)} in all)",
            not unexplained,
        )
    ], unexplained


def table(rows: list[Row]) -> str:
    out = ["| invariant | bound | measured | |", "|---|---|---|---|"]
    out += [f"| {r.what} | {r.bound} | {r.measured} | {'ok' if r.ok else 'FAIL'} |" for r in rows]
    return "\n".join(out)
