"""A cog only the component tests load: a form with a number field behind a button, a member
menu, a button whose work takes longer than Discord's 3 s, one that expires at once, and one
for anyone to press as often as they like.
It is written as a feature would be (README, "Writing a feature")."""

from __future__ import annotations

import asyncio
from typing import Any

import discord
from discord.ext import commands

from bot import components


class Stake(components.Form, name="e2e_stake"):
    title = "Place a bet"
    amount = components.Number("Amount", low=1, high=1000, placeholder="50")

    async def submitted(self, press: components.Press) -> None:
        await press.reply(f"{press.user.display_name} bets {press.fields['amount']}.")


class Bet(components.Handler, name="e2e_bet"):
    who = components.Who.ANYONE

    async def pressed(self, press: components.Press) -> None:
        await press.open(Stake)


class Pick(components.Handler, name="e2e_pick"):
    who = components.Who.ANYONE

    async def pressed(self, press: components.Press) -> None:
        (chosen,) = press.values
        kind = "member" if isinstance(chosen, discord.Member) else "user"
        joined = f", joined {chosen.joined_at:%Y}" if isinstance(chosen, discord.Member) else ""
        await press.reply(
            f"Picked {kind} {chosen.display_name} ({chosen.id}){joined}.", ephemeral=True
        )


class Slow(components.Handler, name="e2e_slow"):
    who = components.Who.ANYONE

    async def pressed(self, press: components.Press) -> None:
        await asyncio.sleep(3.5)  # past Discord's 3 s: only the framework's deferral saves it
        await press.update(content="Done after a long think.", view=None)


class Brief(components.Handler, name="e2e_brief"):
    ttl = 1.0

    async def pressed(self, press: components.Press) -> None:
        await press.reply("Still here.")


class Tap(components.Handler, name="e2e_tap"):
    who = components.Who.ANYONE

    async def pressed(self, press: components.Press) -> None:
        await press.reply(f"Tapped {press.state['label']}.", ephemeral=True)


class Forms(commands.Cog):
    def __init__(self, bot: Any) -> None:
        self.bot = bot

    @commands.command()
    async def bet(self, ctx: commands.Context[Any]) -> None:
        """A button that opens a form (tests only)."""
        ref = await Bet.new(self.bot)
        await ctx.send("Place your bets.", view=components.view(ref.button("Bet")))

    @commands.command()
    async def pick(self, ctx: commands.Context[Any]) -> None:
        """A member menu (tests only)."""
        ref = await Pick.new(self.bot)
        await ctx.send("Pick someone.", view=components.view(ref.user_select(placeholder="Who?")))

    @commands.command()
    async def slow(self, ctx: commands.Context[Any]) -> None:
        """A button whose work takes 3.5 s (tests only)."""
        ref = await Slow.new(self.bot)
        await ctx.send("Think hard.", view=components.view(ref.button("Think")))

    @commands.command()
    async def brief(self, ctx: commands.Context[Any]) -> None:
        """A button that lasts a second (tests only)."""
        ref = await Brief.new(self.bot, owner=ctx.author.id)
        await ctx.send("Quick!", view=components.view(ref.button("Now")))

    @commands.command()
    async def tap(self, ctx: commands.Context[Any]) -> None:
        """A button for anyone, as often as they like; its state in PostgreSQL (tests only)."""
        ref = await Tap.new(self.bot, state={"label": "it"}, stored=True)
        await ctx.send("Tap away.", view=components.view(ref.button("Tap")))


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Forms(bot))
