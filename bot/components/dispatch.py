"""What happens when one of our components is pressed, and installing that in a worker.

One discord.py `DynamicItem` (`Persistent`) matches every custom_id of ours (bot/components/
ids.py), in every worker, from the start: no view is kept in memory, so a click is answered by
whichever worker receives it, after a restart as before. It hands the click to the `Handler`
the custom_id names, through `run`, which decides in this order:

1. the worker is stopping: "I'm restarting", ephemeral;
2. the interaction id was seen already (Discord's retry, a second delivery): nothing;
3. the handler is unknown, or the state gone or past its expiry: "This has expired",
   ephemeral, and the handler's components are taken off the message;
4. the handler refuses the user (`allowed`): its refusal, ephemeral;
5. a single-use component (`once`) already used (a double click): acknowledged, nothing more;
6. the handler's work; if it has not answered 2 s after the interaction was created, the
   interaction is deferred for it (Discord allows 3 s), and its answer goes out as the edit or
   the follow-up that then takes the place of a first response.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord

from bot import errors, metrics, outages
from bot.components import state as component_state
from bot.components.handlers import REGISTRY, Handler
from bot.components.ids import CustomId
from bot.components.items import Persistent
from bot.components.press import Press

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse

log = logging.getLogger(__name__)

# The name of the task that runs a handler: a worker's drain waits for tasks of this name, as
# for commands (bot/guildhouse.py).
TASK_NAME = "guildhouse: component"
RESTARTING = "I'm restarting; try again in a few seconds."


async def run(
    interaction: discord.Interaction[Any],
    custom: CustomId,
    *,
    values: list[Any] | None = None,
    fields: dict[str, str] | None = None,
) -> None:
    """Answer a press of one of our components, or the submission of one of our forms."""
    task = asyncio.current_task()
    if task is not None:
        task.set_name(TASK_NAME)
    bot: Guildhouse = interaction.client
    cls = REGISTRY.get(custom.name)
    handler = cls() if cls is not None else Handler()
    press = Press(interaction, custom, handler, values=values or [])
    outcome = "ok"
    deadline: asyncio.Task[None] | None = None
    try:
        if not getattr(bot, "accepting", True):
            await press.tell(RESTARTING)
            return
        if not await _first_delivery(bot, interaction.id):
            outcome = "repeat"
            return
        deadline = asyncio.create_task(press._defer_at_deadline())
        from bot.components.forms import Form

        # A form's custom_id comes back in a submission, any other in a press: the other way
        # round it is not a live component of ours.
        known = cls is not None and (fields is not None) == isinstance(handler, Form)
        stored = await handler.load(bot, custom) if known else None
        if stored is None or stored.expires_at < time.time():
            outcome = "expired"
            await press.expire()
            return
        press.state, press.owner_id, press.expires_at = (
            stored.data,
            stored.owner_id,
            stored.expires_at,
        )
        refusal = await handler.allowed(press)
        if refusal is not None:
            outcome = "refused"
            await press.tell(refusal)
            return
        if fields is not None:
            from bot.components.forms import check

            if not await check(press, handler, fields):
                outcome = "user_error"
                return
        claim = f"{interaction.message.id if interaction.message else 0}:{custom}"
        if handler.once and not await _claim(bot, claim, stored.expires_at):
            outcome = "repeat"
            await press.acknowledge()
            return
        try:
            await handler.pressed(press)
        except BaseException:
            if handler.once:  # let them try again
                await _release(bot, claim)
            raise
    except Exception as exc:
        outcome = await _failed(press, exc)
    finally:
        if deadline is not None:
            deadline.cancel()
        metrics.COMMANDS.labels(
            str(bot.config.cluster_id), f"component:{custom.name}", "component", outcome
        ).inc()


async def _claim(bot: Guildhouse, key: str, expires_at: float) -> bool:
    try:
        return await component_state.claim(bot.pool, key, expires_at)
    except Exception as exc:
        if outages.note(exc, "single-use components") != outages.POSTGRES:
            raise
    # While PostgreSQL is away, Redis holds the claim: a double click is a second apart, and
    # what a Redis wipe would forget, PostgreSQL is back to keep for the next press.
    return await component_state.claim_in_redis(bot.redis, bot.keys, key, expires_at)


async def _release(bot: Guildhouse, key: str) -> None:
    with contextlib.suppress(Exception):
        await component_state.release(bot.pool, key)
    with contextlib.suppress(Exception):
        await component_state.release_in_redis(bot.redis, bot.keys, key)


async def _first_delivery(bot: Guildhouse, interaction_id: int) -> bool:
    try:
        return await component_state.first_delivery(bot.redis, bot.keys, interaction_id)
    except Exception as exc:
        # Without Redis a retry can't be told from a first delivery: answer it (Discord
        # refuses a second answer; what must act once claims in PostgreSQL).
        if outages.note(exc, "component interactions") is None:
            raise
        return True


async def _failed(press: Press, exc: Exception) -> str:
    """Tell the user what went wrong, as the central command error handler would."""
    cause = errors.unwrap(exc)
    server = errors.unavailable(exc)
    if isinstance(cause, errors.UserError):
        text, outcome = str(cause), "user_error"
    elif server is not None:
        outages.SERVERS[server].failed(cause, f"component {press.custom.name}")
        text, outcome = errors.UNAVAILABLE[server], "unavailable"
    elif isinstance(cause, discord.NotFound) and cause.code == 10062:
        # Too late for Discord: nobody can be told anything any more.
        log.warning("a %s press was answered after Discord's deadline", press.custom.name)
        return "late"
    else:
        error_id = secrets.token_hex(4)
        log.error(
            "unexpected error in component %s (error id %s)",
            press.custom.name,
            error_id,
            exc_info=(type(cause), cause, cause.__traceback__),
            extra={"error_id": error_id},
        )
        text = f"Something went wrong on our side (error id `{error_id}`). It has been logged."
        outcome = "error"
    try:
        await press.tell(text)
    except discord.HTTPException as err:
        log.info("could not deliver an error message: %s", err)
    return outcome


# -- installing ---------------------------------------------------------------------------------

SWEEP_EVERY = 600.0


@dataclass
class Installed:
    """What `install` set up in a worker; `close` takes it down."""

    bot: Guildhouse
    sweeper: asyncio.Task[None] | None = None

    async def close(self) -> None:
        self.bot.remove_dynamic_items(Persistent)
        self.bot.remove_listener(_on_interaction, "on_interaction")
        if self.sweeper is not None:
            self.sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.sweeper


async def install(bot: Guildhouse, *, sweep_every: float = SWEEP_EVERY) -> Installed:
    """Answer our components and forms in this worker, and sweep expired state."""
    from bot.components import forms, paginator  # noqa: F401 - their handlers register

    bot.add_dynamic_items(Persistent)
    bot.add_listener(_on_interaction, "on_interaction")
    return Installed(bot, asyncio.create_task(_sweep(bot, sweep_every), name="component-sweeper"))


async def _on_interaction(interaction: discord.Interaction[Any]) -> None:
    # Forms: discord.py routes a modal's submission only to a modal object it keeps in memory;
    # ours are kept nowhere, so their submissions are taken here.
    if interaction.type is not discord.InteractionType.modal_submit:
        return
    data: dict[str, Any] = interaction.data or {}  # type: ignore[assignment]
    custom = CustomId.parse(str(data.get("custom_id", "")))
    if custom is None:
        return
    from bot.components.forms import submitted_values

    await run(interaction, custom, fields=submitted_values(data.get("components") or []))


async def _sweep(bot: Guildhouse, every: float) -> None:
    while True:
        # Every worker sweeps; spread out, so they don't all at once (it is idempotent).
        await asyncio.sleep(every * (0.5 + secrets.randbelow(1000) / 1000))
        try:
            gone = await component_state.sweep(bot.pool)
            if gone:
                log.debug("swept %d expired component rows", gone)
        except Exception as exc:
            if outages.note(exc, "the component sweeper") is None:
                log.exception("could not sweep expired component state")
