"""Which throttle windows a command call counts in (bot/command_throttles.py): the defaults,
what a command and its group declare, and a guild's overrides, which apply to that guild only
(the declared rules are worked out once per command and shared by every call)."""

from __future__ import annotations

from typing import Any

from discord.ext import commands

from bot.command_throttles import Defaults, rules_for, throttle, windows
from bot.guild_settings import GuildSettings
from ipc.throttle import DEFAULT_COMMAND, DEFAULT_GUILD, DEFAULT_USER, Rule


@commands.group()
@throttle(guild="30/10s")
async def table(ctx: Any) -> None:
    """A group that declares a guild rule."""


@table.command()
@throttle(command="2/30s")
async def roll(ctx: Any) -> None:
    """A subcommand that declares its own per-user rule."""


@commands.command()
async def ping(ctx: Any) -> None:
    """A command that declares nothing."""


def test_a_guilds_override_applies_to_that_guild_only() -> None:
    defaults = Defaults()
    assert dict(rules_for(ping, defaults, None)) == {
        "command": DEFAULT_COMMAND,
        "guild": DEFAULT_GUILD,
    }
    declared = {"command": Rule(2, 30), "guild": Rule(30, 10)}
    assert dict(rules_for(roll, defaults, None)) == declared
    # The group's name is what a guild overrides; "off" turns a scope off there.
    strict = GuildSettings(1, throttles={"table": {"command": "1/1m", "guild": "off"}})
    assert dict(rules_for(roll, defaults, strict)) == {"command": Rule(1, 60), "guild": None}
    assert windows(roll, 42, 1, defaults, strict) == [
        ("user:42", DEFAULT_USER),
        ("cmd:table:user:42", Rule(1, 60)),
    ]
    # Another guild, and no guild, still get what the command declares.
    assert dict(rules_for(roll, defaults, GuildSettings(2))) == declared
    assert dict(rules_for(roll, defaults, None)) == declared
    assert windows(roll, 42, 2, defaults, GuildSettings(2)) == [
        ("user:42", DEFAULT_USER),
        ("cmd:table:user:42", Rule(2, 30)),
        ("cmd:table:guild:2", Rule(30, 10)),
    ]


def test_other_defaults_give_other_rules() -> None:
    loose = Defaults(user=None, command=Rule(100, 10), guild=None)
    assert dict(rules_for(ping, loose, None)) == {"command": Rule(100, 10), "guild": None}
    assert windows(ping, 42, 1, loose, None) == [("cmd:ping:user:42", Rule(100, 10))]
    assert dict(rules_for(ping, Defaults(), None))["command"] == DEFAULT_COMMAND
