"""A cog only the end-to-end tests load: its command fails the way a bug would."""

from __future__ import annotations

from discord.ext import commands


class Boom(commands.Cog):
    @commands.hybrid_command()
    async def boom(self, ctx: commands.Context[commands.Bot]) -> None:
        """Fail with an unexpected error (tests only)."""
        raise RuntimeError("secret detail that must not reach the channel")


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Boom())
