"""`python -m bench <name> [options]` runs one benchmark; `python -m bench all` runs each in turn,
except the long runs (the soak and the scale run), which are run on their own.

Every benchmark prints one JSON line: its figures, the baseline measured in the same run, the
ratios and the parameters. Run from the repository root after the README's install.
"""

from __future__ import annotations

import sys

from bench.interrupt import call, interrupted

BENCHMARKS = {
    "ingest": "MESSAGE_CREATE with XP: worker CPU per 1,000 events and highest rate, vs discord.py",
    "rpc_gather": "IPC gather p50/p99 over 4 clusters against a raw Redis PING",
    "startup": "N shards to all READY against ceil(N / max_concurrency) x identify interval",
    "rest_overhead": "REST limiter: cost per call and the rate at the limit, against discord.py's",
    "memory": "RSS per 1,000 guilds at steady state, against a discord.py bot with its defaults",
    "latency": "prefix and slash command p50/p99/p99.9 at 25/50/90 % load, against discord.py",
    "leaderboard": "awards/s, rank p99 on 1,000,000 members, flush rows/s, against plain ways",
    "bets": "bets/s and p99 through the points ledger, against a naive balance UPDATE",
    "soak": "mixed load on 2 clusters under seeded faults; invariant table, exit 1 on a failure",
    "scale": "20,000 servers, 32 shards, 8 workers: READY, RSS/1,000 servers, gather, REST",
    "chart_memory": "a worker's RSS before and after its first statistics chart (Pillow lazy)",
}
# Tens of minutes each, and not ratios against a baseline: `all` leaves them out.
LONG = ("soak", "scale")


def usage() -> str:
    lines = ["usage: python -m bench <name> [options] | all", "", "benchmarks:"]
    lines += [
        f"  {name:<14} {what}{' (not in all)' if name in LONG else ''}"
        for name, what in BENCHMARKS.items()
    ]
    lines += ["", "`python -m bench <name> --help` lists a benchmark's options."]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name == "all":
        failed = []
        for each in (name for name in BENCHMARKS if name not in LONG):
            print(f"# {each}", file=sys.stderr, flush=True)
            code = call([sys.executable, "-m", f"bench.{each}", *rest])
            if interrupted(code):  # stopped (SIGTERM, Ctrl-C): not the next one either
                print(f"stopped during {each}", file=sys.stderr)
                return code
            if code:
                failed.append(each)
        if failed:
            print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1 if failed else 0
    if name not in BENCHMARKS:
        print(f"unknown benchmark {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    return call([sys.executable, "-m", f"bench.{name}", *rest])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
