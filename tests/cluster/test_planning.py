from __future__ import annotations

import pytest

from cluster.planning import GatewayInfo, PlanningError, check_session_starts, split_shards


@pytest.mark.parametrize(("shards", "clusters"), [(1, 1), (4, 2), (10, 3), (16, 16), (97, 8)])
def test_split_is_contiguous_balanced_and_complete(shards: int, clusters: int) -> None:
    ranges = split_shards(shards, clusters)
    assert len(ranges) == clusters
    assert [s for r in ranges for s in r] == list(range(shards))
    sizes = [len(r) for r in ranges]
    assert max(sizes) - min(sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)


def test_more_clusters_than_shards_is_refused() -> None:
    with pytest.raises(PlanningError, match="at most SHARD_COUNT"):
        split_shards(2, 3)


def _info(remaining: int) -> GatewayInfo:
    return GatewayInfo.from_json(
        {
            "url": "wss://x",
            "shards": 4,
            "session_start_limit": {
                "total": 1000,
                "remaining": remaining,
                "reset_after": 7_200_000,
                "max_concurrency": 16,
            },
        }
    )


def test_session_start_limit() -> None:
    info = _info(3)
    assert info.max_concurrency == 16
    with pytest.raises(PlanningError, match="only 3 session starts left"):
        check_session_starts(info, 4)
    check_session_starts(_info(4), 4)
