"""What a handler gets: a `Press` of one of its components (or a form's submission), and the
ways to answer it (reply, update, tell, open a form, defer, retire, expire) that keep to
Discord's rules for a first response and its follow-ups.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import discord
from discord.utils import MISSING

from bot.components.ids import CustomId
from bot.components.items import without

if TYPE_CHECKING:
    from bot.components.handlers import Handler
    from bot.guildhouse import Guildhouse

log = logging.getLogger(__name__)

# Discord wants a first answer within 3 s of the interaction's creation; at 2 s, whatever the
# handler is still doing, the interaction is deferred for it.
DEFER_AFTER = 2.0
EXPIRED = "This has expired."


@dataclass
class Press:
    """A press of a component (or a form's submission), as its handler sees it."""

    interaction: discord.Interaction[Any]
    custom: CustomId
    handler: Handler
    values: list[Any] = field(default_factory=list)  # a menu's choices
    fields: dict[str, Any] = field(default_factory=dict)  # a form's values, checked
    state: Any = None
    owner_id: int | None = None
    expires_at: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    # How the press was deferred: "update", "reply" (a public "thinking..."), "reply_ephemeral".
    _deferred: str | None = field(default=None, repr=False)

    @property
    def bot(self) -> Guildhouse:
        client: Guildhouse = self.interaction.client
        return client

    @property
    def user(self) -> discord.User | discord.Member:
        return self.interaction.user

    @property
    def guild(self) -> discord.Guild | None:
        return self.interaction.guild

    @property
    def channel(self) -> Any:
        return self.interaction.channel

    @property
    def message(self) -> discord.Message | None:
        """The message whose component was pressed (or whose button opened the form)."""
        return self.interaction.message

    @property
    def action(self) -> str:
        return self.custom.action

    @property
    def responded(self) -> bool:
        return self.interaction.response.is_done()

    # -- answering ---------------------------------------------------------------------------

    async def reply(
        self,
        content: str | None = None,
        *,
        embed: discord.Embed | None = None,
        view: discord.ui.View | None = None,
        ephemeral: bool = False,
    ) -> None:
        """A new message: the first response, or a follow-up (which fills a "thinking" one)."""
        async with self._lock:
            response = self.interaction.response
            if not response.is_done():
                await response.send_message(
                    content, embed=embed or MISSING, view=view or MISSING, ephemeral=ephemeral
                )
                return
            await self.interaction.followup.send(
                content or MISSING,
                embed=embed or MISSING,
                view=view or MISSING,
                ephemeral=ephemeral,
                wait=True,
            )
            self._deferred = None

    async def update(
        self,
        content: str | None = MISSING,
        *,
        embed: discord.Embed | None = MISSING,
        view: discord.ui.View | None = MISSING,
    ) -> None:
        """Edit the message whose component was pressed."""
        async with self._lock:
            response = self.interaction.response
            if not response.is_done():
                await response.edit_message(content=content, embed=embed, view=view)
            elif self._deferred in ("update", None) or self.interaction.message is None:
                await self.interaction.edit_original_response(
                    content=content, embed=embed, view=view
                )
            else:  # deferred with "thinking": @original is that message, not this one
                await self.interaction.message.edit(content=content, embed=embed, view=view)

    async def open(
        self,
        form: type[Handler],
        *,
        state: Any = None,
        owner: int | None = None,
        values: dict[str, str] | None = None,
    ) -> None:
        """Show a form (a modal); its submission goes to `form.submitted`, on any worker.
        `values` fills its fields in. Only as the first response, and quickly (no waiting on
        anything before it): Discord shows no "thinking" state for a modal."""
        from bot.components.forms import modal_for

        ref = await form.new(self.bot, owner=self.user.id if owner is None else owner, state=state)
        await self.show(modal_for(ref, values or {}))

    async def show(self, modal: discord.ui.Modal) -> None:
        async with self._lock:
            await self.interaction.response.send_modal(modal)

    async def tell(self, text: str) -> None:
        """A short ephemeral message for the user."""
        async with self._lock:
            response = self.interaction.response
            if not response.is_done():
                await response.send_message(text, ephemeral=True)
                return
            if self._deferred == "reply":
                # The first follow-up would take the place of a public "thinking..." message,
                # public itself: that one goes, so that this stays between bot and user.
                with contextlib.suppress(discord.HTTPException):
                    await self.interaction.delete_original_response()
            await self.interaction.followup.send(text, ephemeral=True, wait=True)
            self._deferred = None

    async def acknowledge(self) -> None:
        """Answer without a change the user sees (a second press of a single-use button)."""
        async with self._lock:
            if self.interaction.response.is_done():
                return
            if self.interaction.message is not None:
                await self.interaction.response.defer()
                return
        await self.tell("That is done already.")

    async def expire(self) -> None:
        """Tell the user the component has expired, and take its siblings off the message."""
        rest = without(self.interaction.message, self.custom)
        if rest is not None:
            async with self._lock:
                if not self.interaction.response.is_done():
                    await self.interaction.response.edit_message(view=rest)
                elif self._deferred == "update":  # @original is the component's message
                    with contextlib.suppress(discord.HTTPException):
                        await self.interaction.edit_original_response(view=rest)
        await self.tell(EXPIRED)

    async def retire(self) -> None:
        """Take this component (and the others of its state) off its message: a single-use
        one, once used."""
        rest = without(self.interaction.message, self.custom)
        if rest is not None:
            await self.update(view=rest)

    async def defer(self) -> None:
        """Acknowledge now and answer later (within 15 minutes), as the handler's `defer` says;
        done by itself 2 s after the interaction, if the handler has not answered by then."""
        async with self._lock:
            if self.interaction.response.is_done():
                return
            kind = self.handler.defer
            if kind == "update" and self.interaction.message is not None:
                await self.interaction.response.defer()
                self._deferred = "update"
            else:
                ephemeral = kind == "reply_ephemeral"
                await self.interaction.response.defer(thinking=True, ephemeral=ephemeral)
                self._deferred = "reply_ephemeral" if ephemeral else "reply"

    async def _defer_at_deadline(self) -> None:
        created = self.interaction.created_at.timestamp()
        age = min(max(0.0, time.time() - created), DEFER_AFTER)
        await asyncio.sleep(DEFER_AFTER - age)
        try:
            await self.defer()
        except discord.HTTPException as exc:
            log.warning("could not defer a slow %s press: %s", self.custom.name, exc)
