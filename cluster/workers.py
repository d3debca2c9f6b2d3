"""Worker processes: one per cluster, each running the bot over its shard range.

Workers are started with the `spawn` method (a fresh interpreter: no inherited event loop,
sockets or locks) through the one entry point in bot/, `bot.entry.run_worker`. The supervisor
restarts a worker that exits, with exponential backoff and jitter; one that keeps failing
within a window is marked failed and reported loudly, and the others run on untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.process
import os
import random
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from multiprocessing.sharedctypes import Synchronized, SynchronizedArray

    from bot.entry import ShardState, WorkerConfig

from prometheus_client import Counter, Gauge

from cluster.lifecycle import die_with_parent
from cluster.metrics import mark_dead

log = logging.getLogger(__name__)

WORKER_RESTARTS = Counter(
    "guildhouse_worker_restarts_total", "Worker processes restarted by the launcher.", ["cluster"]
)
WORKER_UP = Gauge(
    "guildhouse_worker_up",
    "1 while the worker process is running, 0 while it is down or failed.",
    ["cluster"],
    multiprocess_mode="livemostrecent",
)

_SPAWN = multiprocessing.get_context("spawn")


class SharedReport:
    """The worker's side writes, the launcher's side reads: plain shared memory, no locks.

    Each value has one writer (the worker's event loop), and a torn read of a float only
    delays a decision by a second; nothing here needs Redis, so a Redis outage can't make the
    launcher kill healthy workers.
    """

    FIELDS = 3  # per shard: state, latency (s, -1 unknown), time of the last report

    def __init__(self, shard_ids: tuple[int, ...]) -> None:
        self.shard_ids = shard_ids
        self.index = {sid: i for i, sid in enumerate(shard_ids)}
        self.beat: Synchronized[float] = _SPAWN.Value("d", 0.0, lock=False)
        self.shards: SynchronizedArray[float] = _SPAWN.Array(
            "d", len(shard_ids) * self.FIELDS, lock=False
        )

    # -- worker side (bot.shards.Reporter) --
    def heartbeat(self) -> None:
        self.beat.value = time.time()

    def shard(self, shard_id: int, state: ShardState, latency: float | None) -> None:
        base = self.index[shard_id] * self.FIELDS
        self.shards[base] = float(state)
        self.shards[base + 1] = -1.0 if latency is None else latency
        self.shards[base + 2] = time.time()

    # -- launcher side --
    def last_beat(self) -> float:
        return float(self.beat.value)

    def shard_states(self) -> dict[int, tuple[int, float | None]]:
        out: dict[int, tuple[int, float | None]] = {}
        for sid, i in self.index.items():
            base = i * self.FIELDS
            latency = self.shards[base + 1]
            out[sid] = (int(self.shards[base]), None if latency < 0 else latency)
        return out


def _stop_before_start(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _worker_main(
    config: WorkerConfig,
    log_level: str,
    log_format: str,
    report: SharedReport,
    launcher_pid: int,
) -> None:
    """Body of a worker process."""
    # The launcher decides when workers stop (it sends SIGTERM, after which they drain): a
    # Ctrl-C in the terminal goes to the terminal's foreground process group, so a worker
    # leaves it, and ignores SIGINT for the moment before that.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A stop that comes while the worker is still importing (before the bot installs its own
    # handlers) has nothing to drain: exit 0 at once, as a requested stop should.
    signal.signal(signal.SIGTERM, _stop_before_start)
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    # A worker never outlives its launcher (cluster/lifecycle.py): an orphan would keep its
    # gateway sessions and answer every command a second time after a relaunch.
    die_with_parent(launcher_pid)
    from cluster import logs

    logs.setup(log_level, log_format, cluster=config.cluster_id)
    from bot.entry import run_worker

    try:
        run_worker(config, report)
    except Exception:
        # Logged as JSON like every other line, not printed by multiprocessing to stderr.
        logging.getLogger("guildhouse.worker").critical(
            "cluster %d stopped on an error", config.cluster_id, exc_info=True
        )
        raise SystemExit(1) from None


@dataclass(frozen=True)
class RestartPolicy:
    base_delay: float = 1.0
    max_delay: float = 60.0
    max_failures: int = 5  # within `window` seconds, then the worker is marked failed
    window: float = 300.0
    # A worker whose event loop has not beaten for this long is killed and restarted.
    hang_timeout: float = 60.0
    # Time a new worker has to import, connect and start beating.
    start_grace: float = 60.0

    def delay(self, attempt: int) -> float:
        """Exponential backoff with full jitter, so restarts of many workers spread out."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** max(0, attempt - 1)))
        return random.uniform(self.base_delay / 2, max(self.base_delay / 2, ceiling))


@dataclass
class Worker:
    config: WorkerConfig
    process: multiprocessing.process.BaseProcess | None = None
    restarts: int = 0
    failures: deque[float] = field(default_factory=deque)
    failed: bool = False
    started_at: float = 0.0
    report: SharedReport | None = None
    restarting: bool = False

    def silent_for(self) -> float:
        """Seconds since the worker's event loop last beat (or since start, if never)."""
        last = self.report.last_beat() if self.report is not None else 0.0
        if last == 0.0:
            return time.monotonic() - self.started_at
        return max(0.0, time.time() - last)

    @property
    def cluster_id(self) -> int:
        return self.config.cluster_id

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()


class Supervisor:
    def __init__(
        self,
        configs: list[WorkerConfig],
        *,
        log_level: str,
        log_format: str,
        policy: RestartPolicy | None = None,
        grace: float = 25.0,
        on_restart: Callable[[int], Awaitable[None]] | None = None,
        on_spawn: Callable[[int, int | None], None] | None = None,
    ) -> None:
        self.workers = {c.cluster_id: Worker(c) for c in configs}
        self.log_level = log_level
        self.log_format = log_format
        self.policy = policy or RestartPolicy()
        self.grace = grace
        self.on_restart = on_restart
        self.on_spawn = on_spawn
        self._stopping = False
        self._monitor: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def _spawn(self, worker: Worker) -> None:
        worker.report = SharedReport(worker.config.shard_ids)
        proc = _SPAWN.Process(
            target=_worker_main,
            args=(worker.config, self.log_level, self.log_format, worker.report, os.getpid()),
            name=f"guildhouse-cluster-{worker.cluster_id}",
            daemon=False,
        )
        proc.start()
        worker.process = proc
        if self.on_spawn is not None:
            self.on_spawn(worker.cluster_id, proc.pid)
        worker.started_at = time.monotonic()
        WORKER_UP.labels(str(worker.cluster_id)).set(1)
        log.info(
            "cluster %d started (pid %s, shards %s)",
            worker.cluster_id,
            proc.pid,
            list(worker.config.shard_ids),
            extra={"cluster": worker.cluster_id},
        )

    async def start(self) -> None:
        for worker in self.workers.values():
            self._spawn(worker)
        self._monitor = asyncio.create_task(self._watch(), name="supervisor")

    async def _watch(self) -> None:
        while not self._stopping:
            await asyncio.sleep(0.5)
            for worker in self.workers.values():
                if worker.failed or worker.restarting or self._stopping:
                    continue
                if worker.alive():
                    limit = self.policy.hang_timeout
                    if worker.report is not None and worker.report.last_beat() == 0.0:
                        limit = max(limit, self.policy.start_grace)
                    silent = worker.silent_for()
                    if silent <= limit:
                        continue
                    log.error(
                        "cluster %d has not heartbeated for %.0fs (event loop blocked?); "
                        "killing it",
                        worker.cluster_id,
                        silent,
                        extra={"cluster": worker.cluster_id},
                    )
                    self.kill(worker.cluster_id)
                    if worker.process is not None:
                        await asyncio.to_thread(worker.process.join, 10)
                    why = f"hung for {silent:.0f}s"
                else:
                    code = worker.process.exitcode if worker.process else None
                    why = f"exited with code {code}"
                # Restarts wait out their backoff in their own task: one worker's backoff
                # must not delay noticing another's failure.
                worker.restarting = True
                task = asyncio.create_task(self._restart(worker, why), name="restart")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _restart(self, worker: Worker, why: str) -> None:
        try:
            await self._restart_after_backoff(worker, why)
        finally:
            worker.restarting = False

    async def _restart_after_backoff(self, worker: Worker, why: str) -> None:
        WORKER_UP.labels(str(worker.cluster_id)).set(0)
        if worker.pid is not None:
            mark_dead(worker.pid)
        now = time.monotonic()
        worker.failures.append(now)
        while worker.failures and now - worker.failures[0] > self.policy.window:
            worker.failures.popleft()
        if len(worker.failures) >= self.policy.max_failures:
            worker.failed = True
            log.critical(
                "cluster %d FAILED: %s; %d failures within %.0fs, not restarting it again. "
                "Its shards %s are offline until the launcher is restarted.",
                worker.cluster_id,
                why,
                len(worker.failures),
                self.policy.window,
                list(worker.config.shard_ids),
                extra={"cluster": worker.cluster_id},
            )
            return
        delay = self.policy.delay(len(worker.failures))
        log.warning(
            "cluster %d %s; restarting in %.1fs",
            worker.cluster_id,
            why,
            delay,
            extra={"cluster": worker.cluster_id},
        )
        await asyncio.sleep(delay)
        if self._stopping:
            return
        worker.restarts += 1
        WORKER_RESTARTS.labels(str(worker.cluster_id)).inc()
        if self.on_restart is not None:
            await self.on_restart(worker.cluster_id)
        self._spawn(worker)

    def worker_ready(self, worker: Worker) -> bool:
        from bot.entry import ShardState

        if not worker.alive() or worker.report is None:
            return False
        return all(s == ShardState.READY for s, _ in worker.report.shard_states().values())

    async def restart_one(self, cluster_id: int, *, ready_timeout: float = 120.0) -> bool:
        """Restart one worker gracefully and wait until its shards are READY again."""
        worker = self.workers[cluster_id]
        worker.restarting = True  # keep the watcher from restarting it a second time
        try:
            if worker.alive() and worker.pid is not None:
                os.kill(worker.pid, signal.SIGTERM)
                assert worker.process is not None
                await asyncio.to_thread(worker.process.join, self.grace)
                if worker.alive():
                    os.kill(worker.pid, signal.SIGKILL)
                    await asyncio.to_thread(worker.process.join, 5)
                mark_dead(worker.pid)
            worker.restarts += 1
            WORKER_RESTARTS.labels(str(cluster_id)).inc()
            self._spawn(worker)
            deadline = time.monotonic() + ready_timeout
            while not self.worker_ready(worker):
                if time.monotonic() > deadline:
                    return False
                await asyncio.sleep(0.1)
            return True
        finally:
            worker.restarting = False

    def ready(self) -> bool:
        """Every worker up and every one of its shards READY."""
        return all(self.worker_ready(w) for w in self.workers.values())

    def kill(self, cluster_id: int, sig: int = signal.SIGKILL) -> None:
        """Signal one worker (tests, `restart`); the supervisor restarts it."""
        pid = self.workers[cluster_id].pid
        if pid is not None:
            os.kill(pid, sig)

    async def stop(self) -> None:
        """SIGTERM every worker, wait up to the grace period, then SIGKILL what is left."""
        self._stopping = True
        for task in [self._monitor, *self._tasks]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        running = [w for w in self.workers.values() if w.alive()]
        for worker in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid or 0, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        # A child's exit is no asyncio event; polling is the simple, portable way.
        while any(w.alive() for w in running) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        for worker in running:
            if worker.alive():
                log.warning(
                    "cluster %d did not stop within %.0fs; killing it",
                    worker.cluster_id,
                    self.grace,
                )
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid or 0, signal.SIGKILL)
            if worker.process is not None:
                worker.process.join(5)
