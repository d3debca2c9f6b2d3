"""Automod's pure rules: what breaks which rule, and the settings' round trip."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.cogs.moderation.automod_rules import (
    Action,
    Automod,
    check_word,
    judge,
    mention_limit,
    parse_action,
)
from bot.cogs.moderation.rules import RuleError

ID = "123456789012345678"


def test_nothing_is_judged_with_rules_off() -> None:
    rules = Automod()
    assert not rules.active
    assert judge(f"<@{ID}> " * 20 + "discord.gg/abc badword", rules) is None


def test_mention_spam_counts_users_roles_everyone_and_here() -> None:
    rules = Automod(mention_limit=4, mentions=Action("timeout", timedelta(minutes=10)))
    assert judge(f"<@{ID}> <@!{ID}> <@&{ID}> hi", rules) is None
    breach = judge(f"<@{ID}> <@!{ID}> <@&{ID}> @everyone", rules)
    assert breach is not None and breach.rule == "mentions"
    assert breach.why == "4 mentions in one message" and breach.action.name == "timeout"
    assert judge("@here @here @here @here", rules) is not None


@pytest.mark.parametrize(
    ("text", "hit"),
    [
        ("join discord.gg/abcd now", True),
        ("https://discord.com/invite/Gaming-Club", True),
        ("http://www.discordapp.com/invite/xyz", True),
        ("DISCORD.GG/ABC", True),
        ("discord.gg", False),
        ("see discord.com/channels/1/2", False),
        ("no links here", False),
    ],
)
def test_invite_links(text: str, hit: bool) -> None:
    rules = Automod(invites=Action("delete"))
    assert (judge(text, rules) is not None) == hit


def test_words_match_whole_words_case_insensitively() -> None:
    rules = Automod(words=("darn", "free nitro"), words_action=Action("warn"))
    assert judge("DARN it", rules) is not None
    assert judge("get FREE   nitro", rules) is None  # the phrase as written
    assert judge("get free nitro here", rules) is not None
    assert judge("darned", rules) is None and judge("undarn", rules) is None
    breach = judge("well, darn.", rules)
    assert breach is not None and breach.rule == "words" and breach.action.name == "warn"


def test_rules_are_judged_in_order() -> None:
    rules = Automod(
        mention_limit=3,
        mentions=Action("warn"),
        invites=Action("delete"),
        words=("darn",),
    )
    breach = judge(f"<@{ID}> <@{ID}> <@{ID}> discord.gg/x darn", rules)
    assert breach is not None and breach.rule == "mentions"


def test_json_round_trip_and_changes() -> None:
    rules = Automod(
        mention_limit=5,
        mentions=Action("timeout", timedelta(hours=1)),
        invites=Action("warn"),
        words=("a", "b"),
        words_action=Action("delete"),
    )
    again = Automod.from_json(rules.as_json())
    assert again == rules
    assert judge("b", again) is not None  # the word pattern is rebuilt
    changed = rules.with_changes(words=("c",))
    assert judge("c", changed) is not None and judge("a", changed) is None
    assert Automod.from_json(None) == Automod() and Automod.from_json({}) == Automod()


def test_parsing_settings() -> None:
    assert parse_action("timeout", None) == Action("timeout", timedelta(minutes=10))
    assert parse_action("TIMEOUT", "1h") == Action("timeout", timedelta(hours=1))
    assert parse_action("warn", None) == Action("warn")
    with pytest.raises(RuleError, match="takes no duration"):
        parse_action("delete", "1h")
    with pytest.raises(RuleError, match="delete, warn, timeout"):
        parse_action("ban", None)
    with pytest.raises(RuleError, match="at most 4w"):
        parse_action("timeout", "30d")
    assert mention_limit(3) == 3
    for bad in (2, 51):
        with pytest.raises(RuleError, match="3 to 50"):
            mention_limit(bad)
    assert check_word("  Free   Nitro ") == "free nitro"
    with pytest.raises(RuleError, match="1-50"):
        check_word("x" * 51)
