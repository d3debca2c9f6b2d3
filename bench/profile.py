"""Profile a Guildhouse worker under one benchmark's load with py-spy (`pip install py-spy`).

`chat` is the ingest benchmark's load (chat earning XP), `prefix` and `slash` the latency
benchmark's `ping`. The worker runs as in the benchmarks (every feature loaded); py-spy samples
it for `--seconds` while the load runs, and writes a flame graph (`--format flamegraph`, SVG),
a speedscope file, or collapsed stacks (`--format raw`), whose top frames it also prints: the
functions the worker spends its samples in, by their own time and with what they call.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import sys
from pathlib import Path

from bench import ingest, interrupt, latency
from bench.common import backing, guildhouse_worker, quiet_leveling
from sandbox import Sandbox, SandboxConfig


async def _load(kind: str, sb: Sandbox, pid: int, rate: float, seconds: float) -> None:
    if kind == "chat":
        target = ingest.Target(sb, pid, None, _never_counted)
        await ingest.offer(target, rate, seconds, drain=0.0)
    else:
        await latency.offer(sb, pid, kind, rate, seconds)


def _py_spy() -> str:
    """py-spy on PATH, else beside this Python (installed into the virtualenv, not activated)."""
    return (
        shutil.which("py-spy")
        or shutil.which("py-spy", path=str(Path(sys.executable).parent))
        or ""
    )


async def _never_counted() -> int:
    return 0


async def run(  # noqa: PLR0917 - the command line's options, in order
    kind: str, rate: float, seconds: float, out: Path, fmt: str, native: bool
) -> Path:
    config = SandboxConfig(guilds=60, members=20, max_concurrency=2, identify_interval=0.2)
    with backing() as urls:
        async with Sandbox(config) as sb:
            from bot.entry import apply_migrations

            await apply_migrations(urls["database_url"])
            await quiet_leveling(urls["database_url"], list(sb.world.guilds))
            async with guildhouse_worker(
                sb.token,
                sb.api_url,
                sb.gateway_url,
                urls,
                shards=2,
                name="prof",
                sync=kind == "slash",
                # As in the latency benchmark: commands pay for the throttle check, none is
                # refused (a refusal is another code path, an error message).
                settings=None if kind == "chat" else latency.UNREACHABLE_THROTTLES,
            ) as (pid, _):
                await _load(kind, sb, pid, rate, 2.0)  # warm caches first
                spy = subprocess.Popen(  # noqa: ASYNC220 - waited for below, off the loop
                    [
                        _py_spy(),
                        "record",
                        "--pid",
                        str(pid),
                        "--duration",
                        str(int(seconds)),
                        "--rate",
                        "250",
                        "--format",
                        fmt,
                        "--output",
                        str(out),
                        *(["--native"] if native else ["--nonblocking"]),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                try:
                    await _load(kind, sb, pid, rate, seconds)
                    _, err = await asyncio.to_thread(spy.communicate)
                finally:
                    if spy.poll() is None:  # stopped early (SIGTERM, an error)
                        spy.terminate()
                if spy.returncode:
                    raise SystemExit(f"py-spy failed: {err.decode().strip()[-500:]}")
    return out


def top(collapsed: Path, n: int = 25) -> list[tuple[str, float, float]]:
    """(frame, own share, inclusive share) of the `n` frames with the most own samples."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
    return [(f, c / total, inclusive[f] / total) for f, c in own.most_common(n)] if total else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("load", choices=("chat", "prefix", "slash"))
    parser.add_argument("--rate", type=float, default=None, help="per second (chat 1000, else 20)")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--format", default="raw", choices=("raw", "flamegraph", "speedscope"))
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--native", action="store_true", help="C frames too (slower to sample)")
    args = parser.parse_args()
    if not _py_spy():
        parser.error("py-spy is not installed: pip install py-spy")
    rate = args.rate or (1000.0 if args.load == "chat" else 20.0)
    if rate <= 0 or args.seconds < 1:
        parser.error("--rate must be positive and --seconds at least 1")
    suffix = {"raw": ".txt", "flamegraph": ".svg", "speedscope": ".json"}[args.format]
    out = args.output or Path(f"profile-{args.load}{suffix}")
    asyncio.run(run(args.load, rate, args.seconds, out, args.format, args.native))
    print(f"wrote {out}", file=sys.stderr)
    if args.format == "raw":
        for frame, own, incl in top(out):
            print(f"{own:6.1%} own {incl:6.1%} incl  {frame}")


if __name__ == "__main__":
    interrupt.main(main)
