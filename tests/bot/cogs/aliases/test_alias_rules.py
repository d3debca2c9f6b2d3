"""Aliases, pure: names, expansions, what a message runs, whose alias wins."""

from __future__ import annotations

import pytest

from bot.cogs.aliases.rules import (
    SERVER,
    AliasError,
    GuildAliases,
    check_expansion,
    check_name,
    expand,
)

BUILTINS = {"roll", "r", "alias", "help", "initiative", "init"}


def test_a_name_may_not_be_a_builtin_or_its_short_name() -> None:
    assert check_name(" Dodge ", BUILTINS) == "dodge"
    for taken in ("roll", "ROLL", "r"):
        with pytest.raises(AliasError, match="built-in"):
            check_name(taken, BUILTINS)
    for bad in ("", "two words", "x" * 25, "ünï", "a!"):
        with pytest.raises(AliasError, match="can't be an alias name"):
            check_name(bad, BUILTINS)


def test_an_expansion_starts_with_a_builtin_so_no_alias_runs_an_alias() -> None:
    assert check_expansion("roll   6!  tn4", BUILTINS) == "roll 6! tn4"
    assert check_expansion("!roll 2d6", BUILTINS) == "roll 2d6"
    with pytest.raises(AliasError, match="can't run another alias"):
        check_expansion("dodge 2", BUILTINS)  # `dodge` is an alias, not a built-in
    with pytest.raises(AliasError, match="Say what"):
        check_expansion("   ", BUILTINS)
    with pytest.raises(AliasError, match="at most 300"):
        check_expansion("roll " + "1" * 300, BUILTINS)


def test_what_a_message_runs() -> None:
    assert expand("roll 6! tn4", " # dodge ") == "roll 6! tn4 # dodge"
    assert expand("roll 6! tn4", "") == "roll 6! tn4"


def test_a_members_own_alias_wins_over_the_servers() -> None:
    a = GuildAliases.of_rows(
        [(SERVER, "dodge", "roll 4! tn5"), (7, "dodge", "roll 6! tn4"), (7, "hit", "roll 2d6")]
    )
    assert a.find(7, "DODGE") == "roll 6! tn4"
    assert a.find(8, "dodge") == "roll 4! tn5"
    assert a.find(8, "hit") is None
    assert a.find(7, "nothing") is None
