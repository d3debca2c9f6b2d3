"""Shared by the benchmarks: Redis/PostgreSQL URLs (embedded when not given) and percentiles."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cluster.embedded import services


@contextlib.contextmanager
def backing() -> Iterator[dict[str, str]]:
    with (
        tempfile.TemporaryDirectory(prefix="guildhouse-bench-") as tmp,
        services(
            Path(tmp),
            postgres=not os.environ.get("DATABASE_URL"),
            redis=not os.environ.get("REDIS_URL"),
        ) as found,
    ):
        yield {
            "database_url": os.environ.get("DATABASE_URL") or found["postgres"].url,
            "redis_url": os.environ.get("REDIS_URL") or found["redis"].url,
        }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
