"""The 3-minute soak (`python -m bench soak --minutes 3`), as CI runs it: the bot under mixed
load while workers, the launcher, Redis and PostgreSQL are killed, and every invariant of the
table holds.

The soak brings its own PostgreSQL and Redis rather than the session's: it kills and restarts
them, and wipes Redis. Its seed is fixed here so that the first faults of the schedule are the
process kills (a worker, PostgreSQL, the launcher, Redis, the wipe); a failure names the seed
in the output, so it can be replayed with `python -m bench soak --minutes 3 --seed 358`.
"""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(900)]

SEED = 358  # schedule: worker_kill, gateway_invalidate, postgres_restart, launcher_kill, ...
ROWS = (
    "rolls (prefix, slash, rerolls) answered twice",
    "warnings answered twice",
    "commands sent outside a fault window, unanswered",
    "XP awards of chat outside fault windows in PostgreSQL",
    "members whose XP total is not the sum of their awards",
    "reminders: confirmed ones in PostgreSQL, none saved twice",
    "reminders confirmed twice",
    "saved reminders fired other than once",
    "reminders asked outside a fault window, not saved",
    "warnings: acknowledged cases in PostgreSQL once, none twice",
    "points given: answered ones in PostgreSQL once, none twice",
    "points gives answered twice",
    "points balances not the sum of their ledger lines",
    "every shard READY again after each fault",
    "REST requests in any 1 s",
    "invalid-request ban",
    "worker RSS growth after 60 s of warm-up",
    "ERROR log lines not explained by a fault",
)


def test_three_minute_soak_keeps_every_invariant() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench", "soak", "--minutes", "3", "--seed", str(SEED)],
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    out = run.stdout
    assert out.startswith(f"soak: seed {SEED},"), out[:500] + run.stderr[-3000:]
    table = {
        cells[1].strip(): cells[-2].strip()
        for line in out.splitlines()
        if line.startswith("| ") and (cells := line.split("|"))
    }
    for row in ROWS:
        assert table.get(row) == "ok", f"{row}: {table.get(row)}\n{out}\n{run.stderr[-3000:]}"
    summary = orjson.loads(out.strip().splitlines()[-1])
    assert summary["ok"] is True and run.returncode == 0, out
    # The faults happened: the process kills came first in this seed's schedule.
    assert summary["faults"] >= 4, summary
    assert summary["fault_kinds"].get("worker_kill") == 1, summary
    # The load was mixed and large enough to mean something.
    assert all(summary["sent"].get(k, 0) >= 10 for k in ("chat", "roll", "slash", "remind", "warn"))
