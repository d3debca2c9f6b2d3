"""What a prediction looks like: its embed (live totals, odds, bettors), result lines."""

from __future__ import annotations

import discord

from bot.cogs.predictions import payout
from bot.cogs.predictions.store import CLOSED, OPEN, RESOLVED, RESOLVING, Book, Prediction
from bot.ui import fit_embed, safe_text


def bettors(n: int) -> str:
    return f"{n} bettor" if n == 1 else f"{n} bettors"


COLOURS = {OPEN: 0x57F287, CLOSED: 0xFEE75C, RESOLVING: 0xFEE75C, RESOLVED: 0x5865F2}
STATUS = {
    OPEN: "Open for bets",
    CLOSED: "Betting closed, waiting for the result",
    RESOLVING: "Paying out",
    RESOLVED: "Resolved",
    "void": "Cancelled: every bet refunded",
    "refunded": "Not resolved in time: every bet refunded",
}


def odds_text(pools: list[int], option: int) -> str:
    value = payout.odds(pools, option)
    return "no bets yet" if value is None else f"{value:.2f}x"


def embed(book: Book) -> discord.Embed:
    p = book.prediction
    pools = book.pools
    total = sum(pools)
    title = f"Prediction #{p.id}: {safe_text(p.question, 240)}"
    out = discord.Embed(title=title, colour=COLOURS.get(p.status, 0x99AAB5))
    when = int(p.closes_at.timestamp())
    state = STATUS.get(p.status, p.status)
    if p.status == OPEN:
        state += f", closes <t:{when}:R>"
    out.description = f"{state}\n{total:,} points from {bettors(book.bettors())}"
    if p.category:
        out.description += f" · {safe_text(p.category, 32)}"
    for i, option in enumerate(p.options):
        share = payout.chance(pools, i)
        mark = "✅ " if p.winner == i and p.status in (RESOLVED, RESOLVING) else ""
        out.add_field(
            name=f"{mark}{i + 1}. {safe_text(option, 80)}",
            value=(
                f"{pools[i]:,} points · {bettors(book.bettors(i))}\n"
                f"odds {odds_text(pools, i)}"
                + (f" · {share:.0%} of the pool" if share is not None else "")
            ),
            inline=True,
        )
    out.set_footer(text=f"Bet: press an option · predict show {p.id}")
    return fit_embed(out)


def line(p: Prediction, pooled: int, count: int) -> str:
    state = STATUS.get(p.status, p.status).split(",")[0].split(":")[0]
    extra = f" · {p.category}" if p.category else ""
    if p.status == OPEN:
        state = f"closes <t:{int(p.closes_at.timestamp())}:R>"
    elif p.status == RESOLVED and p.winner is not None:
        state = f"won by **{safe_text(p.options[p.winner], 40)}**"
    question = safe_text(p.question, 80)
    return f"`#{p.id}` {question} · {pooled:,} points, {bettors(count)} · {state}{extra}"


def result(book: Book, paid: dict[int, int], *, biggest: int = 5) -> str:
    """The message a settled prediction posts in its channel."""
    p = book.prediction
    if p.status != RESOLVED or p.winner is None:
        return (
            f"Prediction #{p.id} ({safe_text(p.question, 100)}): {STATUS.get(p.status, p.status)}."
            f" {sum(paid.values()):,} points went back to {bettors(len(paid))}."
        )
    winners = sorted(
        (
            (amount - (book.stake_of(u) or payout.Stake(u, 0, 0)).amount, amount, u)
            for u, amount in paid.items()
            if amount > 0
        ),
        reverse=True,
    )
    head = (
        f"Prediction #{p.id} ({safe_text(p.question, 100)}) is resolved: "
        f"**{safe_text(p.options[p.winner], 80)}**. "
    )
    if not winners:
        return head + "Nobody bet on it."
    if not any(s.option == p.winner for s in book.stakes):
        return head + "Nobody bet on it: every stake was refunded."
    tops = ", ".join(f"<@{u}> +{gain:,} ({amount:,} paid)" for gain, amount, u in winners[:biggest])
    return head + f"{len(winners)} winners shared {sum(paid.values()):,} points. Biggest: {tops}."
