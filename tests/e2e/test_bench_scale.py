"""`python -m bench scale` at a tiny size: the table's shape and the run's invariants (every
server counted once over the workers, every worker measured, no IDENTIFY too fast, the
figures the table shows are the JSON's), not its times, which depend on the machine."""

from __future__ import annotations

import math
import subprocess
import sys

import orjson
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(600)]

ARGS = {
    "--guilds": 300,
    "--large": 2,
    "--large-members": 3000,
    "--shards": 4,
    "--clusters": 2,
    "--max-concurrency": 2,
    "--interval": 0.5,
    "--settle": 0.5,
    "--rest-seconds": 2,
    "--rest-rate": 30,
    "--gather-rounds": 50,
    "--small": 40,
}
FIGURES = ("all READY", "RSS per 1,000 servers", "gather p99", "REST window")


def test_bench_scale_prints_its_table_and_figures() -> None:
    argv = [str(x) for kv in ARGS.items() for x in kv]
    run = subprocess.run(
        [sys.executable, "-m", "bench", "scale", *argv],
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.strip().splitlines()
    assert lines[0].startswith("scale: 300 servers (2 with 3000+ members), 4 shards, 2 workers")
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in lines
        if line.startswith("| ") and not line.startswith("| figure")
    ]
    assert [r[0] for r in rows] == list(FIGURES)
    result = orjson.loads(lines[-1])
    assert result["bench"] == "scale" and result["large_guilds"] == 2
    assert sum(result["worker_guilds"].values()) == 300
    assert sorted(result["worker_rss_mib"]) == ["0", "1"]
    assert all(mib > 0 for mib in result["worker_rss_mib"].values())
    assert result["floor_s"] == math.ceil(4 / 2) * 0.5
    assert result["ready_s"] > 0
    assert result["op9"] == 0  # the shared IDENTIFY queue kept every bucket's pace
    assert result["rest_requests"] > 0  # the load was answered through the REST window
    shown = {r[0]: r[3] for r in rows}
    assert shown["all READY"] == str(result["ready_over_floor"])
    assert shown["RSS per 1,000 servers"] == str(result["rss_ratio"])
    assert shown["gather p99"] == str(result["gather_p99_over_ping"])
    assert shown["REST window"] == str(result["rest_max"])
    for r in rows:
        assert r[5] in ("yes", "NO", "n/a"), r
