"""Prometheus metrics of the launcher, and the merged /metrics of the whole pod.

`enable_multiprocess()` must run before prometheus_client is imported anywhere in the launcher
(the CLI calls it first thing in `run`): it points PROMETHEUS_MULTIPROC_DIR at a fresh
directory, which the worker processes inherit.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


def enable_multiprocess() -> Path:
    directory = Path(tempfile.mkdtemp(prefix="guildhouse-metrics-"))
    os.environ[ENV] = str(directory)
    return directory


def disable_multiprocess(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def render() -> tuple[bytes, str]:
    """Every process's samples, merged: (body, content type)."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST


def mark_dead(pid: int) -> None:
    from prometheus_client import multiprocess

    if os.environ.get(ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
