"""The one handler shows any UserError (the pure base) as it is, whatever wrapped it."""

from __future__ import annotations

import types
from typing import Any

import pytest
from discord import app_commands
from discord.ext import commands

from bot import errors
from bot.user_error import UserError


class RuleBroken(UserError):
    """What a pure core raises (it imports no discord)."""


def ctx(interaction: object = None) -> Any:
    return types.SimpleNamespace(interaction=interaction, command=None, current_parameter=None)


def wrapped(exc: Exception) -> list[Exception]:
    """`exc` as each of discord.py's paths hands it to the error handler."""
    invoke = commands.CommandInvokeError(exc)
    app_invoke = app_commands.CommandInvokeError.__new__(app_commands.CommandInvokeError)
    Exception.__init__(app_invoke, str(exc))
    app_invoke.original = exc
    transformer = app_commands.TransformerError.__new__(app_commands.TransformerError)
    Exception.__init__(transformer, "transform failed")
    transformer.__cause__ = exc
    return [
        invoke,  # prefix: the command's body
        commands.HybridCommandError(app_invoke),  # slash form of a hybrid command
        commands.ConversionError(commands.MemberConverter(), exc),  # prefix converter
        commands.HybridCommandError(transformer),  # slash converter
    ]


@pytest.mark.parametrize("index", range(4))
def test_a_pure_user_error_is_shown_as_it_is(index: int) -> None:
    error = wrapped(RuleBroken("Level 0 doesn't exist; levels start at 1."))[index]
    assert not errors.is_unexpected(error)
    assert errors.user_message(ctx(), error) == "Level 0 doesn't exist; levels start at 1."


@pytest.mark.parametrize("index", range(3))  # a transformer's failure reads as a bad value
def test_an_unexpected_error_is_still_unexpected(index: int) -> None:
    error = wrapped(ValueError("bug"))[index]
    assert errors.is_unexpected(error)


def test_command_errors_for_users_are_user_errors() -> None:
    bad = errors.BadInput("`amount` must be between 1 and 10.")
    assert isinstance(bad, UserError) and isinstance(bad, commands.CommandError)
    assert not errors.is_unexpected(bad)
    assert errors.user_message(ctx(), bad) == "`amount` must be between 1 and 10."
    assert errors.UserError is UserError


def test_a_silent_throttle_stays_silent_only_for_prefix_commands() -> None:
    quiet = errors.Throttled(3, tell=False)
    assert errors.user_message(ctx(), quiet) is None
    assert errors.user_message(ctx(interaction=object()), quiet) == "Slow down: try again in 3s."


def test_a_function_converter_raising_a_user_error_shows_it() -> None:
    # discord.py turns a plain function converter's exception into BadArgument, from it.
    bad = commands.BadArgument('Converting to "level" failed')
    bad.__cause__ = RuleBroken("Levels go up to 100.")
    assert not errors.is_unexpected(bad)
    assert errors.user_message(ctx(), bad) == "Levels go up to 100."
