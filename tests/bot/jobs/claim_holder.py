"""A process that claims jobs and holds them: the runner under test in another process, to be
killed with SIGKILL while a handler runs (tests/bot/jobs/test_job_runner.py).

    python claim_holder.py DSN WORKER KIND LEASE

Runs a JobRunner for KIND whose handler prints `running <key> <attempt>` and then waits for
ever (it is the claim that matters). Prints `ready` once the runner has started.
"""

from __future__ import annotations

import asyncio
import sys

from bot import jobs
from bot.db.pool import create_pool


async def main(dsn: str, worker: str, kind: str, lease: float) -> None:
    pool = await create_pool(dsn, min_size=1, max_size=3)

    async def hold(run: jobs.Run) -> None:
        print(f"running {run.job.key} {run.job.attempt}", flush=True)
        await asyncio.Event().wait()

    runner = jobs.JobRunner(pool, worker=worker, shard_count=1, shard_ids=[0], max_sleep=0.2)
    runner.register(jobs.Kind(kind, hold, lease=lease))
    await runner.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
