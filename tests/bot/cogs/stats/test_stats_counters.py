"""The rename pacer and counter templates (pure): a burst is one rename, never more than 2 a
window, the last value wins, an earlier process's renames count."""

from __future__ import annotations

import itertools

import pytest

from bot.cogs.stats.counters import (
    Counter,
    RenamePacer,
    TemplateError,
    check_template,
    counter_of,
    render,
)

W = 600.0


def drive(
    pacer: RenamePacer, events: list[tuple[float, str]], until: float
) -> list[tuple[float, str]]:
    """Feed names at their times and make every rename as soon as the pacer allows (stepping
    the clock by 0.5 s): the renames made, (time, name)."""
    made: list[tuple[float, str]] = []
    pending = sorted(events)
    t = 0.0
    while t <= until:
        while pending and pending[0][0] <= t:
            pacer.want(1, pending.pop(0)[1], t)
        for r in pacer.due(t):
            pacer.renamed(r.channel_id, r.name, t)
            made.append((t, r.name))
        t += 0.5
    return made


def at_most(limit: int, window: float, times: list[float]) -> bool:
    return all(sum(1 for u in times if t <= u < t + window) <= limit for t in times)


def test_a_raid_of_500_joins_in_a_minute_is_two_renames_and_ends_on_the_final_count() -> None:
    pacer = RenamePacer(window=W, settle=10)
    pacer.track(1, "Members: 100")
    joins = [(i * 60 / 500, f"Members: {101 + i}") for i in range(500)]
    made = drive(pacer, joins, until=1200)
    assert made[-1][1] == "Members: 600"
    assert len(made) == 2
    assert at_most(2, W, [t for t, _ in made])
    assert made[0][0] >= 10  # the burst settled first


def test_the_same_name_is_no_rename_and_a_change_back_cancels_it() -> None:
    pacer = RenamePacer(window=W, settle=10)
    pacer.track(1, "Members: 5")
    pacer.want(1, "Members: 5", 0)
    assert pacer.next_at() is None
    pacer.want(1, "Members: 6", 1)
    pacer.want(1, "Members: 5", 2)  # one joined and left
    assert pacer.due(100) == []


def test_steady_changes_keep_to_the_limit_over_hours() -> None:
    pacer = RenamePacer(window=W, settle=5)
    pacer.track(1, "n0")
    events = [(float(t), f"n{t}") for t in range(0, 7200, 7)]
    made = drive(pacer, events, until=8000)
    times = [t for t, _ in made]
    assert at_most(2, W, times)
    assert all(b - a >= W / 2 for a, b in itertools.pairwise(times))
    assert made[-1][1] == events[-1][1]


def test_renames_by_an_earlier_process_count() -> None:
    pacer = RenamePacer(window=W, settle=0)
    pacer.track(1, "a", renames=[-100.0, -50.0])
    pacer.want(1, "b", 0)
    ready = pacer.ready_at(1)
    assert ready is not None and ready >= -100 + W
    assert pacer.due(ready - 1) == []
    assert [r.name for r in pacer.due(ready)] == ["b"]


def test_a_refusal_waits_out_the_retry_after() -> None:
    pacer = RenamePacer(window=W, settle=0)
    pacer.track(1, "a")
    pacer.want(1, "b", 0)
    pacer.refused(1, retry_after=300, now=0)
    assert pacer.due(299) == []
    assert pacer.due(301 + pacer.margin)


def test_channels_are_paced_apart() -> None:
    pacer = RenamePacer(window=W, settle=1)
    pacer.track(1, "a")
    pacer.track(2, "x")
    pacer.want(1, "b", 0)
    pacer.want(2, "y", 0)
    assert {r.channel_id for r in pacer.due(1)} == {1, 2}
    pacer.forget(2)
    assert {r.channel_id for r in pacer.due(1)} == {1}


@pytest.mark.parametrize(
    ("template", "count", "name"),
    [
        ("Members: {count:,}", 1234, "Members: 1,234"),
        ("👥 {count}", 7, "👥 7"),
        ("{count:,} online", 0, "0 online"),
    ],
)
def test_templates_render(template: str, count: int, name: str) -> None:
    assert render(check_template(template), count) == name


@pytest.mark.parametrize(
    ("template", "says"),
    [
        ("Members", "{count}"),
        ("{members}", "{count}"),
        ("{count} {other}", "{other}"),
        ("{count", "brace"),
        ("{count:q}", "can't show a number"),
        ("x" * 101, "over 100"),
        ("{count:>200}", "over 100"),
        ("  ", "empty"),
    ],
)
def test_bad_templates_say_what_is_wrong(template: str, says: str) -> None:
    with pytest.raises(TemplateError, match=None) as err:
        check_template(template)
    assert says in str(err.value)


def test_counter_names() -> None:
    assert counter_of(" Members ") is Counter.MEMBERS
    with pytest.raises(TemplateError, match="members, online, bans"):
        counter_of("roles")
