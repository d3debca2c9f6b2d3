"""A cog only the end-to-end tests load: its command fails the way a bug would."""

from __future__ import annotations

import asyncio
import time

from discord.ext import commands


class Boom(commands.Cog):
    @commands.hybrid_command()
    async def boom(self, ctx: commands.Context[commands.Bot]) -> None:
        """Fail with an unexpected error (tests only)."""
        raise RuntimeError("secret detail that must not reach the channel")

    @commands.hybrid_command()
    async def block(self, ctx: commands.Context[commands.Bot], seconds: float = 30.0) -> None:
        """Block the event loop, as a CPU-bound bug would (tests only)."""
        time.sleep(seconds)

    @commands.hybrid_command()
    async def nap(self, ctx: commands.Context[commands.Bot], seconds: float = 60.0) -> None:
        """Say so, then take `seconds` without blocking anything, as a slow command would
        (tests only: a command still running when the worker is told to stop)."""
        await ctx.send("Napping.")
        await asyncio.sleep(seconds)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Boom())
