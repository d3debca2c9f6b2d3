"""What Discord sees of a prediction besides command answers: its message's live totals (edited
at most every REFRESH_SECONDS across every worker, whatever the betting rate), the close, the
result in the channel, and DMs to the bettors who asked for them, paced."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import discord

from bot import audit
from bot.cogs.predictions import buttons, render, settle, store
from bot.cogs.predictions.store import Prediction
from bot.points import Services, ledger
from bot.ui import safe_text

if TYPE_CHECKING:
    from bot.guildhouse import Guildhouse

log = logging.getLogger(__name__)

# The embed's live totals are edited at most this often, however fast bets come.
REFRESH_SECONDS = 3.0
# Between two DMs of one result (every call also takes a slot of the shared REST window).
DM_PACE = 0.25


class Presenter:
    def __init__(self, bot: Guildhouse, services: Services) -> None:
        self.bot = bot
        self.services = services
        self.settings = services.settings
        self._tasks: set[asyncio.Task[None]] = set()
        self.refresh_seconds = REFRESH_SECONDS

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def idle(self) -> None:
        """Returns once the refreshes and DMs started so far are done (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _edit(self, prediction: Prediction, **fields: object) -> None:
        if prediction.message_id is None:
            return
        channel = self.bot.get_partial_messageable(prediction.channel_id)
        message = channel.get_partial_message(prediction.message_id)
        try:
            await message.edit(**fields)
        except discord.HTTPException as exc:
            log.info("predictions: could not edit #%s's message: %s", prediction.id, exc)

    async def refresh(self, guild_id: int, prediction_id: int) -> None:
        book = await store.book(self.bot.pool, guild_id, prediction_id)
        await self._edit(book.prediction, embed=render.embed(book))

    async def refresh_soon(self, guild_id: int, prediction_id: int) -> None:
        """Edit the totals within REFRESH_SECONDS, at most once per REFRESH_SECONDS across every
        worker: the first bet of a quiet spell takes a Redis lock for that long and edits when
        it ends, reading every bet committed by then."""
        key = self.bot.keys("predict", "refresh", prediction_id)
        if await self.bot.redis.set(key, "1", nx=True, px=int(self.refresh_seconds * 1000)):
            self._spawn(self._refresh_later(guild_id, prediction_id), "predictions-refresh")

    async def _refresh_later(self, guild_id: int, prediction_id: int) -> None:
        await asyncio.sleep(self.refresh_seconds)
        try:
            await self.refresh(guild_id, prediction_id)
        except Exception:
            log.exception("predictions: could not refresh #%s", prediction_id)

    async def closed(self, prediction: Prediction) -> None:
        """The clock closed it: the final totals, and vote buttons where members vote."""
        settings = await self.settings.get(prediction.guild_id)
        book = await store.book(self.bot.pool, prediction.guild_id, prediction.id)
        view = await buttons.vote_view(self.bot, prediction) if settings.vote_enabled else None
        await self._edit(prediction, embed=render.embed(book), view=view)
        await self.post_audit(prediction, ("predict.close",))
        with contextlib.suppress(discord.HTTPException):
            channel = self.bot.get_partial_messageable(prediction.channel_id)
            how = (
                "Bettors, vote on the outcome with the buttons."
                if settings.vote_enabled
                else "Waiting for a moderator to resolve it."
            )
            await channel.send(f"Betting on prediction #{prediction.id} is closed. {how}")

    async def announce(self, prediction_id: int) -> None:
        """A settled prediction's result in its channel and to opted-in bettors, once."""
        if not await settle.claim_announcement(self.bot.pool, prediction_id):
            return
        row = await self.bot.pool.fetchval(
            "SELECT guild_id FROM predictions WHERE id = $1", prediction_id
        )
        book = await store.book(self.bot.pool, int(row), prediction_id)
        paid = {s.user_id: 0 for s in book.stakes}
        for r in await self.bot.pool.fetch(
            "SELECT user_id, payout FROM prediction_bets WHERE prediction_id = $1", prediction_id
        ):
            paid[r["user_id"]] = int(r["payout"] or 0)
        p = book.prediction
        await self.post_audit(p, ("predict.resolve", "predict.void", "predict.refund"))
        await self._edit(p, embed=render.embed(book), view=None)
        text = render.result(book, paid)
        with contextlib.suppress(discord.HTTPException):
            await self.bot.get_partial_messageable(p.channel_id).send(text)
        await self.balances_changed(p.guild_id, list(paid))
        self._spawn(self._dm(book, paid), "predictions-dm")

    async def post_audit(self, prediction: Prediction, actions: tuple[str, ...]) -> None:
        """Post the audit row the state change wrote (in its transaction) to the server's log
        channel, as `audit.audited` does for commands."""
        row = await self.bot.pool.fetchrow(
            "SELECT id, guild_id, actor_id, action, channel_id, target_id, before, after, "
            "created_at FROM audit_log WHERE guild_id = $1 AND action = ANY($2::text[]) "
            "AND after->>'id' = $3 ORDER BY id DESC LIMIT 1",
            prediction.guild_id,
            list(actions),
            str(prediction.id),
        )
        if row is not None:
            await audit.post(self.bot, audit.AuditEntry.from_record(row))

    async def balances_changed(self, guild_id: int, users: list[int]) -> None:
        rows = await self.bot.pool.fetch(
            "SELECT account, balance FROM points_accounts WHERE guild_id = $1 "
            "AND account = ANY($2::text[])",
            guild_id,
            [ledger.member(u) for u in users],
        )
        await self.services.board.update(guild_id, {r["account"]: r["balance"] for r in rows})

    async def _dm(self, book: store.Book, paid: dict[int, int]) -> None:
        p = book.prediction
        for user_id in await store.notified(self.bot.pool, list(paid)):
            stake = book.stake_of(user_id)
            got = paid.get(user_id, 0)
            text = (
                f"Prediction #{p.id} ({safe_text(p.question, 100)}): "
                f"{render.STATUS.get(p.status, p.status)}. You staked "
                f"{stake.amount if stake else 0:,} and got {got:,} points back."
            )
            try:
                user = self.bot.get_user(user_id) or await self.bot.fetch_user(user_id)
                await user.send(text)
            except discord.HTTPException as exc:
                log.info("predictions: no DM to %s: %s", user_id, exc)
            await asyncio.sleep(DM_PACE)
