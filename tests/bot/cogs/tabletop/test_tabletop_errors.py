"""The tabletop's pure errors are UserErrors: the one command handler shows them as they are,
so the cog does not translate them (issue 24)."""

from __future__ import annotations

import types
from typing import Any

import pytest
from discord import app_commands
from discord.ext import commands

from bot import errors
from bot.cogs.tabletop import store
from bot.cogs.tabletop.dice import DiceError, parse
from bot.user_error import UserError


def ctx() -> Any:
    return types.SimpleNamespace(interaction=None, command=None, current_parameter=None)


def refused(call: Any, *args: Any) -> Exception:
    with pytest.raises(UserError) as caught:
        call(*args)
    return caught.value


def as_handed_over(exc: Exception) -> list[Exception]:
    app_invoke = app_commands.CommandInvokeError.__new__(app_commands.CommandInvokeError)
    Exception.__init__(app_invoke, str(exc))
    app_invoke.original = exc
    return [commands.CommandInvokeError(exc), commands.HybridCommandError(app_invoke)]


@pytest.mark.parametrize(
    ("call", "arg", "kind", "says"),
    [
        (parse, "2d6x", DiceError, "unexpected 'x' at position 3 in '2d6x'"),
        (parse, "2d1", DiceError, "dice need 2..1000 sides"),
        (store.validate_macro_name, "-no", store.StoreError, "`-no` is not a macro name"),
    ],
)
def test_a_pure_refusal_reaches_the_user_as_it_is(
    call: Any, arg: str, kind: type, says: str
) -> None:
    exc = refused(call, arg)
    assert isinstance(exc, kind)
    assert isinstance(exc, ValueError)  # what callers caught before still catches it
    for handed in as_handed_over(exc):
        assert not errors.is_unexpected(handed)
        message = errors.user_message(ctx(), handed)
        assert message == str(exc)
        assert says in message
