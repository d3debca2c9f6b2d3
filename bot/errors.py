"""One error hierarchy, one handler for prefix and slash commands.

Features raise `UserError` (bot/user_error.py, pure: what pure cores subclass) or one of the
`CommandUserError`s below with a message written for the user; the handler shows it as it is,
whichever wrapper discord.py put around it. An error that
means PostgreSQL or Redis is out of reach (bot/outages.py decides) is not a bug: the user is
told the database (or the feature) is unavailable for now, and the outage is logged once, not
per command. Anything else that escapes a command is unexpected: the user gets a short line
with an error id, and the log gets the traceback with the same id. No traceback, token or SQL
ever reaches a channel.
"""

from __future__ import annotations

import logging
import math
import secrets
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot import outages
from bot.checks import NotAllowed
from bot.ui import safe_text
from bot.user_error import UserError

__all__ = [
    "BadInput",
    "CommandDisabled",
    "CommandUserError",
    "Throttled",
    "UserError",
    "handle",
    "user_message",
]

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse

log = logging.getLogger(__name__)

# What a command that needs an unreachable server answers.
UNAVAILABLE = {
    outages.POSTGRES: "The database is unavailable right now; try again in a moment.",
    outages.REDIS: "That is unavailable right now; try again in a moment.",
}


class CommandUserError(UserError, commands.CommandError):
    """A `UserError` discord.py also treats as a command error: what checks and converters
    raise (discord.py passes only `CommandError`s from those to the error handler)."""


class BadInput(CommandUserError):
    """The user's input can't be used; says which part and why."""


class CommandDisabled(CommandUserError):
    def __init__(self, name: str) -> None:
        super().__init__(f"`{name}` is disabled in this server.")


def _retry(seconds: float) -> str:
    if seconds < 60:
        return f"{max(1, math.ceil(seconds))}s"
    minutes, secs = divmod(math.ceil(seconds), 60)
    return f"{minutes}m {secs}s" if secs else f"{minutes}m"


class Throttled(CommandUserError):
    """A throttle refused the call. `tell` is False for refusals after the first in one wait:
    those are dropped silently, so spamming a command doesn't make the bot spam back."""

    def __init__(self, retry_after: float, *, tell: bool) -> None:
        super().__init__(f"Slow down: try again in {_retry(retry_after)}.")
        self.retry_after = retry_after
        self.tell = tell


def usage(ctx: commands.Context[Any]) -> str:
    cmd = ctx.command
    if cmd is None:
        return ""
    prefix = "/" if ctx.interaction else ctx.clean_prefix
    return f"{prefix}{cmd.qualified_name} {cmd.signature}".strip()


def _permission_names(perms: list[str]) -> str:
    names = [p.replace("_", " ").replace("guild", "server").title() for p in perms]
    return ", ".join(names)


def unwrap(error: BaseException) -> BaseException:
    """What a command raised, out of the wrappers discord.py puts around it."""
    while True:
        if isinstance(
            error,
            commands.HybridCommandError
            | commands.CommandInvokeError
            | commands.ConversionError
            | app_commands.CommandInvokeError,
        ):
            error = error.original
        elif isinstance(error, app_commands.TransformerError) and isinstance(
            error.__cause__, Exception
        ):
            error = error.__cause__
        elif isinstance(error, commands.BadArgument) and isinstance(error.__cause__, UserError):
            error = error.__cause__  # a plain function as a converter raised it
        else:
            return error


def unavailable(error: BaseException) -> str | None:
    """The server (outages.POSTGRES or REDIS) whose outage made the command fail, if that is
    why it failed."""
    cause = unwrap(error)
    if isinstance(cause, UserError):
        return None  # a feature that already said what to tell the user
    return outages.server_of(cause)


