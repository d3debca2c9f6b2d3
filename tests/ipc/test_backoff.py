"""ipc/backoff.py: the one retry delay of every loop (ipc's subscriber and the bot's loops)."""

from __future__ import annotations

from ipc.backoff import Backoff


def test_delays_double_up_to_the_cap_within_their_upper_half() -> None:
    backoff = Backoff(first=1.0, cap=5.0)
    ceilings = [1.0, 2.0, 4.0, 5.0, 5.0]
    for ceiling in ceilings:
        assert ceiling / 2 <= backoff.next() <= ceiling
    backoff.reset()
    assert 0.5 <= backoff.next() <= 1.0


def test_there_is_one_backoff_class() -> None:
    from bot import outages
    from ipc import subscriber

    assert not hasattr(outages, "Backoff")  # one class: the loops import ipc.backoff
    assert subscriber.Backoff is Backoff
