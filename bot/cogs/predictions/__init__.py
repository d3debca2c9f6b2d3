"""Predictions: pari-mutuel markets on points, on every cluster.

- payout.py: pure: payouts with the remainder rule, odds, potential payouts
- store.py: the SQL: create, bet, close, vote, resolve and pay, void, refund (each once)
- clock.py: closes on time, auto-refunds, finishes payouts, in every worker
- render.py: the embed and the result lines
- buttons.py: the option buttons, the bet form, the vote buttons (persistent components)
- cog.py: `predict ...`, the buttons' work, live totals, results and DMs

The ledger is bot/points/ledger.py. See docs/predictions.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse


async def setup(bot: Guildhouse) -> None:
    from bot import points
    from bot.cogs.predictions.cog import Predictions

    await bot.add_cog(Predictions(bot, points.of(bot)))