def user_message(ctx: commands.Context[Any], error: Exception) -> str | None:
    """What to tell the user about `error`; None means say nothing."""
    server = unavailable(error)
    if server is not None:
        return UNAVAILABLE[server]
    cause = unwrap(error)
    if isinstance(cause, UserError):
        error = cause
    else:
        if isinstance(error, commands.HybridCommandError):
            error = error.original
        if isinstance(error, app_commands.TransformerError | app_commands.CommandInvokeError):
            error = error.__cause__ if isinstance(error.__cause__, Exception) else error

    if isinstance(error, commands.CommandNotFound):
        return None
    if isinstance(error, Throttled) and not error.tell and ctx.interaction is None:
        return None  # a slash command must be answered; it is ephemeral, so no spam
    if isinstance(error, UserError):
        return str(error)
    if isinstance(error, commands.MissingRequiredArgument | commands.MissingRequiredAttachment):
        return f"Missing `{error.param.name}`. Usage: `{usage(ctx)}`"
    if isinstance(error, commands.TooManyArguments):
        return f"Too many arguments. Usage: `{usage(ctx)}`"
    if isinstance(error, commands.MemberNotFound | commands.UserNotFound):
        # The converters look a name up (in the guild, through the gateway): say what was
        # looked for and not found, not that a value was "bad".
        name = safe_text(error.argument, 100).replace("`", "'")
        if isinstance(error, commands.MemberNotFound):
            where = " in this server" if ctx.guild is not None else ""
            return f"No member named `{name}`{where}."
        return f"No user named `{name}`."
    if isinstance(
        error,
        commands.BadArgument
        | commands.BadUnionArgument
        | commands.BadLiteralArgument
        | app_commands.TransformerError,
    ):
        param = ctx.current_parameter.name if ctx.current_parameter else "argument"
        return f"Bad value for `{param}`: {safe_text(str(error), 300)} Usage: `{usage(ctx)}`"
    if isinstance(error, commands.ArgumentParsingError):
        return f"Couldn't read the arguments: {safe_text(str(error), 200)} Usage: `{usage(ctx)}`"
    if isinstance(error, commands.MissingPermissions):
        return f"You need the {_permission_names(error.missing_permissions)} permission."
    if isinstance(error, commands.BotMissingPermissions):
        return f"I need the {_permission_names(error.missing_permissions)} permission here."
    if isinstance(error, commands.NoPrivateMessage):
        return "This command only works in a server."
    if isinstance(error, commands.PrivateMessageOnly):
        return "This command only works in direct messages."
    if isinstance(error, NotAllowed):
        return str(error)
    if isinstance(error, commands.NotOwner):
        return "This command is for the bot's owners."
    if isinstance(error, commands.CommandOnCooldown):
        return f"Slow down: try again in {_retry(error.retry_after)}."
    if isinstance(error, commands.MaxConcurrencyReached):
        return "This command is already running as often as it may; try again shortly."
    if isinstance(error, commands.DisabledCommand):
        return "This command is turned off for now."
    if isinstance(error, commands.CheckFailure):
        return "You can't use this command here."
    return None


def is_unexpected(error: Exception) -> bool:
    if unavailable(error) is not None:
        return False
    if isinstance(unwrap(error), UserError):
        return False
    if isinstance(error, commands.HybridCommandError):
        error = error.original
    if isinstance(
        error,
        commands.CommandInvokeError | commands.ConversionError | app_commands.CommandInvokeError,
    ):
        return True  # the command or a converter raised something that is not a UserError
    return not isinstance(error, commands.CommandError | app_commands.AppCommandError)


async def handle(bot: Guildhouse, ctx: commands.Context[Any], error: Exception) -> None:
    """The central handler: answer the user, log the rest."""
    if isinstance(error, commands.CommandNotFound):
        return  # not a command of ours: say nothing, count nothing
    server = unavailable(error)
    if server is not None:
        name = ctx.command.qualified_name if ctx.command else "?"
        outages.SERVERS[server].failed(unwrap(error), f"command {name}")
        bot.count_command(ctx, "unavailable")
        await send_error(ctx, UNAVAILABLE[server])
        return
    unexpected = is_unexpected(error)
    bot.count_command(ctx, "error" if unexpected else "user_error")
    if unexpected:
        error_id = secrets.token_hex(4)
        original = getattr(error, "original", error)
        log.error(
            "unexpected error in %s (error id %s)",
            ctx.command.qualified_name if ctx.command else "?",
            error_id,
            exc_info=(type(original), original, original.__traceback__),
            extra={"error_id": error_id},
        )
        text = f"Something went wrong on our side (error id `{error_id}`). It has been logged."
    else:
        message = user_message(ctx, error)
        if message is None:
            return
        text = message
    await send_error(ctx, text)


async def send_error(ctx: commands.Context[Any], text: str) -> None:
    try:
        if ctx.interaction is not None:
            if ctx.interaction.response.is_done():
                await ctx.interaction.followup.send(text, ephemeral=True)
            else:
                await ctx.interaction.response.send_message(text, ephemeral=True)
        else:
            await ctx.send(text)
    except discord.HTTPException as exc:
        log.info("could not deliver an error message: %s", exc)
