"""XP settings validation: clear messages naming what was wrong."""

from __future__ import annotations

import pytest

from bot.cogs.leveling.settings import (
    XpSettingsError,
    parse_multiplier,
    validate_cooldown,
    validate_rate,
)


def test_multipliers_parse() -> None:
    assert parse_multiplier("1.5") == 1.5
    assert parse_multiplier("x2") == 2.0
    assert parse_multiplier("3x") == 3.0
    assert parse_multiplier("off") == 0.0
    assert parse_multiplier("default") is None
    assert parse_multiplier("1") is None  # x1 is the default: the override goes


@pytest.mark.parametrize(
    ("text", "message"),
    [("lots", "'lots' is not a multiplier"), ("11", "between 0 and 10"), ("-1", "between 0")],
)
def test_bad_multipliers_are_named(text: str, message: str) -> None:
    with pytest.raises(XpSettingsError, match=message):
        parse_multiplier(text)


def test_rate_and_cooldown_limits() -> None:
    assert validate_rate(10, 20) == (10, 20)
    with pytest.raises(XpSettingsError, match=r"minimum \(30\) is above the maximum \(20\)"):
        validate_rate(30, 20)
    with pytest.raises(XpSettingsError, match="between 0 and 1000"):
        validate_rate(0, 5000)
    assert validate_cooldown(0) == 0
    with pytest.raises(XpSettingsError, match="between 0 and 86400 seconds"):
        validate_cooldown(-1)
