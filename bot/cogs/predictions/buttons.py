"""A prediction's buttons and the bet form, on the persistent components (bot/components/):
they work on any worker, before and after a restart, for as long as the prediction can take
bets (or votes).

Press an option -> the amount form (a modal) -> the bet, once per submission (its interaction
id is the ledger key), and an ephemeral confirmation with the odds and the potential payout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import discord

from bot import components
from bot.cogs.predictions import payout, render, store
from bot.cogs.predictions.store import Prediction
from bot.ui import safe_text
from bot.user_error import UserError

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse

# Buttons outlive the longest window (30 days) and the longest wait for votes after it.
BUTTON_TTL = 60 * 24 * 3600


class Service(Protocol):
    """What the buttons need of the cog (looked up by name: handlers are not given it)."""

    async def place(self, press: components.Press, prediction_id: int, option: int) -> None: ...

    async def vote_pressed(
        self, press: components.Press, prediction_id: int, option: int
    ) -> None: ...


def service(bot: Guildhouse) -> Service:
    cog: Any = bot.get_cog("Predictions")
    if cog is None:
        raise UserError("Predictions are not available right now; try again in a moment.")
    return cog  # type: ignore[no-any-return]


def _option(press: components.Press) -> int:
    return int(press.action) if press.action.isdigit() else -1


class OptionButton(components.Handler, name="pbet"):
    ttl = BUTTON_TTL
    who = components.Who.ANYONE
    action_room = 2

    async def pressed(self, press: components.Press) -> None:
        # The form first, with nothing awaited before it (Discord shows no "thinking" for one).
        await press.open(BetForm, state={"p": press.state["p"], "o": _option(press)})


class BetForm(components.Form, name="pstake"):
    title = "Place a bet"
    amount = components.Number("Points to stake", low=1, high=1_000_000_000, placeholder="100")

    async def submitted(self, press: components.Press) -> None:
        await service(press.bot).place(press, int(press.state["p"]), int(press.state["o"]))


class VoteButton(components.Handler, name="pvote"):
    ttl = BUTTON_TTL
    who = components.Who.ANYONE
    action_room = 2

    async def pressed(self, press: components.Press) -> None:
        await service(press.bot).vote_pressed(press, int(press.state["p"]), _option(press))


async def bet_view(bot: Guildhouse, prediction: Prediction) -> discord.ui.View:
    ref = await OptionButton.new(bot, state={"p": prediction.id})
    return components.view(
        *(
            ref.button(
                safe_text(f"{i + 1}. {label}", 80),
                action=str(i),
                style=discord.ButtonStyle.primary,
                row=i // 5,
            )
            for i, label in enumerate(prediction.options)
        )
    )


async def vote_view(bot: Guildhouse, prediction: Prediction) -> discord.ui.View:
    ref = await VoteButton.new(bot, state={"p": prediction.id})
    return components.view(
        *(
            ref.button(safe_text(f"Vote: {i + 1}. {label}", 80), action=str(i), row=i // 5)
            for i, label in enumerate(prediction.options)
        )
    )


def confirmation(placed: store.Placed) -> str:
    """The ephemeral answer to a bet: what was staked, the odds now, what it would pay."""
    stake, pools = placed.stake, placed.pools
    option = placed.prediction.options[stake.option]
    odds = render.odds_text(pools, stake.option)
    would = payout.potential(pools, stake.option, stake.amount)
    head = "Bet placed" if placed.applied else "That bet was placed already"
    return (
        f"{head}: your stake on **{safe_text(option, 80)}** in #{placed.prediction.id} is "
        f"{stake.amount:,} points. Odds now {odds}; if it wins now you'd get about "
        f"**{would:,}** points. Balance: {placed.balance:,}."
    )
