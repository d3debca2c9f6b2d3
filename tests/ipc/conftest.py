"""Fixtures of the ipc tests."""

from __future__ import annotations

import pytest

from ipc.client import redis_outage


@pytest.fixture(autouse=True)
def redis_reachable() -> None:
    """Each test starts with the process's view of Redis reachable: an earlier test may have
    left an outage on it, and then a test's own outage would log no WARNING."""
    redis_outage.reachable()
