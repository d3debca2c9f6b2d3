"""Moderation's pure rules: durations, reasons, hierarchy, thresholds, purge plans."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.cogs.moderation import rules
from bot.cogs.moderation.rules import Candidate, PurgeFilter, Rank, RuleError, Threshold


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("10m", 600),
        ("1h30m", 5400),
        ("1h 30m", 5400),
        ("3d", 259200),
        ("2 weeks", 1209600),
        ("1d, 12h", 129600),
        ("90 minutes", 5400),
    ],
)
def test_durations(text: str, seconds: int) -> None:
    assert rules.parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("soon", "can't be read as a length of time"),
        ("3", "can't be read as a length of time"),
        ("3x", "`x` is not a unit"),
        ("0m", "longer than zero"),
        ("1h then", "can't be read as a length of time"),
    ],
)
def test_bad_durations_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(RuleError, match=message):
        rules.parse_duration(text)


def test_format_duration_and_bounds() -> None:
    assert rules.format_duration(timedelta(days=1, hours=2, minutes=3)) == "1d 2h"
    assert rules.format_duration(timedelta(seconds=45)) == "45s"
    assert rules.format_duration(rules.MAX_TIMEOUT) == "4w"
    assert rules.bounded(timedelta(days=28), rules.MAX_TIMEOUT, what="timeout")
    with pytest.raises(RuleError, match="timeout can be at most 4w"):
        rules.bounded(timedelta(days=28, seconds=1), rules.MAX_TIMEOUT, what="timeout")


def test_reasons_and_ban_days() -> None:
    assert rules.check_reason("  spam   in  chat ") == "spam in chat"
    assert rules.check_reason("   ") is None
    with pytest.raises(RuleError, match="at most 400"):
        rules.check_reason("x" * 401)
    assert rules.ban_days(None) == 0 and rules.ban_days("7") == 7
    for bad in ("8", "-1", "two"):
        with pytest.raises(RuleError, match="0 to 7"):
            rules.ban_days(bad)


MOD = Rank(1, top=5)
BOT = Rank(2, top=10)


@pytest.mark.parametrize(
    ("actor", "target", "expected"),
    [
        (MOD, Rank(3, top=1), None),
        (MOD, Rank(1, top=5), "You can't kick yourself."),
        (MOD, Rank(2, top=10), "I can't kick myself."),
        (MOD, Rank(3, top=0, owner=True), "The server owner can't be kicked"),
        (MOD, Rank(3, top=5), "Your highest role must be above"),
        (MOD, Rank(3, top=7), "Your highest role must be above"),
        (Rank(9, top=0, owner=True), Rank(3, top=7), None),  # the owner outranks everyone
        (Rank(9, top=20), Rank(3, top=10), "My highest role must be above"),
        (Rank(9, top=0, owner=True), Rank(3, top=12), "My highest role must be above"),
    ],
)
def test_hierarchy(actor: Rank, target: Rank, expected: str | None) -> None:
    why = rules.refusal("kick", actor, BOT, target)
    if expected is None:
        assert why is None
    else:
        assert why is not None and why.startswith(expected)


def test_role_hierarchy() -> None:
    assert rules.role_refusal("give", MOD, BOT, 3, managed=False) is None
    assert "managed by an integration" in str(rules.role_refusal("give", MOD, BOT, 3, True))
    assert "@everyone" in str(rules.role_refusal("give", MOD, BOT, 0, False))
    assert "below your highest role" in str(rules.role_refusal("give", MOD, BOT, 5, False))
    owner = Rank(9, top=0, owner=True)
    assert "below my highest role" in str(rules.role_refusal("give", owner, BOT, 10, False))


def test_thresholds() -> None:
    t = rules.parse_threshold(3, "timeout", "1h")
    assert t == Threshold(3, "timeout", timedelta(hours=1))
    assert t.describe() == "3 warnings → timeout 1h"
    assert Threshold.from_json(t.as_json()) == t
    assert rules.parse_threshold(5, "KICK", None) == Threshold(5, "kick")
    assert rules.parse_threshold(7, "ban", "3d").duration == timedelta(days=3)
    with pytest.raises(RuleError, match="needs a duration"):
        rules.parse_threshold(3, "timeout", None)
    with pytest.raises(RuleError, match="takes no duration"):
        rules.parse_threshold(3, "kick", "1h")
    with pytest.raises(RuleError, match="1 to 100"):
        rules.parse_threshold(0, "kick", None)
    with pytest.raises(RuleError, match="timeout, kick, ban"):
        rules.parse_threshold(3, "mute", None)
    with pytest.raises(RuleError, match="at most 4w"):
        rules.parse_threshold(3, "timeout", "30d")
    listed = rules.with_threshold([], t, 3)
    listed = rules.with_threshold(listed, Threshold(7, "ban"), 7)
    listed = rules.with_threshold(listed, Threshold(5, "kick"), 5)
    assert [x.count for x in listed] == [3, 5, 7]
    assert rules.with_threshold(listed, Threshold(3, "kick"), 3)[0].action == "kick"
    assert [x.count for x in rules.with_threshold(listed, None, 5)] == [3, 7]
    many = [Threshold(i, "kick") for i in range(1, 11)]
    with pytest.raises(RuleError, match="At most 10"):
        rules.with_threshold(many, Threshold(11, "kick"), 11)


def test_a_threshold_applies_when_its_count_is_reached_not_after() -> None:
    listed = [Threshold(3, "timeout", timedelta(hours=1)), Threshold(5, "kick")]
    assert [rules.reached(listed, n) for n in (1, 2)] == [None, None]
    assert rules.reached(listed, 3) == listed[0]
    assert rules.reached(listed, 4) is None
    assert rules.reached(listed, 5) == listed[1]
    assert rules.reached(listed, 6) is None


NOW = datetime(2026, 12, 4, tzinfo=UTC)


def msg(
    i: int, *, age: timedelta, author: int = 1, bot: bool = False, text: str = "hi"
) -> Candidate:
    return Candidate(i, author, bot, text, NOW - age)


def test_purge_skips_and_counts_messages_older_than_14_days() -> None:
    messages = [msg(i, age=timedelta(days=i)) for i in range(20)]  # newest first
    plan = rules.plan_purge(messages, PurgeFilter(), 20, NOW)
    assert plan.batches == [list(range(14))]
    assert plan.too_old == 6 and plan.single == []


def test_purge_filters_limit_and_batches() -> None:
    messages = [
        msg(i, age=timedelta(minutes=i), author=i % 3, bot=i % 2 == 0, text=f"buy now {i}")
        for i in range(400)
    ]
    plan = rules.plan_purge(messages, PurgeFilter(), 250, NOW)
    assert [len(b) for b in plan.batches] == [100, 100, 50]
    mine = rules.plan_purge(messages, PurgeFilter(user_id=1), 1000, NOW)
    assert all(i % 3 == 1 for b in mine.batches for i in b)
    bots = rules.plan_purge(messages, PurgeFilter(bots=True, contains="NOW 1"), 1000, NOW)
    ids = [i for b in bots.batches for i in b] + bots.single
    assert ids == [i for i in range(400) if i % 2 == 0 and str(i).startswith("1")]
    # One matching message can't be bulk deleted (2-100 ids): it is deleted on its own.
    one = rules.plan_purge(messages, PurgeFilter(), 101, NOW)
    assert [len(b) for b in one.batches] == [100] and one.single == [100]


def test_purge_leaves_pinned_messages() -> None:
    messages = [msg(1, age=timedelta(minutes=1)), Candidate(2, 1, False, "x", NOW, pinned=True)]
    plan = rules.plan_purge(messages, PurgeFilter(), 10, NOW)
    assert plan.single == [1] and plan.batches == []
